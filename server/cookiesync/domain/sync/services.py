"""Pairing and cookie sync.

The hot path is an unchanged cookie from a known device: it is answered from
memory (device by token hash, link by member, cookie fingerprint) and only
its "last seen" times are written, batched by the `Toucher`. Anything that
changes what we know (new member, new cookie) goes to the database at once,
through the reconnect policy, before the answer.
"""
from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from cookiesync.db.engine import reader
from cookiesync.db.schema import devices, events, links, pairing_codes, utcnow
from cookiesync.domain.reconnect.services import add_event
from cookiesync.domain.sync.schemas import SyncIn, SyncOut
from cookiesync.domain.sync.writer import NewCookie, answer
from cookiesync.runtime import BackgroundLoop
from cookiesync.security import cookie_fingerprint, hash_token, new_token, normalize_pairing_code, same_fingerprint

log = logging.getLogger("cookiesync.sync")


class PairingError(Exception):
    pass


@dataclass(frozen=True)
class Device:
    id: str
    user_id: str


@dataclass
class CachedLink:
    link_id: int
    fingerprint: str | None
    state: str
    account_id: str | None


class TTLCache:
    """Tiny dict with per-entry expiry: short enough that a revocation made on
    another instance takes effect within seconds."""

    def __init__(self, ttl_s: float, max_items: int = 200_000) -> None:
        self.ttl = ttl_s
        self.max_items = max_items
        self.data: dict = {}

    def get(self, key):
        item = self.data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires < time.monotonic():
            self.data.pop(key, None)
            return None
        return value

    def put(self, key, value) -> None:
        if len(self.data) >= self.max_items:
            self.data.clear()
        # spread expiries, so entries cached together are not all re-read in the same instant
        self.data[key] = (value, time.monotonic() + self.ttl * random.uniform(0.5, 1.0))

    def drop(self, key) -> None:
        self.data.pop(key, None)


class Toucher(BackgroundLoop):
    """Group-commits "last seen" times: at most one transaction per `flush_s` for
    everything touched meanwhile (a device touched many times is written once).
    Losing a second of these on a crash is harmless."""

    def __init__(self, engine, repeat_window_s: float = 3600.0, flush_s: float = 1.0) -> None:
        self.engine = engine
        self.flush_s = flush_s
        self.repeat_window = timedelta(seconds=repeat_window_s)
        # link_id -> [user_id, repeats, first repeat at]: written as one history row per window
        self.repeats: dict[int, list] = {}
        self.link_touches: dict[int, tuple[datetime, str | None]] = {}
        self.device_touches: dict[str, tuple[datetime, str | None, str]] = {}
        self.wake = asyncio.Event()

    def touch(self, link_id: int, device_id: str, at: datetime, ip: str | None, version: str,
              user_id: str | None = None) -> None:
        self.link_touches[link_id] = (at, ip)
        if user_id is not None:
            entry = self.repeats.get(link_id)
            if entry is None:  # not setdefault: its default list would be built on every sync
                entry = self.repeats[link_id] = [user_id, 0, at]
            entry[1] += 1
        self.device_touches[device_id] = (at, ip, version)
        self.wake.set()

    async def stop(self) -> None:
        await self.cancel_loop()
        await self.flush(all_repeats=True)

    async def _loop(self) -> None:
        while True:
            await self.wake.wait()
            await asyncio.sleep(self.flush_s)  # gather the touches of the next flush_s into one write
            self.wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("flushing last-seen times failed")
                await asyncio.sleep(1)

    def forget_user(self, user_id: str) -> None:
        for link_id, entry in list(self.repeats.items()):
            if entry[0] == user_id:
                del self.repeats[link_id]

    def _due_repeats(self, all_repeats: bool) -> list[dict]:
        now = utcnow()
        rows = []
        for link_id, (user_id, count, since) in list(self.repeats.items()):
            if all_repeats or now - since >= self.repeat_window:
                del self.repeats[link_id]
                rows.append({"at": now, "user_id": user_id, "link_id": link_id, "kind": "cookie_repeated",
                             "actor": None, "data": {"count": count, "since": since.isoformat()}})
        return rows

    async def flush(self, all_repeats: bool = False) -> None:
        link_items, self.link_touches = self.link_touches, {}
        device_items, self.device_touches = self.device_touches, {}
        repeat_rows = self._due_repeats(all_repeats)
        if not link_items and not device_items and not repeat_rows:
            return
        async with self.engine.begin() as conn:
            if repeat_rows:
                await conn.execute(events.insert(), repeat_rows)
            if link_items:
                await conn.execute(
                    links.update().where(links.c.id == sa.bindparam("b_id"), sa.or_(
                        links.c.date_last_cookie.is_(None), links.c.date_last_cookie < sa.bindparam("b_at")))
                    .values(date_last_cookie=sa.bindparam("b_at"), client_ip=sa.bindparam("b_ip")),
                    # in id order, as every batch that updates several links locks them (no deadlock)
                    [{"b_id": k, "b_at": at, "b_ip": ip} for k, (at, ip) in sorted(link_items.items())],
                )
            if device_items:
                await conn.execute(
                    devices.update().where(devices.c.id == sa.bindparam("b_id"))
                    .values(last_seen_at=sa.bindparam("b_at"), last_ip=sa.bindparam("b_ip"),
                            extension_version=sa.bindparam("b_v")),
                    [{"b_id": k, "b_at": at, "b_ip": ip, "b_v": v}
                     for k, (at, ip, v) in sorted(device_items.items())],
                )


def _token_cache(rt) -> TTLCache:
    # Known devices stay cached long: the RevocationWatcher evicts revoked and erased ones
    # within token_cache_ttl_s on every instance. Unknown tokens are remembered only briefly.
    return rt.cache("devices", lambda: TTLCache(DEVICE_CACHE_TTL_S))


# Longer than the extension's sync interval (900 s), with room for its jitter, so a device
# syncing on schedule finds itself cached (its sync then reads only its link).
DEVICE_CACHE_TTL_S = 7200.0


class RevocationWatcher(BackgroundLoop):
    """Polls the history for revocations and erasures made by any instance, and evicts the
    affected devices from this instance's cache: one cheap indexed query every few seconds
    instead of a database read per sync."""

    def __init__(self, rt) -> None:
        self.rt = rt
        self.last_event_id: int | None = None

    async def stop(self) -> None:
        await self.cancel_loop()

    async def _loop(self) -> None:
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("revocation poll failed; clearing the device cache to stay safe")
                _token_cache(self.rt).data.clear()
            await asyncio.sleep(max(0.2, self.rt.settings.token_cache_ttl_s / 2))

    async def poll(self) -> None:
        async with reader(self.rt.engine) as conn:
            if self.last_event_id is None:
                self.last_event_id = (await conn.execute(sa.select(sa.func.max(events.c.id)))).scalar() or 0
                return
            rows = (await conn.execute(
                sa.select(events.c.id, events.c.kind, events.c.data)
                .where(events.c.kind.in_(("device_revoked", "user_erased")), events.c.id > self.last_event_id)
                .order_by(events.c.id)
            )).all()
        if not rows:
            return
        cache = _token_cache(self.rt)
        revoked = {r.data.get("device_id") for r in rows if r.kind == "device_revoked"}
        if any(r.kind == "user_erased" for r in rows):
            cache.data.clear()  # erasures name nobody in the history: forget every device
        else:
            for key, (value, _exp) in list(cache.data.items()):
                if value and value.id in revoked:
                    cache.drop(key)
        self.last_event_id = rows[-1].id


def _link_cache(rt) -> TTLCache:
    return rt.cache("links", lambda: TTLCache(rt.settings.link_cache_ttl_s))


def forget_link(rt, user_id: str, plain_id: str) -> None:
    _link_cache(rt).drop((user_id, plain_id))


def forget_user(rt, user_id: str) -> None:
    for cache in (_link_cache(rt), _token_cache(rt)):
        for key, (value, _exp) in list(cache.data.items()):
            if (isinstance(key, tuple) and key[0] == user_id) or getattr(value, "user_id", None) == user_id:
                cache.drop(key)


DEVICE_BY_TOKEN = sa.select(devices.c.id, devices.c.user_id).where(
    devices.c.token_hash == sa.bindparam("token_hash"), devices.c.revoked_at.is_(None))
LINK_BY_MEMBER = sa.select(links.c.id, links.c.cookie_fingerprint, links.c.state, links.c.unipile_account_id).where(
    links.c.user_id == sa.bindparam("user_id"), links.c.plain_id == sa.bindparam("plain_id"))


async def device_for_token(rt, token: str) -> Device | None:
    token_hash = hash_token(token)
    cache = _token_cache(rt)
    cached = cache.get(token_hash)
    if cached is not None:
        return cached
    if _negative_cache(rt).get(token_hash):
        return None
    row = await rt.reads.first(DEVICE_BY_TOKEN, token_hash=token_hash)
    device = Device(*row) if row else None
    if device is None:
        # a brief negative entry: a burst from a revoked extension costs one read, not one per request
        _negative_cache(rt).put(token_hash, True)
    else:
        cache.put(token_hash, device)
    return device


def _negative_cache(rt) -> TTLCache:
    return rt.cache("unknown_tokens", lambda: TTLCache(rt.settings.token_cache_ttl_s))


async def pair(rt, code: str, extension_version: str, ip: str | None) -> tuple[str, str]:
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


async def revoke_device(rt, device: Device, actor: str) -> None:
    now = utcnow()
    async with rt.engine.begin() as conn:
        await conn.execute(devices.update().where(devices.c.id == device.id, devices.c.revoked_at.is_(None))
                           .values(revoked_at=now))
        await add_event(conn, user_id=device.user_id, link_id=None, kind="device_revoked", actor=actor, at=now,
                        data={"device_id": device.id})
    for key, (value, _exp) in list(_token_cache(rt).data.items()):
        if value and value.id == device.id:
            _token_cache(rt).drop(key)


def sync_limiter(rt) -> RateLimiter:
    return rt.cache("sync_limiter", lambda: RateLimiter(limit=120, window_s=60))


async def sync(rt, device: Device, body: SyncIn, ip: str | None) -> SyncOut:
    now = utcnow()
    fingerprint = cookie_fingerprint(rt.settings.signing_secret, body.li_at, body.li_a, body.user_agent)
    key = (device.user_id, body.plain_id)
    cache = _link_cache(rt)
    cached: CachedLink | None = cache.get(key)
    if cached is not None and same_fingerprint(cached.fingerprint, fingerprint):
        rt.toucher.touch(cached.link_id, device.id, now, ip, body.extension_version, device.user_id)
        rt.metrics.syncs_unchanged.inc()
        return answer(rt, cached.state, cached.account_id)

    if cached is None:
        # most cache misses are unchanged cookies: a read-only look first, no write lock for them
        row = await rt.reads.first(LINK_BY_MEMBER, user_id=device.user_id, plain_id=body.plain_id)
        if row is not None:
            link_id, stored, state, account_id = row
            if same_fingerprint(stored, fingerprint):
                rt.toucher.touch(link_id, device.id, now, ip, body.extension_version, device.user_id)
                cache.put(key, CachedLink(link_id, fingerprint, state, account_id))
                rt.metrics.syncs_unchanged.inc()
                return answer(rt, state, account_id)

    out, attempt_now, link_id, changed = await rt.cookie_writer.submit(NewCookie(device, body, ip, fingerprint, now))
    if not changed:
        rt.toucher.touch(link_id, device.id, now, ip, body.extension_version, device.user_id)
    cache.put(key, CachedLink(link_id, fingerprint, out.link_status, out.unipile_account_id))
    (rt.metrics.syncs_changed if changed else rt.metrics.syncs_unchanged).inc()
    if attempt_now:
        rt.runner.kick()
    return out


class RateLimiter:
    """Fixed-window counter per key, in memory (per instance)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window = window_s
        self.hits: dict[str, tuple[float, int]] = {}

    def check(self, key: str, cost: int = 1) -> float | None:
        """None if allowed; else seconds until the window resets."""
        now = time.monotonic()
        start, count = self.hits.get(key, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        if count + max(cost, 1) > self.limit:
            return max(1.0, self.window - (now - start))
        if len(self.hits) > 100_000:
            self.hits.clear()
        self.hits[key] = (start, count + cost)
        return None


def pairing_code_ttl(rt) -> timedelta:
    return timedelta(seconds=rt.settings.pairing_code_ttl_s)
