"""The sync shortcut answers an unchanged cookie from a cached device before Litestar's
handler machinery runs. It must give exactly the handler's answer, keep the handler's
side effects (last seen, counters, the rate limit), and leave everything else to it."""
from __future__ import annotations

import msgspec
import sqlalchemy as sa

from cookiesync.db.schema import devices
from cookiesync.domain.sync import services
from tests.support.wait import wait_for
from tests.test_service import settled, sim_script

COOKIE = "AQEDAR-shortcut-cookie-1"


class HandlerCalls:
    """Counts the syncs that reached the Litestar handler (the server runs in this process)."""

    def __init__(self, monkeypatch) -> None:
        self.count = 0
        real = services.sync

        async def counted(*args, **kwargs):
            self.count += 1
            return await real(*args, **kwargs)

        monkeypatch.setattr(services, "sync", counted)


def unchanged_total(svc) -> float:
    return svc.rt.metrics.registry.get_sample_value("cookiesync_syncs_total", {"outcome": "unchanged"}) or 0.0


def connected_device(svc, simulator, user_id: str, plain_id: str) -> str:
    sim_script(simulator, COOKIE, plain_id)
    svc.new_user(user_id)
    token = svc.pair(user_id)
    assert svc.sync(token, li_at=COOKIE, plain_id=plain_id).status_code == 200
    assert settled(svc, user_id, plain_id) == "connected"
    return token


def test_shortcut_gives_the_handlers_answer_and_side_effects(service, simulator, monkeypatch) -> None:
    token = connected_device(service, simulator, "sc-1", "7101")
    calls = HandlerCalls(monkeypatch)
    services.forget_link(service.rt, "sc-1", "7101")  # the next sync misses the cache: the handler answers it
    before = unchanged_total(service)

    by_handler = service.sync(token, li_at=COOKIE, plain_id="7101")
    assert calls.count == 1
    by_shortcut = service.sync(token, li_at=COOKIE, plain_id="7101")
    assert calls.count == 1, "the second, cached, unchanged sync should not reach the handler"

    assert by_handler.status_code == by_shortcut.status_code == 200
    assert by_shortcut.content == by_handler.content
    assert by_shortcut.json() == {"link_status": "connected", "unipile_account_id": by_handler.json()[
        "unipile_account_id"], "next_sync_in_s": service.settings.sync_interval_s}
    assert by_shortcut.headers["content-type"] == by_handler.headers["content-type"] == "application/json"
    assert by_shortcut.headers["x-request-id"] and by_shortcut.headers["x-request-id"] != by_handler.headers[
        "x-request-id"]
    assert unchanged_total(service) == before + 2

    # "last seen" is still written for a shortcut answer, with the address it came from
    async def last_seen(conn):
        return (await conn.execute(sa.select(devices.c.last_seen_at, devices.c.last_ip, devices.c.extension_version)
                                   .where(devices.c.user_id == "sc-1"))).one()

    first = service.db(last_seen)
    assert service.sync(token, li_at=COOKIE, plain_id="7101", extension_version="2.0.0").status_code == 200
    assert calls.count == 1
    later = wait_for(lambda: (row := service.db(last_seen)).extension_version == "2.0.0" and row, timeout=5)
    assert later.last_seen_at > first.last_seen_at and later.last_ip == "127.0.0.1"


def test_shortcut_leaves_changes_errors_and_chunked_bodies_right(service, simulator, monkeypatch) -> None:
    token = connected_device(service, simulator, "sc-2", "7102")
    calls = HandlerCalls(monkeypatch)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    # a new cookie goes to the handler (and through the policy)
    assert service.sync(token, li_at="AQEDAR-shortcut-cookie-2", plain_id="7102").status_code == 200
    assert calls.count == 1
    # a body sent in chunks is read whole by the shortcut
    body = msgspec.json.encode({"li_at": "AQEDAR-shortcut-cookie-2", "li_a": None, "plain_id": "7102",
                                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0",
                                "extension_version": "1.0.0"})
    chunked = service.http.post("/v1/extension/sync", content=iter([body[:40], body[40:90], body[90:]]),
                                headers=auth)
    assert chunked.status_code == 200 and set(chunked.json()) == {"link_status", "unipile_account_id",
                                                                  "next_sync_in_s"}
    assert calls.count == 1
    # bad bodies and tokens from a cached device still get the handler's own errors
    bad = service.http.post("/v1/extension/sync", content=body.replace(b'"7102"', b'"77x"'), headers=auth)
    assert bad.status_code == 400 and "plain_id" in bad.text and bad.json()["status_code"] == 400
    wrong = service.http.post("/v1/extension/sync", content=body, headers=auth | {"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"]
    assert calls.count == 1  # both refused by Litestar and the handler, before the service call


def test_sync_rate_limit_holds_on_both_paths(service, simulator, monkeypatch) -> None:
    token = connected_device(service, simulator, "sc-3", "7103")
    assert service.sync(token, li_at=COOKIE, plain_id="7103").status_code == 200  # caches the connected link
    service.rt.caches["sync_limiter"] = services.RateLimiter(limit=3, window_s=60)
    calls = HandlerCalls(monkeypatch)
    answers = [service.sync(token, li_at=COOKIE, plain_id="7103") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200] and calls.count == 0
    limited = service.sync(token, li_at=COOKIE, plain_id="7103")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0 and limited.json()["detail"]
    assert calls.count == 0  # refused by the handler's limit check, before the service call
    changed = service.sync(token, li_at="AQEDAR-shortcut-cookie-3", plain_id="7103")
    assert changed.status_code == 429
