"""The core service over real sockets: integrator API, pairing, sync, first connect
against the Unipile simulator, account switching, and secrets never leaking."""
from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from cookiesync.db.schema import events, links
from tests.support.history import history
from tests.support.service import settled, status_of
from tests.support.simulator import fingerprint, sim_get, sim_script
from tests.support.wait import wait_for

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"


def sim_accounts(sim) -> list[dict]:
    return sim_get(sim, "/_sim/accounts").json()["items"]


def test_pair_sync_connect_end_to_end(service, simulator) -> None:
    li_at, li_a = "AQEDARabc-first-member-li-at-cookie", "AQJfirst-member-li-a-cookie"
    sim_script(simulator, li_at, "1001")
    service.new_user("u-1")
    token = service.pair("u-1")
    r = service.sync(token, li_at=li_at, li_a=li_a, user_agent=UA, plain_id="1001")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["link_status"] == "pending" and body["next_sync_in_s"] > 0
    assert settled(service, "u-1", "1001") == "connected"

    accounts = sim_accounts(simulator)
    assert len(accounts) == 1
    acct = accounts[0]
    # a loopback client says nothing about location: neither `ip` nor `country` (domain/location)
    assert (acct["li_at_fingerprint"], acct["li_a_fingerprint"], acct["user_agent"], acct["ip"], acct["country"]) == \
        (fingerprint(li_at), fingerprint(li_a), UA, None, None)
    item = service.accounts("u-1")[0]
    assert item["unipile_account_id"] == acct["id"] and item["date_last_cookie"]
    # the next sync answers with the connected state and account id
    again = service.sync(token, li_at=li_at, li_a=li_a, user_agent=UA, plain_id="1001").json()
    assert again["link_status"] == "connected" and again["unipile_account_id"] == acct["id"]
    kinds = [e["kind"] for e in history(service, "1001")]
    assert kinds[:3] == ["link_created", "cookie_received", "attempt_started"] and "attempt" in kinds


@pytest.mark.parametrize("outcome,state,error_type,checkpoint", [
    ("checkpoint:2FA", "checkpoint", None, "2FA"),
    ("checkpoint:IN_APP_VALIDATION", "checkpoint", None, "IN_APP_VALIDATION"),
    ("invalid_credentials", "pending", "errors/invalid_credentials", None),
    ("503", "pending", "errors/service_unavailable", None),
    ("425", "pending", None, None),
])
def test_first_connect_outcomes(service, simulator, outcome, state, error_type, checkpoint) -> None:
    li_at = f"AQEDAR-{outcome.replace(':', '-')}-cookie"
    sim_script(simulator, li_at, "2002", [outcome])
    service.new_user("u-2")
    token = service.pair("u-2")
    assert service.sync(token, li_at=li_at, plain_id="2002").status_code == 200

    def attempt_recorded():
        return [e for e in history(service, "2002") if e["kind"] == "attempt"]

    attempts = wait_for(attempt_recorded)
    data = attempts[0]["data"]
    assert status_of(service, "u-2", "2002") == state
    if checkpoint:
        assert data["outcome"] == "checkpoint" and data["checkpoint_type"] == checkpoint
        assert service.accounts("u-2")[0]["checkpoint_type"] == checkpoint
        outbox_kinds = [e["kind"] for e in history(service, "2002")]
        assert "email_queued" in outbox_kinds
    else:
        assert data["outcome"] == "failed"
        if error_type:
            assert data["error_type"] == error_type
        item = service.accounts("u-2")[0]
        if outcome in ("503", "425"):
            # not the user's fault: a retry is scheduled on the cadence
            assert item["next_attempt_at"] is not None
        else:
            # dead cookie on the first connect: wait for a fresh one, no email
            assert item["next_attempt_at"] is None
            assert "email_queued" not in [e["kind"] for e in history(service, "2002")]


def test_account_switch_never_touches_the_first_members_account(service, simulator) -> None:
    a_cookie, b_cookie = "AQEDAR-member-A-cookie-value", "AQEDAR-member-B-cookie-value"
    sim_script(simulator, a_cookie, "3001")
    sim_script(simulator, b_cookie, "3002")
    service.new_user("u-3")
    token = service.pair("u-3")
    service.sync(token, li_at=a_cookie, plain_id="3001")
    assert settled(service, "u-3", "3001") == "connected"
    a_account = service.accounts("u-3")[0]["unipile_account_id"]

    r = service.sync(token, li_at=b_cookie, plain_id="3002")
    assert r.status_code == 200 and r.json()["link_status"] == "pending"
    time.sleep(0.5)
    items = {i["plain_id"]: i for i in service.accounts("u-3")}
    assert items["3002"]["auto_connect"] is False and items["3002"]["hold_reason"]
    assert items["3002"]["unipile_account_id"] is None
    calls = sim_get(simulator, "/_sim/calls").json()["items"]
    auth_calls = [c for c in calls if c["method"] == "POST" and c["path"].startswith("/api/v1/accounts")]
    assert len(auth_calls) == 1 and auth_calls[0]["body"]["access_token"] == fingerprint(a_cookie)
    assert all(c["body"].get("access_token") != fingerprint(b_cookie) for c in calls if c.get("body"))
    # member A's account in Unipile still holds A's cookie only
    acct = next(a for a in sim_accounts(simulator) if a["id"] == a_account)
    assert acct["li_at_fingerprint"] == fingerprint(a_cookie)


def test_several_accounts_per_user_when_allowed(service_factory, simulator) -> None:
    svc = service_factory(max_accounts_per_user=2)
    sim_script(simulator, "AQEDAR-multi-A-cookie", "4001")
    sim_script(simulator, "AQEDAR-multi-B-cookie", "4002")
    svc.new_user("u-4")
    token = svc.pair("u-4")
    svc.sync(token, li_at="AQEDAR-multi-A-cookie", plain_id="4001")
    svc.sync(token, li_at="AQEDAR-multi-B-cookie", plain_id="4002")
    assert settled(svc, "u-4", "4001") == "connected"
    assert settled(svc, "u-4", "4002") == "connected"
    accounts = {a["li_at_fingerprint"]: a for a in sim_accounts(simulator)}
    assert accounts[fingerprint("AQEDAR-multi-A-cookie")]["id"] != accounts[fingerprint("AQEDAR-multi-B-cookie")]["id"]


def test_pairing_code_is_single_use_and_tokens_revocable(service) -> None:
    service.new_user("u-5")
    code = service.integrator("POST", "/v1/users/u-5/pairing-codes").json()["code"]
    first = service.http.post("/v1/extension/pair", json={"pairing_code": code, "extension_version": "1"})
    assert first.status_code == 201
    again = service.http.post("/v1/extension/pair", json={"pairing_code": code, "extension_version": "1"})
    assert again.status_code == 400 and "already used" in again.json()["detail"]
    token = first.json()["device_token"]
    assert service.sync(token).status_code == 200
    gone = service.http.delete("/v1/extension/device", headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 204
    time.sleep(service.settings.token_cache_ttl_s + 0.2)
    r = service.sync(token)
    assert r.status_code == 401 and "pair" in r.json()["detail"]


def test_erase_user_removes_everything(service, simulator) -> None:
    service.new_user("u-6")
    token = service.pair("u-6")
    service.sync(token, li_at="AQEDAR-erase-me-cookie", plain_id="6001")
    settled(service, "u-6", "6001")
    r = service.integrator("DELETE", "/v1/users/u-6")
    assert r.status_code == 200 and r.json()["links"] == 1 and r.json()["devices"] == 1

    async def counts(conn):
        return {t.name: (await conn.execute(sa.select(sa.func.count()).select_from(t)
                                            .where(t.c.user_id == "u-6"))).scalar_one() for t in (links, events)}

    assert service.db(counts) == {"links": 0, "events": 0}
    assert service.integrator("GET", "/v1/users/u-6/accounts").status_code == 404
    assert len(sim_accounts(simulator)) == 1  # nothing deleted in Unipile unless asked

    service.new_user("u-6b")
    token = service.pair("u-6b")
    service.sync(token, li_at="AQEDAR-erase-me-too-cookie", plain_id="6002")
    settled(service, "u-6b", "6002")
    r = service.integrator("DELETE", "/v1/users/u-6b", params={"delete_in_unipile": "true"})
    assert r.status_code == 200 and len(r.json()["unipile_accounts_deleted"]) == 1
    assert [a["li_at_fingerprint"] for a in sim_accounts(simulator)] == [fingerprint("AQEDAR-erase-me-cookie")]


def test_no_cookie_value_in_database_file_logs_or_responses(service, simulator, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secrets_used = ["AQEDAR-secret-li-at-never-stored-plain", "AQJsecret-li-a-never-stored-plain"]
    sim_script(simulator, secrets_used[0], "7001", ["invalid_credentials"])
    service.new_user("u-7")
    token = service.pair("u-7")
    responses = [service.sync(token, li_at=secrets_used[0], li_a=secrets_used[1], plain_id="7001")]
    wait_for(lambda: [e for e in history(service, "7001") if e["kind"] == "attempt"])
    # bad input that carries the cookie must not echo it either
    responses.append(service.sync(token, li_at=secrets_used[0], li_a=secrets_used[1], plain_id="x7001"))
    responses.append(service.sync(token, li_at=secrets_used[0] + " spaces", plain_id="7001"))
    responses.append(service.integrator("GET", "/v1/users/u-7/accounts"))
    service.server.stop()  # flush and close the database

    url = service.settings.database
    if url.startswith("sqlite"):
        db_path = Path(url.split("///", 1)[1])
        blobs = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    else:  # the whole PostgreSQL database, dumped as text and binary
        dsn = url.replace("+asyncpg", "")
        blobs = subprocess.run(["pg_dump", dsn], capture_output=True, check=True).stdout
        blobs += subprocess.run(["pg_dump", "-Fc", "-Z0", dsn], capture_output=True, check=True).stdout
        assert b"cookie_ciphertext" in blobs
    for secret in secrets_used:
        assert secret.encode() not in blobs
        assert secret not in caplog.text
        for resp in responses:
            assert secret not in resp.text
    assert token not in caplog.text
    # and the link is really there, encrypted
    async def stored(conn):
        return (await conn.execute(sa.select(links.c.cookie_ciphertext).where(links.c.plain_id == "7001"))).scalar()

    blob = service.db(stored)
    assert blob and len(blob) > 40


def test_cookie_decrypts_only_on_its_own_link(service) -> None:
    from cookiesync.security import CookieBundle, DecryptError, KeyRing, decrypt_cookies, encrypt_cookies

    ring = KeyRing(service.settings.encryption_keys)
    kid, blob = encrypt_cookies(ring, CookieBundle("AQEDAR-x-cookie", None, UA), "u", "1")
    assert decrypt_cookies(ring, kid, blob, "u", "1").li_at == "AQEDAR-x-cookie"
    with pytest.raises(DecryptError):
        decrypt_cookies(ring, kid, blob, "u", "2")
    with pytest.raises(DecryptError):
        decrypt_cookies(ring, kid, blob[:-1] + bytes([blob[-1] ^ 1]), "u", "1")


def test_repeated_cookies_are_coalesced_into_one_history_row(service_factory, simulator) -> None:
    svc = service_factory(cookie_repeat_window_s=0.3)
    sim_script(simulator, "AQEDAR-repeat-cookie", "9501")
    svc.new_user("u-9")
    token = svc.pair("u-9")
    for _ in range(4):
        assert svc.sync(token, li_at="AQEDAR-repeat-cookie", plain_id="9501").status_code == 200
    time.sleep(0.4)
    svc.sync(token, li_at="AQEDAR-repeat-cookie", plain_id="9501")  # the next flush writes the row
    rows = wait_for(lambda: [e for e in history(svc, "9501") if e["kind"] == "cookie_repeated"])
    assert sum(e["data"]["count"] for e in rows) >= 3 and len(rows) <= 2
    assert [e["kind"] for e in history(svc, "9501")].count("cookie_received") == 1


def test_revocation_on_one_instance_takes_effect_on_another_within_seconds(service_factory, simulator) -> None:
    a = service_factory(token_cache_ttl_s=1.0)
    b = service_factory(token_cache_ttl_s=1.0)  # same database, another instance
    a.new_user("u-10")
    token = a.pair("u-10")
    assert b.sync(token, plain_id="10001").status_code == 200  # b now has the device cached
    assert a.http.delete("/v1/extension/device", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    started = time.monotonic()
    wait_for(lambda: b.sync(token, plain_id="10001").status_code == 401, timeout=5, interval=0.1)
    assert time.monotonic() - started < 3
    # erasure works the same way
    a.new_user("u-11")
    token2 = a.pair("u-11")
    assert b.sync(token2, plain_id="11001").status_code == 200
    assert a.integrator("DELETE", "/v1/users/u-11").status_code == 200
    wait_for(lambda: b.sync(token2, plain_id="11001").status_code == 401, timeout=5, interval=0.1)
