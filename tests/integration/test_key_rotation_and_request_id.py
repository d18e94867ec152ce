"""Security settings at work in a running service: key rotation re-encrypts every stored
cookie so the old keys can go, and each response carries a request id."""
from __future__ import annotations

import asyncio

import sqlalchemy as sa

from cookiesync.db.schema import links
from cookiesync.security import KeyRing, decrypt_cookies


def test_key_rotation_reencrypts_everything_and_old_keys_can_go(service) -> None:
    from cookiesync.keys import rotate
    from cookiesync.security import new_key_entry

    service.new_user("k-1")
    token = service.pair("k-1")
    for i in range(5):
        assert service.sync(token, li_at=f"AQEDAR-rotate-cookie-{i:03d}", plain_id=str(500 + i)).status_code == 200
    old = service.settings.encryption_keys
    new_entry = new_key_entry("k2")
    rotated = service.settings.__class__(**{**{f: getattr(service.settings, f) for f in service.settings.__struct_fields__},
                                           "encryption_keys": f"{new_entry},{old}"})
    done = asyncio.run(rotate(rotated, batch=2, say=lambda m: None))
    assert done == 5
    assert asyncio.run(rotate(rotated, say=lambda m: None)) == 0  # resumable: nothing left

    only_new = KeyRing(new_entry)

    async def check(conn):
        rows = (await conn.execute(sa.select(links))).all()
        return [decrypt_cookies(only_new, r.cookie_key_id, r.cookie_ciphertext, r.user_id, r.plain_id).li_at
                for r in rows]

    assert sorted(service.db(check)) == [f"AQEDAR-rotate-cookie-{i:03d}" for i in range(5)]

def test_request_id_is_echoed(service) -> None:
    r = service.http.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    made = service.http.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
    assert made != "bad id with spaces" and len(made) == 16
