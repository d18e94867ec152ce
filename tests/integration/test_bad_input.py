"""Bad input gets a clear 4xx JSON error and leaves the database exactly as it was."""
from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from cookiesync.db import schema
from tests.support.wait import wait_for

GOOD = {"li_at": "AQEDAR-good-cookie-value", "li_a": None,
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0", "plain_id": "555",
        "extension_version": "1.0.0"}


def snapshot(svc) -> dict:
    async def q(conn):
        out = {}
        for table in schema.metadata.sorted_tables:
            if table.name == "leases":  # the sweep's heartbeat, not data
                continue
            rows = (await conn.execute(sa.select(table))).all()
            out[table.name] = sorted(repr(tuple(r)) for r in rows)
        return out

    return svc.db(q)


@pytest.fixture
def paired(service):
    service.new_user("bad-1")
    token = service.pair("bad-1")
    assert service.sync(token, **GOOD).status_code == 200

    async def profile_read(conn):
        links = schema.links
        return (await conn.execute(sa.select(links.c.profile_read_at, links.c.profile_due_at))).one_or_none()

    # The connect is followed by the profile read (domain/profile), written in the background: the
    # snapshots below must not straddle it (they did once in CI: its operator_alert row landed between).
    wait_for(lambda: (row := service.db(profile_read)) is not None and row[0] is not None and row[1] is None,
             timeout=15)
    time.sleep(0.5)  # let the last-seen flush settle
    return service, token


SYNC_CASES = [
    ("malformed json", b"{not json", 400, None),
    ("missing field", {k: v for k, v in GOOD.items() if k != "plain_id"}, 400, "plain_id"),
    ("extra field", GOOD | {"password": "x"}, 400, "password"),
    ("wrong type", GOOD | {"plain_id": 555}, 400, "plain_id"),
    ("empty cookie", GOOD | {"li_at": ""}, 400, "li_at"),
    ("absurd cookie", GOOD | {"li_at": "A" * 5000}, 400, "li_at"),
    ("cookie with spaces", GOOD | {"li_at": "AQ with spaces inside"}, 400, "li_at"),
    ("non-numeric plain_id", GOOD | {"plain_id": "12ab"}, 400, "plain_id"),
    ("empty plain_id", GOOD | {"plain_id": ""}, 400, "plain_id"),
    ("body over the limit", GOOD | {"user_agent": "U" * 20000}, 413, None),
    ("not an object", [1, 2, 3], 400, None),
]


@pytest.mark.parametrize("name,body,status,mentions", SYNC_CASES, ids=[c[0] for c in SYNC_CASES])
def test_bad_sync_payloads(paired, name, body, status, mentions) -> None:
    svc, token = paired
    before = snapshot(svc)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if isinstance(body, bytes):
        r = svc.http.post("/v1/extension/sync", content=body, headers=headers)
    else:
        r = svc.http.post("/v1/extension/sync", json=body, headers=headers)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["status_code"] == status and err["detail"]
    if mentions:
        assert mentions in r.text
    assert "Traceback" not in r.text
    assert snapshot(svc) == before


AUTH_CASES = [
    ("no token", {}, 401),
    ("unknown token", {"Authorization": "Bearer dev_unknown-token-value-xxxxxxxxxxxx"}, 401),
    ("wrong scheme", {"Authorization": "Basic abc"}, 401),
]


@pytest.mark.parametrize("name,headers,status", AUTH_CASES, ids=[c[0] for c in AUTH_CASES])
def test_sync_without_a_valid_device(paired, name, headers, status) -> None:
    svc, _ = paired
    before = snapshot(svc)
    r = svc.http.post("/v1/extension/sync", json=GOOD, headers=headers)
    assert r.status_code == status and r.json()["detail"]
    assert snapshot(svc) == before


def test_bad_pairing_codes_and_brute_force_limit(paired) -> None:
    svc, _ = paired
    before = snapshot(svc)
    for i in range(10):
        r = svc.http.post("/v1/extension/pair", json={"pairing_code": f"WRONG-{i:05d}", "extension_version": "1"})
        assert r.status_code == 400 and "unknown pairing code" in r.json()["detail"]
    r = svc.http.post("/v1/extension/pair", json={"pairing_code": "WRONG-99999", "extension_version": "1"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    # even a valid code is refused while the address is locked out
    code = svc.integrator("POST", "/v1/users/bad-1/pairing-codes").json()["code"]
    locked = svc.http.post("/v1/extension/pair", json={"pairing_code": code, "extension_version": "1"})
    assert locked.status_code == 429
    after = snapshot(svc)
    # the only change: the pairing code and its history row
    assert after["devices"] == before["devices"] and after["links"] == before["links"]


def test_expired_pairing_code(service_factory) -> None:
    svc = service_factory(pairing_code_ttl_s=0)
    svc.new_user("exp-1")
    code = svc.integrator("POST", "/v1/users/exp-1/pairing-codes").json()["code"]
    r = svc.http.post("/v1/extension/pair", json={"pairing_code": code, "extension_version": "1"})
    assert r.status_code == 400 and "expired" in r.json()["detail"]


def test_integrator_api_errors(paired) -> None:
    svc, _ = paired
    before = snapshot(svc)
    assert svc.http.get("/v1/users/bad-1/accounts").status_code == 401
    wrong = svc.http.get("/v1/users/bad-1/accounts", headers={"Authorization": "Bearer csk_wrong"})
    assert wrong.status_code == 401 and wrong.json()["detail"]
    assert svc.integrator("GET", "/v1/users/nobody/accounts").status_code == 404
    assert svc.integrator("POST", "/v1/users/nobody/pairing-codes").status_code == 404
    assert svc.integrator("DELETE", "/v1/users/nobody").status_code == 404
    bad_email = svc.integrator("PUT", "/v1/users/bad-1", json={"email": "not-an-email"})
    assert bad_email.status_code == 400 and "email" in bad_email.text
    extra = svc.integrator("PUT", "/v1/users/bad-1", json={"email": "a@b.co", "role": "admin"})
    assert extra.status_code == 400
    bad_id = svc.integrator("PUT", "/v1/users/bad%20id", json={})
    assert bad_id.status_code == 400
    assert snapshot(svc) == before
