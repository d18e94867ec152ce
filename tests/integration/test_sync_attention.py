"""What the sync answer tells the extension to show its user (issue 16 §3), and the sign-out
report (§5): `POST /v1/extension/signed-out`, the link's mark, its history row, the give-up
email's wording and the fresh cookie that clears it. Real service, real database (SQLite and
PostgreSQL), the Unipile simulator; retry intervals shrunk."""
from __future__ import annotations

import hashlib
import re
import time

import httpx
import sqlalchemy as sa

from cookiesync.db.schema import events, links, outbox
from tests.support.history import history
from tests.support.reconnect import INTERVAL, connect_one, fast, fire
from tests.support.service import status_of
from tests.support.simulator import sim_script
from tests.support.wait import wait_for


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def signed_out(svc, token: str | None, **body) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return svc.http.post("/v1/extension/signed-out", json=body, headers=headers)


def names(error: dict, field: str) -> bool:
    """A 400 names the field, as the sync's do: as the error's key, or in its message."""
    return any(e.get("key") == field or f"`{field}`" in e.get("message", "") for e in error.get("extra", []))


def link_column(svc, plain_id: str, column: str):
    async def q(conn):
        return (await conn.execute(sa.select(links.c[column]).where(links.c.plain_id == plain_id))).scalar_one()

    return svc.db(q)


def write_counts(svc) -> tuple[int, int]:
    """Rows in the history and the outbox: what a heartbeat must not add to."""
    async def q(conn):
        return ((await conn.execute(sa.select(sa.func.count()).select_from(events))).scalar_one(),
                (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one())

    return svc.db(q)


def test_a_link_that_needs_the_user_answers_with_the_email_kind_of_reconnect_link(service_factory, simulator):
    svc = service_factory(**fast())
    li_at = "AQEDAR-attention-dying-1"
    token, account_id = connect_one(svc, simulator, "att-1", "9101", li_at, ["ok", "sticky:invalid_credentials"])
    connected = svc.sync(token, li_at=li_at, plain_id="9101").json()
    assert connected["link_status"] == "connected"
    assert connected["reconnect_url"] is None and connected["hold_reason"] is None

    fire(simulator, account_id)
    wait_for(lambda: status_of(svc, "att-1", "9101") == "needs_user", timeout=INTERVAL * 4 + 10)
    time.sleep(0.3)  # the batched "last seen" write of the syncs above
    before = write_counts(svc)
    answers = [svc.sync(token, li_at=li_at, plain_id="9101").json() for _ in range(5)]
    assert {a["link_status"] for a in answers} == {"needs_user"}
    urls = {a["reconnect_url"] for a in answers}
    assert len(urls) == 1, "every heartbeat of the window carries the same link"
    (url,) = urls
    assert re.fullmatch(re.escape(svc.url) + r"/reconnect/[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+", url)
    claims = svc.rt.reconnect_signer.verify(url.rsplit("/", 1)[1])
    link_id, incident_id = link_column(svc, "9101", "id"), link_column(svc, "9101", "incident_id")
    assert claims["l"] == link_id and claims["i"] == incident_id
    ttl = svc.settings.reconnect_link_ttl_s
    assert 0.75 * ttl - 5 <= claims["exp"] - time.time() <= ttl + 5
    assert answers[0]["next_sync_in_s"] == svc.settings.sync_interval_s
    time.sleep(0.3)
    assert write_counts(svc) == before, "heartbeats that carry the link wrote history or outbox rows"

    # The link leads to Unipile's hosted-auth page, as the email's does, and reconnects.
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        first = browser.get(url)
        assert first.status_code == 302 and first.headers["location"].startswith(simulator.url)
        page = browser.get(first.headers["location"])
        assert page.status_code == 200 and "sim-hosted-submit" in page.text
        done = browser.post(first.headers["location"])
        browser.get(done.headers["location"])
    wait_for(lambda: status_of(svc, "att-1", "9101") == "connected", timeout=10)
    again = svc.sync(token, li_at=li_at, plain_id="9101").json()
    assert again["link_status"] == "connected" and again["reconnect_url"] is None


def test_a_second_member_held_back_says_why_and_is_not_asked_back_every_minute(service_factory, simulator):
    svc = service_factory(**fast())
    token, _account = connect_one(svc, simulator, "att-2", "9201", "AQEDAR-attention-first-1")
    first = svc.sync(token, li_at="AQEDAR-attention-other-1", plain_id="9202").json()
    assert first["link_status"] == "pending"
    assert first["hold_reason"] == "another LinkedIn account is already connected for this user"
    assert first["next_sync_in_s"] == svc.settings.sync_interval_s and first["reconnect_url"] is None
    svc.rt.link_cache.clear()  # the read-only look of a cache miss says the same
    again = svc.sync(token, li_at="AQEDAR-attention-other-1", plain_id="9202").json()
    cached = svc.sync(token, li_at="AQEDAR-attention-other-1", plain_id="9202").json()
    assert again == cached == first
    # a new cookie of the held member (bulk path) still says so
    rotated = svc.sync(token, li_at="AQEDAR-attention-other-2", plain_id="9202").json()
    assert rotated["hold_reason"] == first["hold_reason"] and rotated["link_status"] == "pending"
    # the member holding the slot is not held
    assert svc.sync(token, li_at="AQEDAR-attention-first-1", plain_id="9201").json()["hold_reason"] is None


def test_signed_out_is_checked_like_the_sync_and_only_for_the_users_own_member(service_factory, simulator):
    svc = service_factory(**fast())
    li_at = "AQEDAR-attention-signout-1"
    token, _account = connect_one(svc, simulator, "att-3", "9301", li_at)
    good = {"plain_id": "9301", "li_at_sha256": sha256(li_at), "extension_version": "1.2.3"}
    bad = [({k: v for k, v in good.items() if k != "li_at_sha256"}, "li_at_sha256"),
           (good | {"li_at_sha256": sha256(li_at).upper()}, "li_at_sha256"),
           (good | {"li_at_sha256": li_at}, "li_at_sha256"),
           (good | {"plain_id": "93x1"}, "plain_id"),
           (good | {"plain_id": 9301}, "plain_id"),
           (good | {"extension_version": ""}, "extension_version"),
           (good | {"li_at": li_at}, "li_at")]
    for body, field in bad:
        r = signed_out(svc, token, **body)
        assert r.status_code == 400 and names(r.json(), field), (body, r.text)
        assert li_at not in r.text
    assert signed_out(svc, None, **good).status_code == 401
    assert signed_out(svc, "dev_not-a-token", **good).status_code == 401
    # another user's device cannot report this user's member; nor can a member the user has not
    other_token, _ = connect_one(svc, simulator, "att-4", "9401", "AQEDAR-attention-other-user-1")
    assert signed_out(svc, other_token, **good).status_code == 404
    assert signed_out(svc, token, **good | {"plain_id": "9999"}).status_code == 404
    assert link_column(svc, "9301", "cookie_signed_out_at") is None
    assert "signed_out" not in [e["kind"] for e in history(svc, "9301")]


def test_signed_out_marks_the_newest_cookie_once_words_the_email_and_a_fresh_cookie_clears_it(
        service_factory, simulator, smtp):
    svc = service_factory(**fast(smtp_host="127.0.0.1", smtp_port=smtp.port, stale_cookie_s=3600))
    old, newest = "AQEDAR-attention-older-1", "AQEDAR-attention-newest-1"
    token, account_id = connect_one(svc, simulator, "att-5", "9501", old, ["ok", "sticky:invalid_credentials"])
    sim_script(simulator, newest, "9501", ["sticky:invalid_credentials"])
    assert svc.sync(token, li_at=newest, plain_id="9501").json()["link_status"] == "connected"

    # a cookie the link no longer keeps: nothing recorded, the newest stays usable
    r = signed_out(svc, token, plain_id="9501", li_at_sha256=sha256(old), extension_version="1.2.3")
    assert r.status_code == 200 and r.json() == {"link_status": "connected", "recorded": False}
    assert link_column(svc, "9501", "cookie_signed_out_at") is None

    body = {"plain_id": "9501", "li_at_sha256": sha256(newest), "extension_version": "1.2.3"}
    answers = [signed_out(svc, token, **body) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json() for a in answers] == [{"link_status": "connected", "recorded": True}] * 3
    assert link_column(svc, "9501", "cookie_signed_out_at") is not None
    rows = [e for e in history(svc, "9501") if e["kind"] == "signed_out"]
    assert len(rows) == 1, "a repeated report is recorded once"
    assert rows[0]["data"]["note"] == "signed out of LinkedIn in this browser"
    assert rows[0]["data"]["extension_version"] == "1.2.3" and newest not in str(rows[0]["data"])
    assert link_column(svc, "9501", "state") == "connected", "a sign-out alone changes no state"

    # The retry schedule runs as it did; the give-up email then says what to do.
    fire(simulator, account_id)
    wait_for(lambda: status_of(svc, "att-5", "9501") == "needs_user", timeout=INTERVAL * 4 + 10)
    recon = [e for e in history(svc, "9501") if e["kind"] == "attempt"][1:]
    assert len(recon) == 5, "the schedule is the usual one: the slot at T0 and four retries"
    msg = wait_for(lambda: smtp.messages, timeout=10)[0]
    text = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_content()
    html = next(p for p in msg.walk() if p.get_content_type() == "text/html").get_content()
    wording = "Sign in to LinkedIn again in this browser, and we reconnect you automatically"
    assert wording in text and wording in html and 'id="signed-out"' in html

    # Signing in again brings a fresh cookie: tried at once, and the mark is gone.
    fresh = "AQEDAR-attention-fresh-1"
    sim_script(simulator, fresh, "9501")
    assert svc.sync(token, li_at=fresh, plain_id="9501").status_code == 200
    wait_for(lambda: status_of(svc, "att-5", "9501") == "connected", timeout=5)
    assert link_column(svc, "9501", "cookie_signed_out_at") is None
    assert [e for e in history(svc, "9501") if e["kind"] == "attempt"][-1]["data"]["trigger"] == "extension"


def test_a_refreshed_cookie_clears_the_mark_in_bulk_too(service_factory, simulator):
    svc = service_factory(**fast())
    li_at = "AQEDAR-attention-bulk-1"
    token, _account = connect_one(svc, simulator, "att-6", "9601", li_at)
    r = signed_out(svc, token, plain_id="9601", li_at_sha256=sha256(li_at), extension_version="1.2.3")
    assert r.json()["recorded"] is True and link_column(svc, "9601", "cookie_signed_out_at") is not None
    # a connected link's new cookie only refreshes it: the bulk statement clears the mark
    assert svc.sync(token, li_at="AQEDAR-attention-bulk-2", plain_id="9601").json()["link_status"] == "connected"
    assert link_column(svc, "9601", "cookie_signed_out_at") is None
