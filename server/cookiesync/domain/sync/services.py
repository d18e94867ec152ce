"""Pairing, admission and cookie sync.

The hot path is an unchanged cookie from a known device: it is answered from
memory (device by token hash, link by member, cookie fingerprint) and only
its "last seen" times are written, batched by the `Toucher` (`touches`). A cookie
the link did not have goes to the cookie writer (`Runtime.cookie_writer`, see
`writer`), which writes it, through the reconnect policy, before the answer.
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Callable

import sqlalchemy as sa
from litestar.exceptions import NotAuthorizedException

from cookiesync.db.schema import devices, links, pairing_codes, utcnow
from cookiesync.domain.reconnect.services import add_event
from cookiesync.domain.throttle import policy as throttle_policy
from cookiesync.domain.sync.models import CachedLink, Device, NewCookie, answer
from cookiesync.domain.sync.schemas import SyncIn, SyncOut
from cookiesync.http import MISSING_BEARER, TooManyRequests, client_ip_from
from cookiesync.security import cookie_fingerprint, hash_token, new_token, normalize_pairing_code, same_fingerprint

if TYPE_CHECKING:
    from cookiesync.runtime import Runtime

UNKNOWN_DEVICE = "unknown or revoked device token: pair the extension again"


class PairingError(Exception):
    pass


# Failed pairings per client address: a code is 10 characters of a 32-letter alphabet (2^50), so
# ten guesses an address in ten minutes leave guessing hopeless. A success gives its slot back.
PAIRING_PER_ADDRESS = throttle_policy.Window(limit=10, window=timedelta(minutes=10))


DEVICE_BY_TOKEN = sa.select(devices.c.id, devices.c.user_id).where(
    devices.c.token_hash == sa.bindparam("token_hash"), devices.c.revoked_at.is_(None))
LINK_BY_MEMBER = sa.select(links.c.id, links.c.cookie_fingerprint, links.c.state, links.c.unipile_account_id).where(
    links.c.user_id == sa.bindparam("user_id"), links.c.plain_id == sa.bindparam("plain_id"))


async def admit(rt: Runtime, token: str | None, peer: str | None,
                forwarded_for: Callable[[], str]) -> tuple[Device, str | None]:
    """A sync's admission, one for the fast lane and the handler: a known device's token, under
    its rate limit, and the client's address (`forwarded_for()` gives X-Forwarded-For, read only
    when the peer is a trusted proxy). Raises the HTTP error the handler answers with."""
    if token is None:
        raise NotAuthorizedException(detail=MISSING_BEARER)
    device = await device_for_token(rt, token)
    if device is None:
        raise NotAuthorizedException(detail=UNKNOWN_DEVICE)
    wait = rt.sync_limiter.check(device.id)
    if wait is not None:
        raise TooManyRequests(wait)
    return device, client_ip_from(peer, forwarded_for, rt.trusted_proxies)


async def device_for_token(rt: Runtime, token: str) -> Device | None:
    token_hash = hash_token(token)
    cached = rt.device_cache.get(token_hash)
    if cached is not None:
        return cached
    if rt.unknown_tokens.get(token_hash):
        return None
    row = await rt.reads.first(DEVICE_BY_TOKEN, token_hash=token_hash)
    device = Device(*row) if row else None
    if device is None:
        # a brief negative entry: a burst from a revoked extension costs one read, not one per request
        rt.unknown_tokens.put(token_hash, True)
    else:
        rt.device_cache.put(token_hash, device)
    return device


async def sync(rt: Runtime, device: Device, body: SyncIn, ip: str | None) -> SyncOut:
    now = utcnow()
    fingerprint = cookie_fingerprint(rt.settings.signing_secret, body.li_at, body.li_a, body.user_agent)
    key = (device.user_id, body.plain_id)
    cache = rt.link_cache
    cached = cache.get(key)
    if cached is not None and same_fingerprint(cached.fingerprint, fingerprint):
        rt.toucher.touch(cached.link_id, device.id, now, ip, body.extension_version, device.user_id)
        rt.metrics.syncs_unchanged.inc()
        return answer(rt.settings.sync_interval_s, cached.state, cached.account_id)

    if cached is None:
        # most cache misses are unchanged cookies: a read-only look first, no write lock for them
        row = await rt.reads.first(LINK_BY_MEMBER, user_id=device.user_id, plain_id=body.plain_id)
        if row is not None:
            link_id, stored, state, account_id = row
            if same_fingerprint(stored, fingerprint):
                rt.toucher.touch(link_id, device.id, now, ip, body.extension_version, device.user_id)
                cache.put(key, CachedLink(link_id, fingerprint, state, account_id))
                rt.metrics.syncs_unchanged.inc()
                return answer(rt.settings.sync_interval_s, state, account_id)

    out, attempt_now, link_id, changed = await rt.cookie_writer.submit(NewCookie(device, body, ip, fingerprint, now))
    if not changed:
        rt.toucher.touch(link_id, device.id, now, ip, body.extension_version, device.user_id)
    cache.put(key, CachedLink(link_id, fingerprint, out.link_status, out.unipile_account_id))
    (rt.metrics.syncs_changed if changed else rt.metrics.syncs_unchanged).inc()
    if attempt_now:
        rt.runner.kick()
    return out


async def pair(rt: Runtime, code: str, extension_version: str, ip: str | None) -> tuple[str, str]:
    """Trade a pairing code for a device token. The code dies on first use."""
    code_hash = hash_token(normalize_pairing_code(code))
    now = utcnow()
    token = new_token("dev")
    device_id = secrets.token_hex(8)
    async with rt.engine.begin() as conn:
        row = (await conn.execute(sa.select(pairing_codes).where(pairing_codes.c.code_hash == code_hash))).first()
        if row is None:
            raise PairingError("unknown pairing code")
        if row.used_at is not None:
            raise PairingError("this pairing code was already used; ask for a new one")
        if row.expires_at < now:
            raise PairingError("this pairing code has expired; ask for a new one")
        used = await conn.execute(pairing_codes.update()
                                  .where(pairing_codes.c.id == row.id, pairing_codes.c.used_at.is_(None))
                                  .values(used_at=now))
        if used.rowcount != 1:
            raise PairingError("this pairing code was already used; ask for a new one")
        await conn.execute(devices.insert().values(
            id=device_id, user_id=row.user_id, token_hash=hash_token(token), extension_version=extension_version,
            created_at=now, last_seen_at=now, last_ip=ip))
        await add_event(conn, user_id=row.user_id, link_id=None, kind="device_paired", at=now,
                        data={"device_id": device_id, "extension_version": extension_version, "ip": ip})
    return token, row.user_id


async def revoke_device(rt: Runtime, device: Device, actor: str) -> None:
    now = utcnow()
    async with rt.engine.begin() as conn:
        await conn.execute(devices.update().where(devices.c.id == device.id, devices.c.revoked_at.is_(None))
                           .values(revoked_at=now))
        await add_event(conn, user_id=device.user_id, link_id=None, kind="device_revoked", actor=actor, at=now,
                        data={"device_id": device.id})
    rt.device_cache.drop_where(lambda _key, cached: cached.id == device.id)


def forget_link(rt: Runtime, user_id: str, plain_id: str) -> None:
    rt.link_cache.drop((user_id, plain_id))


def forget_user(rt: Runtime, user_id: str) -> None:
    """This instance's memory of the user: their links (keyed by user) and devices (naming them)."""
    rt.link_cache.drop_where(lambda key, _link: key[0] == user_id)
    rt.device_cache.drop_where(lambda _key, device: device.user_id == user_id)
