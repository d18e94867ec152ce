"""The sync fast lane serves good syncs before Litestar's handler machinery runs. It must
give exactly the handler's answer with the same side effects (last seen, counters, the
rate limit, history), and leave every error to the handler."""
from __future__ import annotations

import msgspec
import sqlalchemy as sa

from cookiesync.caches import RateLimiter
from cookiesync.db.schema import devices
from cookiesync.domain.sync import controllers, fast_lane
from tests.support.devices import COOKIE, UA, connected_device
from tests.support.history import history
from tests.support.wait import wait_for


class HandlerCalls:
    """Counts the syncs that reached the Litestar handler (the server runs in this process)."""

    def __init__(self, monkeypatch) -> None:
        self.count = 0
        real = controllers.admitted

        async def counted(*args, **kwargs):
            self.count += 1
            return await real(*args, **kwargs)

        monkeypatch.setattr(controllers, "admitted", counted)


def handler_only(monkeypatch) -> None:
    """Close the fast lane: every sync goes on to the handler."""
    async def decline(*_args):
        return None

    monkeypatch.setattr(fast_lane, "serve", decline)


def counter(svc, outcome: str) -> float:
    return svc.rt.metrics.registry.get_sample_value("cookiesync_syncs_total", {"outcome": outcome}) or 0.0


def history_kinds(svc, plain_id: str) -> list[str]:
    return [e["kind"] for e in history(svc, plain_id)]


def test_fast_lane_answers_as_the_handler_does(service, simulator, monkeypatch) -> None:
    token = connected_device(service, simulator, "fl-1", "7101")
    with monkeypatch.context() as closed:
        handler_only(closed)
        calls = HandlerCalls(closed)
        by_handler = service.sync(token, li_at=COOKIE, plain_id="7101")
        first_by_handler = service.sync(service.pair("fl-1"), plain_id="7111")  # a new link, through the policy
        assert calls.count == 2
    calls = HandlerCalls(monkeypatch)
    by_lane = service.sync(token, li_at=COOKIE, plain_id="7101")
    first_by_lane = service.sync(service.pair("fl-1"), plain_id="7112")
    assert calls.count == 0, "good syncs should not reach the handler"

    for lane, handler in ((by_lane, by_handler), (first_by_lane, first_by_handler)):
        assert lane.status_code == handler.status_code == 200
        assert lane.content == handler.content
        assert lane.headers["content-type"] == handler.headers["content-type"] == "application/json"
        assert lane.headers["x-request-id"] and lane.headers["x-request-id"] != handler.headers["x-request-id"]
    assert by_lane.json()["link_status"] == "connected" and by_lane.json()["unipile_account_id"]
    assert first_by_lane.json()["link_status"] == "pending"
    assert history_kinds(service, "7112")[:2] == history_kinds(service, "7111")[:2] == ["link_created",
                                                                                        "cookie_received"]


def test_fast_lane_keeps_the_side_effects(service, simulator, monkeypatch) -> None:
    token = connected_device(service, simulator, "fl-2", "7102")
    calls = HandlerCalls(monkeypatch)
    unchanged, changed = counter(service, "unchanged"), counter(service, "changed")

    async def last_seen(conn):
        return (await conn.execute(sa.select(devices.c.last_seen_at, devices.c.last_ip, devices.c.extension_version)
                                   .where(devices.c.user_id == "fl-2"))).one()

    first = service.db(last_seen)
    assert service.sync(token, li_at=COOKIE, plain_id="7102", extension_version="2.0.0").status_code == 200
    later = wait_for(lambda: (row := service.db(last_seen)).extension_version == "2.0.0" and row, timeout=5)
    assert later.last_seen_at > first.last_seen_at and later.last_ip == "127.0.0.1"
    # a new cookie is stored and written to the history, as by the handler
    assert service.sync(token, li_at="AQEDAR-fastlane-cookie-2", plain_id="7102").status_code == 200
    assert history_kinds(service, "7102").count("cookie_received") == 2
    assert counter(service, "unchanged") == unchanged + 1 and counter(service, "changed") == changed + 1
    # a body sent in chunks is read whole
    body = msgspec.json.encode({"li_at": "AQEDAR-fastlane-cookie-2", "li_a": None, "plain_id": "7102",
                                "user_agent": UA, "extension_version": "2.0.0"})
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    chunked = service.http.post("/v1/extension/sync", content=iter([body[:40], body[40:90], body[90:]]),
                                headers=auth)
    assert chunked.status_code == 200 and set(chunked.json()) == {"link_status", "unipile_account_id",
                                                                  "next_sync_in_s", "reconnect_url", "hold_reason"}
    assert counter(service, "unchanged") == unchanged + 2
    assert calls.count == 0

    # errors are the handler's own
    bad = service.http.post("/v1/extension/sync", content=body.replace(b'"7102"', b'"77x"'), headers=auth)
    assert bad.status_code == 400 and "plain_id" in bad.text and bad.json()["status_code"] == 400
    wrong = service.http.post("/v1/extension/sync", content=body, headers=auth | {"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "pair the extension again" in wrong.json()["detail"]
    assert calls.count == 1  # the unknown token; the bad body is refused by Litestar before the handler


def test_sync_rate_limit_holds(service, simulator, monkeypatch) -> None:
    token = connected_device(service, simulator, "fl-3", "7103")
    service.rt.sync_limiter = RateLimiter(limit=3, window_s=60)
    calls = HandlerCalls(monkeypatch)
    answers = [service.sync(token, li_at=COOKIE, plain_id="7103") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200] and calls.count == 0
    limited = service.sync(token, li_at=COOKIE, plain_id="7103")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0 and limited.json()["detail"]
    assert calls.count == 1  # refused by the handler, which words it
    assert service.sync(token, li_at="AQEDAR-fastlane-cookie-3", plain_id="7103").status_code == 429
    assert history_kinds(service, "7103").count("cookie_received") == 1
