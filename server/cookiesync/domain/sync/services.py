"""Pairing, admission and cookie sync.

The hot path is an unchanged cookie from a known device: it is answered from
memory (device by token hash, link by member, cookie fingerprint) and only
its "last seen" times are written, batched by the `Toucher` (`touches`). A cookie
the link did not have goes to the cookie writer (`Runtime.cookie_writer`, see
`writer`), which writes it, through the reconnect policy, before the answer.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable

import msgspec
import sqlalchemy as sa
from litestar.exceptions import NotAuthorizedException

from cookiesync.db.schema import devices, links, pairing_codes, utcnow
from cookiesync.domain.reconnect.policy import State
from cookiesync.domain.reconnect.services import add_event, reconnect_token_for
from cookiesync.domain.throttle import policy as throttle_policy
from cookiesync.domain.sync.models import CachedLink, Device, DeviceGone, NewCookie, answer
from cookiesync.domain.sync.schemas import SignedOutIn, SignedOutOut, SyncIn, SyncOut
from cookiesync.http import MISSING_BEARER, TooManyRequests, client_ip_from
from cookiesync.security import DecryptError, cookie_fingerprint, decrypt_cookies, hash_token, new_token, normalize_pairing_code, same_fingerprint

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
LINK_BY_MEMBER = sa.select(links.c.id, links.c.cookie_fingerprint, links.c.state, links.c.unipile_account_id,
                           links.c.incident_id, links.c.hold_reason).where(
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
        return answer_for(rt, cached, now)

    if cached is None:
        # most cache misses are unchanged cookies: a read-only look first, no write lock for them
        row = await rt.reads.first(LINK_BY_MEMBER, user_id=device.user_id, plain_id=body.plain_id)
        if row is not None:
            link_id, stored, state, account_id, incident_id, hold_reason = row
            if same_fingerprint(stored, fingerprint):
                rt.toucher.touch(link_id, device.id, now, ip, body.extension_version, device.user_id)
                cached = CachedLink(link_id, fingerprint, state, account_id, incident_id, hold_reason)
                cache.put(key, cached)
                rt.metrics.syncs_unchanged.inc()
                return answer_for(rt, cached, now)

    try:
        out, attempt_now, link_id, changed, incident_id = await rt.cookie_writer.submit(
            NewCookie(device, body, ip, fingerprint, now))
    except DeviceGone:
        rt.device_cache.drop_where(lambda _key, cached: cached.id == device.id)
        raise NotAuthorizedException(detail=UNKNOWN_DEVICE) from None
    if not changed:
        rt.toucher.touch(link_id, device.id, now, ip, body.extension_version, device.user_id)
    cached = CachedLink(link_id, fingerprint, out.link_status, out.unipile_account_id, incident_id, out.hold_reason)
    cache.put(key, cached)
    (rt.metrics.syncs_changed if changed else rt.metrics.syncs_unchanged).inc()
    if attempt_now:
        rt.runner.kick()
    return with_attention(rt, out, cached, now)


# The states in which only the user can reconnect the link: the answer carries the reconnect link.
NEEDS_THE_USER = frozenset({State.NEEDS_USER.value, State.CHECKPOINT.value})


def answer_for(rt: Runtime, link: CachedLink, now: datetime) -> SyncOut:
    """The answer to an unchanged cookie, from what is known of its link."""
    return with_attention(rt, answer(rt.settings.sync_interval_s, link.state, link.account_id, link.hold_reason),
                          link, now)


def with_attention(rt: Runtime, out: SyncOut, link: CachedLink, now: datetime) -> SyncOut:
    """The answer with the reconnect link when the link needs the user (and has a Unipile account
    to reconnect: the hosted-auth page needs one). Signed here, not stored, not written: the token
    of `reconnect.services.reconnect_token_for` is the same for every heartbeat of its window, so a
    heartbeat costs an HMAC and no database write."""
    if out.link_status not in NEEDS_THE_USER or link.account_id is None:
        return out
    token = reconnect_token_for(rt.reconnect_signer, rt.settings.reconnect_link_ttl_s, link.link_id,
                                link.incident_id, now)
    return msgspec.structs.replace(out, reconnect_url=f"{rt.settings.base_url}/reconnect/{token}")


SIGNED_OUT_NOTE = "signed out of LinkedIn in this browser"
# The link a sign-out names, with its newest cookie (to compare the hash the browser sent).
LINK_FOR_SIGN_OUT = sa.select(links.c.id, links.c.state, links.c.cookie_key_id, links.c.cookie_ciphertext,
                              links.c.cookie_fingerprint, links.c.cookie_signed_out_at).where(
    links.c.user_id == sa.bindparam("user_id"), links.c.plain_id == sa.bindparam("plain_id"))
# Marked only while the cookie compared is still the newest: a cookie written meanwhile wins.
MARK_SIGNED_OUT = links.update().where(
    links.c.id == sa.bindparam("link_id"), links.c.cookie_fingerprint == sa.bindparam("fingerprint"),
    links.c.cookie_signed_out_at.is_(None)).values(cookie_signed_out_at=sa.bindparam("at"))


class NoSuchMember(Exception):
    """The device's user has no link for the member a sign-out names."""


async def signed_out(rt: Runtime, device: Device, body: SignedOutIn, ip: str | None) -> SignedOutOut:
    """The browser lost li_at: when it is the link's newest cookie, the link records (once) that
    this cookie is dead, with a history row. The retry schedule is left as it is; the next cookie
    (the user signs in again) clears the mark and is tried at once, as every fresh cookie is."""
    now = utcnow()
    async with rt.engine.begin() as conn:
        row = (await conn.execute(LINK_FOR_SIGN_OUT, {"user_id": device.user_id, "plain_id": body.plain_id})).first()
        if row is None:
            raise NoSuchMember(body.plain_id)
        if row.cookie_ciphertext is None:
            return SignedOutOut(row.state, recorded=False)
        try:
            bundle = decrypt_cookies(rt.keyring, row.cookie_key_id, row.cookie_ciphertext, device.user_id,
                                     body.plain_id)
        except DecryptError:
            return SignedOutOut(row.state, recorded=False)
        newest = hashlib.sha256(bundle.li_at.encode()).hexdigest()
        if not hmac.compare_digest(newest, body.li_at_sha256):
            return SignedOutOut(row.state, recorded=False)
        if row.cookie_signed_out_at is not None:
            return SignedOutOut(row.state, recorded=True)  # told before: nothing new to write
        marked = await conn.execute(MARK_SIGNED_OUT, {"link_id": row.id, "fingerprint": row.cookie_fingerprint,
                                                      "at": now})
        if marked.rowcount != 1:
            return SignedOutOut(row.state, recorded=False)
        await add_event(conn, user_id=device.user_id, link_id=row.id, kind="signed_out", at=now,
                        data={"note": SIGNED_OUT_NOTE, "device_id": device.id, "ip": ip,
                              "extension_version": body.extension_version})
    return SignedOutOut(row.state, recorded=True)


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
