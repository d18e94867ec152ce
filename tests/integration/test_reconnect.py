"""Disconnects end to end: Unipile's webhook, the durable retry schedule, the give-up
email over real SMTP, and the hosted-auth reconnect it leads to. Intervals shrunk."""
from __future__ import annotations

import re
import time
from datetime import datetime

import httpx
import sqlalchemy as sa

from cookiesync.db.schema import incidents, outbox
from tests.support.history import history
from tests.support.reconnect import INTERVAL, connect_one, fast, fire
from tests.support.service import settled, status_of
from tests.support.simulator import fingerprint, sim_get, sim_script
from tests.support.wait import wait_for


def attempts(svc, plain_id: str) -> list[dict]:
    return [e for e in history(svc, plain_id) if e["kind"] == "attempt"]


def emails(svc, user_id: str | None = None) -> list[dict]:
    async def q(conn):
        query = sa.select(outbox).order_by(outbox.c.id)
        if user_id:
            query = query.where(outbox.c.user_id == user_id)
        return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    return svc.db(q)


def test_credentials_with_a_good_cookie_reconnects_once_without_email(service_factory, simulator) -> None:
    svc = service_factory(**fast())
    _, account_id = connect_one(svc, simulator, "r-1", "8101", "AQEDAR-good-cookie-r1")
    delivery = fire(simulator, account_id)
    assert delivery  # the simulator delivered it to us
    wait_for(lambda: len(attempts(svc, "8101")) >= 2)
    time.sleep(INTERVAL * 2)
    recon = attempts(svc, "8101")[1:]
    assert len(recon) == 1 and recon[0]["data"]["kind"] == "reconnect" and recon[0]["data"]["outcome"] == "connected"
    assert recon[0]["data"]["trigger"] == "webhook"
    assert status_of(svc, "r-1", "8101") == "connected"
    assert emails(svc) == []


def test_bad_cookie_for_the_whole_window_then_one_email_whose_button_reconnects(service_factory, simulator,
                                                                                  smtp) -> None:
    svc = service_factory(**fast(smtp_host="127.0.0.1", smtp_port=smtp.port, stale_cookie_s=3600))
    _, account_id = connect_one(svc, simulator, "r-2", "8201", "AQEDAR-dying-cookie-r2",
                                ["ok", "sticky:invalid_credentials"])
    fire(simulator, account_id)
    wait_for(lambda: status_of(svc, "r-2", "8201") == "needs_user", timeout=INTERVAL * 4 + 10)
    recon = attempts(svc, "8201")[1:]
    assert len(recon) == 5 and all(a["data"]["outcome"] == "failed" for a in recon)
    assert all(a["data"]["error_type"] == "errors/invalid_credentials" for a in recon)

    async def incident_start(conn):
        return (await conn.execute(sa.select(incidents.c.opened_at).where(incidents.c.kind == "reconnect"))).scalar()

    t0: datetime = svc.db(incident_start)
    started = [e["at"] for e in history(svc, "8201") if e["kind"] == "attempt_started"][1:]
    offsets = [(at - t0).total_seconds() for at in started]
    for k, off in enumerate(offsets):
        assert k * INTERVAL - 0.05 <= off <= k * INTERVAL + 0.6, offsets

    msg = wait_for(lambda: smtp.messages, timeout=10)[0]
    time.sleep(INTERVAL * 2)
    assert len(smtp.messages) == 1 and len(emails(svc)) == 1
    assert msg["To"] == "r-2@example.com" and msg["Message-ID"] == emails(svc)[0]["message_id"]
    html = next(p for p in msg.walk() if p.get_content_type() == "text/html").get_content()
    assert "Reconnect LinkedIn" in html and "extension-check" not in html
    button = re.search(r'href="([^"]+/reconnect/[^"]+)"', html).group(1)

    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        first = browser.get(button)
        assert first.status_code == 302
        hosted = first.headers["location"]
        assert hosted.startswith(simulator.url)
        page = browser.get(hosted)
        assert page.status_code == 200 and "sim-hosted-submit" in page.text
        done = browser.post(hosted)
        assert done.status_code in (302, 303)
        landing = browser.get(done.headers["location"])
    assert status_of(svc, "r-2", "8201") == "connected"
    assert landing.status_code == 200 and "connected again" in landing.text
    kinds = [e["kind"] for e in history(svc, "8201")]
    assert "reconnect_link_opened" in kinds and "hosted_auth" in kinds
    hosted_req = sim_get(simulator, "/_sim/hosted-links").json()["items"][0]
    body = hosted_req.get("body", hosted_req)
    assert body["type"] == "reconnect" and body["reconnect_account"] == account_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["expiresOn"])


def test_fresh_cookie_after_attempt_two_succeeds_at_once(service_factory, simulator) -> None:
    svc = service_factory(**fast())
    token, account_id = connect_one(svc, simulator, "r-3", "8301", "AQEDAR-old-cookie-r3",
                                    ["ok", "sticky:expired_credentials"])
    fire(simulator, account_id)
    wait_for(lambda: len(attempts(svc, "8301")) >= 3, timeout=INTERVAL * 2 + 5)  # connect + 2 reconnects
    sim_script(simulator, "AQEDAR-fresh-cookie-r3", "8301")
    assert svc.sync(token, li_at="AQEDAR-fresh-cookie-r3", plain_id="8301").status_code == 200
    wait_for(lambda: status_of(svc, "r-3", "8301") == "connected", timeout=5)
    time.sleep(INTERVAL * 4)
    recon = attempts(svc, "8301")[1:]
    assert [a["data"]["outcome"] for a in recon] == ["failed", "failed", "connected"]
    assert recon[-1]["data"]["trigger"] == "extension"
    assert emails(svc) == []
    account = next(a for a in sim_get(simulator, "/_sim/accounts").json()["items"] if a["id"] == account_id)
    assert account["li_at_fingerprint"] == fingerprint("AQEDAR-fresh-cookie-r3")


def test_unipile_down_for_the_whole_window_alerts_operators_not_the_user(service_factory, simulator, caplog) -> None:
    svc = service_factory(**fast(retry_interval_s=0.4))
    _, account_id = connect_one(svc, simulator, "r-4", "8401", "AQEDAR-cookie-r4", ["ok", "sticky:503"])
    fire(simulator, account_id)
    wait_for(lambda: len(attempts(svc, "8401")) >= 8, timeout=10)  # 1 connect + 5 in window + 2 beyond
    assert status_of(svc, "r-4", "8401") == "reconnecting"
    assert emails(svc) == []
    kinds = [e["kind"] for e in history(svc, "8401")]
    assert "operator_alert" in kinds
    assert any(r.levelname == "ERROR" and "OPERATOR ALERT" in r.getMessage() for r in caplog.records)
    metrics = svc.http.get("/metrics").text
    assert re.search(r"cookiesync_operator_alerts_total\{[^}]*\} [1-9]", metrics)


def test_same_webhook_three_times_opens_one_incident(service_factory, simulator) -> None:
    svc = service_factory(**fast())
    _, account_id = connect_one(svc, simulator, "r-5", "8501", "AQEDAR-cookie-r5", ["ok", "sticky:503"])
    body = {"AccountStatus": {"account_id": account_id, "account_type": "LINKEDIN", "message": "CREDENTIALS"}}
    headers = {svc.settings.webhook_header: svc.settings.webhook_secret}
    answers = [svc.http.post("/v1/webhooks/unipile/account-status", json=body, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["duplicate"] for a in answers] == [False, True, True]

    async def count(conn):
        return (await conn.execute(sa.select(sa.func.count()).select_from(incidents)
                                   .where(incidents.c.kind == "reconnect"))).scalar_one()

    assert svc.db(count) == 1


def test_a_second_disconnect_after_the_reconnect_is_not_taken_for_a_redelivery(service_factory, simulator) -> None:
    """The account-status body has no id or time: the same CREDENTIALS words minutes later, once the
    account is connected again, are a new disconnect and start a new reconnect (the window did not
    let them through before)."""
    svc = service_factory(**fast())
    _, account_id = connect_one(svc, simulator, "r-7", "8701", "AQEDAR-cookie-r7")
    body = {"AccountStatus": {"account_id": account_id, "account_type": "LINKEDIN", "message": "CREDENTIALS"}}
    headers = {svc.settings.webhook_header: svc.settings.webhook_secret}
    post = lambda: svc.http.post("/v1/webhooks/unipile/account-status", json=body, headers=headers)  # noqa: E731
    assert post().json()["duplicate"] is False
    wait_for(lambda: [a for a in attempts(svc, "8701")[1:] if a["data"]["outcome"] == "connected"])
    wait_for(lambda: status_of(svc, "r-7", "8701") == "connected")
    second = post().json()
    assert second["duplicate"] is False
    wait_for(lambda: len([a for a in attempts(svc, "8701")[1:] if a["data"]["outcome"] == "connected"]) == 2)

    async def count(conn):
        return (await conn.execute(sa.select(sa.func.count()).select_from(incidents)
                                   .where(incidents.c.kind == "reconnect"))).scalar_one()

    assert svc.db(count) == 2


def test_webhook_secret_unknown_account_and_messages(service_factory, simulator) -> None:
    svc = service_factory(**fast())
    _, account_id = connect_one(svc, simulator, "r-6", "8601", "AQEDAR-cookie-r6")
    body = {"AccountStatus": {"account_id": account_id, "account_type": "LINKEDIN", "message": "DELETED"}}
    bad = svc.http.post("/v1/webhooks/unipile/account-status", json=body, headers={"Unipile-Auth": "nope"})
    assert bad.status_code == 401 and status_of(svc, "r-6", "8601") == "connected"
    headers = {svc.settings.webhook_header: svc.settings.webhook_secret}
    unknown = {"AccountStatus": {"account_id": "nobody", "account_type": "LINKEDIN", "message": "CREDENTIALS"}}
    r = svc.http.post("/v1/webhooks/unipile/account-status", json=unknown, headers=headers)
    assert r.status_code == 200 and r.json()["known_account"] is False
    odd = {"AccountStatus": {"account_id": account_id, "account_type": "LINKEDIN", "message": "BRAND_NEW"}}
    assert svc.http.post("/v1/webhooks/unipile/account-status", json=odd, headers=headers).status_code == 200
    stopped = {"AccountStatus": {"account_id": account_id, "account_type": "LINKEDIN", "message": "STOPPED"}}
    assert svc.http.post("/v1/webhooks/unipile/account-status", json=stopped, headers=headers).status_code == 200
    wait_for(lambda: [e for e in history(svc, "8601") if e["kind"] == "account_restart"])
    assert svc.http.post("/v1/webhooks/unipile/account-status", json=body, headers=headers).status_code == 200
    assert status_of(svc, "r-6", "8601") == "disabled"


def test_stale_extension_paragraph(service_factory, simulator) -> None:
    svc = service_factory(**fast(stale_cookie_s=0.5))
    _, account_id = connect_one(svc, simulator, "r-7", "8701", "AQEDAR-cookie-r7", ["ok", "sticky:wrong_account"])
    time.sleep(0.6)
    fire(simulator, account_id)
    wait_for(lambda: emails(svc), timeout=INTERVAL * 4 + 10)
    stale = emails(svc)[0]
    assert "extension-check" in stale["body_html"] and "browser extension" in stale["body_text"]
    assert stale["status"] == "pending"  # no SMTP configured: kept in the outbox
    svc.server.stop()  # the next service shares the database: one set of settings at a time

    fresh_svc = service_factory(**fast(stale_cookie_s=3600))
    _, acct2 = connect_one(fresh_svc, simulator, "r-8", "8801", "AQEDAR-cookie-r8", ["ok", "sticky:wrong_account"])
    fire(simulator, acct2)
    wait_for(lambda: emails(fresh_svc, "r-8"), timeout=INTERVAL * 4 + 10)
    assert "extension-check" not in emails(fresh_svc, "r-8")[0]["body_html"]


def test_checkpoint_during_reconnect_emails_the_hosted_link(service_factory, simulator) -> None:
    svc = service_factory(**fast())
    _, account_id = connect_one(svc, simulator, "r-9", "8901", "AQEDAR-cookie-r9", ["ok", "checkpoint:OTP"])
    fire(simulator, account_id)
    wait_for(lambda: status_of(svc, "r-9", "8901") == "checkpoint")
    time.sleep(INTERVAL * 2)
    assert len(attempts(svc, "8901")) == 2
    mails = emails(svc)
    assert len(mails) == 1 and mails[0]["kind"] == "checkpoint" and "/reconnect/" in mails[0]["body_text"]


def test_tampered_or_expired_reconnect_link_gets_a_friendly_page(service) -> None:
    r = service.http.get("/reconnect/not-a-token")
    assert r.status_code == 410 and "text/html" in r.headers["content-type"] and "no longer works" in r.text
    token = service.rt.reconnect_signer.sign({"l": 1, "i": 1}, ttl_s=-5)
    r = service.http.get(f"/reconnect/{token}")
    assert r.status_code == 410 and "Traceback" not in r.text


def test_register_webhook_is_idempotent(service, simulator) -> None:
    import asyncio

    from cookiesync.domain.webhooks.registration import register_webhook
    from cookiesync.unipile.client import UnipileClient

    async def run():
        client = UnipileClient(simulator.url, simulator.api_key)
        try:
            first = await register_webhook(service.settings, client)
            second = await register_webhook(service.settings, client)
            return first, second, await client.list_webhooks()
        finally:
            await client.aclose()

    first, second, hooks = asyncio.run(run())
    assert first.startswith("created") and second.startswith("kept")
    assert len(hooks) == 1
    headers = {h["key"]: h["value"] for h in hooks[0]["headers"]}
    assert headers[service.settings.webhook_header] == service.settings.webhook_secret
    assert headers["Content-Type"] == "application/json"


def test_calls_to_unipile_stay_within_the_concurrency_setting(service_factory, simulator) -> None:
    """At most `unipile_concurrency` connect/reconnect calls at once, and the runner uses them all
    (the slot is released when Unipile answers, before the answer is recorded)."""
    svc = service_factory(unipile_concurrency=3)
    members = [(f"AQEDAR-limit-cookie-{i:02d}", str(8800 + i)) for i in range(9)]
    # Pair every browser first, then send the nine syncs back to back: pairing takes a few round
    # trips, and on a loaded machine one connect could end before the next browser was paired.
    tokens = []
    for i, (li_at, plain_id) in enumerate(members):
        sim_script(simulator, li_at, plain_id, latency_ms=1000)
        svc.new_user(f"lim-{i}")
        tokens.append(svc.pair(f"lim-{i}"))
    for token, (li_at, plain_id) in zip(tokens, members):
        assert svc.sync(token, li_at=li_at, plain_id=plain_id).status_code == 200
    for i, (_li_at, plain_id) in enumerate(members):
        assert settled(svc, f"lim-{i}", plain_id) == "connected"
    stats = sim_get(simulator, "/_sim/stats").json()
    assert stats["auth_in_flight"] == 0
    assert stats["auth_in_flight_peak"] == 3
