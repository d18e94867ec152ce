"""Key rotation: re-encrypt every stored cookie and proxy password under the newest key.

Resumable (it only touches rows not yet under the newest key) and safe while the
service runs (each row is rewritten only if its ciphertext is still the one read,
so a cookie that a sync just replaced is left alone: it is already current).
"""
from __future__ import annotations

import os

import msgspec
import sqlalchemy as sa

from cookiesync.db.engine import make_engine
from cookiesync.db.schema import links, users
from cookiesync.security import KeyRing, link_aad, new_key_entry, proxy_aad
from cookiesync.settings import Settings


def add_local_key(settings: Settings) -> Settings:
    path = os.path.join(settings.data_dir, "secrets.json")
    stored = msgspec.json.decode(open(path, "rb").read())
    stored["encryption_keys"] = new_key_entry() + "," + stored["encryption_keys"]
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(msgspec.json.format(msgspec.json.encode(stored)))
    return msgspec.structs.replace(settings, encryption_keys=stored["encryption_keys"])


async def rotate(settings: Settings, *, new_key: bool = False, batch: int = 500, say=print) -> int:
    if new_key:
        if settings.mode != "local" or os.environ.get("COOKIESYNC_ENCRYPTION_KEYS"):
            raise SystemExit("--new-key only manages the local key file; in production put the new key first "
                             "in COOKIESYNC_ENCRYPTION_KEYS, restart, then run `cookiesync keys rotate`")
        settings = add_local_key(settings)
        say("added a new key to the local key file; restart running services so they encrypt with it")
    ring = KeyRing(settings.encryption_keys)
    engine = make_engine(settings.database)
    done = 0
    try:
        async with engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(links).where(
                links.c.cookie_ciphertext.is_not(None), links.c.cookie_key_id != ring.current))).scalar_one()
        say(f"{total} cookie(s) to re-encrypt under key {ring.current}")
        last_id = 0
        while True:
            async with engine.begin() as conn:
                rows = (await conn.execute(sa.select(
                    links.c.id, links.c.user_id, links.c.plain_id, links.c.cookie_key_id, links.c.cookie_ciphertext
                ).where(links.c.id > last_id, links.c.cookie_ciphertext.is_not(None),
                        links.c.cookie_key_id != ring.current).order_by(links.c.id).limit(batch))).all()
                if not rows:
                    break
                for r in rows:
                    aad = link_aad(r.user_id, r.plain_id)
                    plain = ring.decrypt(r.cookie_key_id, r.cookie_ciphertext, aad)
                    kid, blob = ring.encrypt(plain, aad)
                    res = await conn.execute(links.update().where(
                        links.c.id == r.id, links.c.cookie_ciphertext == r.cookie_ciphertext
                    ).values(cookie_key_id=kid, cookie_ciphertext=blob))
                    done += res.rowcount
                last_id = rows[-1].id
            say(f"  re-encrypted {done}/{total}")
        done += await _rotate_proxy_passwords(engine, ring, batch, say)
        say(f"done: every stored cookie and proxy password is under key {ring.current}; older keys can be removed")
    finally:
        await engine.dispose()
    return done


async def _rotate_proxy_passwords(engine, ring: KeyRing, batch: int, say) -> int:
    """The users' proxy passwords, as the cookies above: resumable, and a row rewritten only while
    its ciphertext is still the one read (an integrator's PUT meanwhile is already current)."""
    done, last_id = 0, ""
    pending = sa.and_(users.c.proxy_password_ciphertext.is_not(None), users.c.proxy_key_id != ring.current)
    while True:
        async with engine.begin() as conn:
            rows = (await conn.execute(sa.select(
                users.c.user_id, users.c.proxy_key_id, users.c.proxy_password_ciphertext
            ).where(users.c.user_id > last_id, pending).order_by(users.c.user_id).limit(batch))).all()
            if not rows:
                break
            for r in rows:
                aad = proxy_aad(r.user_id)
                kid, blob = ring.encrypt(ring.decrypt(r.proxy_key_id, r.proxy_password_ciphertext, aad), aad)
                res = await conn.execute(users.update().where(
                    users.c.user_id == r.user_id, users.c.proxy_password_ciphertext == r.proxy_password_ciphertext
                ).values(proxy_key_id=kid, proxy_password_ciphertext=blob))
                done += res.rowcount
            last_id = rows[-1].user_id
    if done:
        say(f"  re-encrypted {done} proxy password(s)")
    return done
