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
from sqlalchemy.exc import IntegrityError

from cookiesync.db.batch import GroupCommit
from cookiesync.db.engine import reader
from cookiesync.db.schema import devices, events, links, pairing_codes, utcnow
from cookiesync.domain.reconnect import policy
from cookiesync.domain.reconnect.services import add_event, apply_event, event_payload, load_link, needs_apply, \
    to_policy
from cookiesync.domain.sync.schemas import SyncIn, SyncOut
from cookiesync.runtime import BackgroundLoop
from cookiesync.security import CookieBundle, cookie_fingerprint, encrypt_cookies, hash_token, new_token, \
    normalize_pairing_code, same_fingerprint

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
                    [{"b_id": k, "b_at": at, "b_ip": ip} for k, (at, ip) in link_items.items()],
                )
            if device_items:
                await conn.execute(
                    devices.update().where(devices.c.id == sa.bindparam("b_id"))
                    .values(last_seen_at=sa.bindparam("b_at"), last_ip=sa.bindparam("b_ip"),
                            extension_version=sa.bindparam("b_v")),
                    [{"b_id": k, "b_at": at, "b_ip": ip, "b_v": v} for k, (at, ip, v) in device_items.items()],
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


async def _count_auto_links(conn, user_id: str) -> int:
    return (await conn.execute(
        sa.select(sa.func.count()).select_from(links)
        .where(links.c.user_id == user_id, links.c.auto_connect.is_(True))
    )).scalar_one()


UNSETTLED = frozenset({"pending", "reconnecting"})


def answer(rt, state: str, account_id: str | None) -> SyncOut:
    """Come back soon while a connect or reconnect is under way, so the extension (and its
    user) learns the outcome, and a fresh cookie reaches an incident quickly."""
    interval = rt.settings.sync_interval_s
    return SyncOut(state, account_id, min(60, interval) if state in UNSETTLED else interval)


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

    out, decision, link_id, changed = await rt.cookie_writer.submit(_Job(device, body, ip, fingerprint, now))
    if not changed:
        rt.toucher.touch(link_id, device.id, now, ip, body.extension_version, device.user_id)
    cache.put(key, CachedLink(link_id, fingerprint, out.link_status, out.unipile_account_id))
    (rt.metrics.syncs_changed if changed else rt.metrics.syncs_unchanged).inc()
    if decision is not None and decision.attempt_now:
        rt.runner.kick()
    return out


@dataclass
class _Job:
    device: Device
    body: SyncIn
    ip: str | None
    fingerprint: str
    now: datetime

    @property
    def key(self) -> tuple[str, str]:
        return self.device.user_id, self.body.plain_id

    def event_data(self) -> dict:
        body = self.body
        return {"fingerprint": self.fingerprint[:12], "user_agent": body.user_agent, "ip": self.ip,
                "li_a_present": body.li_a is not None, "extension_version": body.extension_version,
                "device_id": self.device.id}

    def cookie_values(self, rt) -> dict:
        body = self.body
        kid, blob = encrypt_cookies(rt.keyring, CookieBundle(body.li_at, body.li_a, body.user_agent),
                                    self.device.user_id, body.plain_id)
        return dict(cookie_ciphertext=blob, cookie_key_id=kid, cookie_fingerprint=self.fingerprint,
                    user_agent=body.user_agent, client_ip=self.ip, date_last_cookie=self.now, updated_at=self.now)


Written = tuple[SyncOut, "policy.Decision | None", int, bool]  # answer, decision, link id, cookie changed


def cookie_writer(rt) -> GroupCommit:
    """Group commit for new cookies: the syncs that arrive while one transaction runs
    are written together by the next (one read of their links, one bulk update, one
    bulk history insert). A link whose state the cookie changes (a first sync, an
    incident) goes through `apply_event` inside the same transaction."""
    return GroupCommit("new cookies", lambda jobs: _write_together(rt, jobs), lambda job: _write_alone(rt, job))


async def _write_together(rt, jobs: list[_Job]) -> list[Written]:
    cfg = rt.policy_config
    results: list[Written] = []
    async with rt.engine.begin() as conn:
        rows = {(r.user_id, r.plain_id): r for r in (await conn.execute(
            sa.select(*_POLICY_COLUMNS).where(links.c.user_id.in_({j.device.user_id for j in jobs}),
                                   links.c.plain_id.in_({j.body.plain_id for j in jobs}))
        )).all()}
        stored: dict[tuple[str, str], str] = {}  # fingerprints written earlier in this batch
        updates, history = [], []
        for job in jobs:
            row = rows.get(job.key)
            fingerprint = stored.get(job.key, row.cookie_fingerprint if row is not None else None)
            if row is not None and same_fingerprint(fingerprint, job.fingerprint):
                results.append((answer(rt, row.state, row.unipile_account_id), None,
                                row.id, False))
                continue
            decision = None if row is None else policy.decide(to_policy(row), policy.CookieReceived(fresh=True),
                                                              job.now, cfg)
            if decision is None or needs_apply(decision):
                if updates:  # keep this link's writes in order with the bulk ones before it
                    await _flush(conn, updates, history)
                results.append(await _write_in(rt, conn, job))
                rows[job.key] = await load_link(conn, results[-1][2])
                stored.pop(job.key, None)
                continue
            updates.append(dict({f"b_{k}": v for k, v in job.cookie_values(rt).items()}, b_id=row.id))
            history.append({"at": job.now, "user_id": row.user_id, "link_id": row.id, "kind": "cookie_received",
                            "actor": None, "data": event_payload(row, decision, job.event_data(), row.incident_id)})
            stored[job.key] = job.fingerprint
            state = decision.link.state.value
            results.append((answer(rt, state, row.unipile_account_id), decision, row.id, True))
        await _flush(conn, updates, history)
    return results


# what the policy and the answer need: no cookie blob, few timestamps to parse
_POLICY_COLUMNS = (links.c.id, links.c.user_id, links.c.plain_id, links.c.state, links.c.unipile_account_id,
                   links.c.cookie_fingerprint, links.c.cookie_key_id, links.c.auto_connect,
                   links.c.incident_started_at, links.c.next_slot, links.c.next_attempt_at, links.c.incident_id)
_COOKIE_COLUMNS = ("cookie_ciphertext", "cookie_key_id", "cookie_fingerprint", "user_agent", "client_ip",
                   "date_last_cookie", "updated_at")
_BULK_COOKIE_UPDATE = links.update().where(links.c.id == sa.bindparam("b_id")).values(
    {c: sa.bindparam(f"b_{c}") for c in _COOKIE_COLUMNS})


async def _flush(conn, updates: list[dict], history: list[dict]) -> None:
    if updates:
        await conn.execute(_BULK_COOKIE_UPDATE, updates)
    if history:
        await conn.execute(events.insert(), history)
    updates.clear()
    history.clear()


async def _write_alone(rt, job: _Job) -> Written:
    for _try in range(3):
        try:
            async with rt.engine.begin() as conn:
                return await _write_in(rt, conn, job)
        except IntegrityError:
            # Two first syncs for one member raced; the other one created the link.
            await asyncio.sleep(0.01)
    raise RuntimeError("could not store the sync after 3 tries")


async def _write_in(rt, conn, job: _Job) -> Written:
    """One sync's writes, in the caller's transaction, through the policy."""
    s = rt.settings
    device, body, now = job.device, job.body, job.now
    row = (await conn.execute(
        sa.select(links).where(links.c.user_id == device.user_id, links.c.plain_id == body.plain_id)
    )).first()
    if row is not None and same_fingerprint(row.cookie_fingerprint, job.fingerprint):
        return answer(rt, row.state, row.unipile_account_id), None, row.id, False
    if row is None:
        auto = await _count_auto_links(conn, device.user_id) < s.max_accounts_per_user
        result = await conn.execute(links.insert().values(
            user_id=device.user_id, plain_id=body.plain_id, state=policy.State.PENDING.value,
            auto_connect=auto,
            hold_reason=None if auto else "another LinkedIn account is already connected for this user",
            next_slot=0, attempts_in_incident=0, created_at=now, updated_at=now,
        ))
        link_id = result.inserted_primary_key[0]
        await add_event(conn, user_id=device.user_id, link_id=link_id, kind="link_created", at=now,
                        data={"plain_id": body.plain_id, "auto_connect": auto, "device_id": device.id})
    else:
        link_id = row.id
    await conn.execute(links.update().where(links.c.id == link_id).values(**job.cookie_values(rt)))
    row = await load_link(conn, link_id)
    decision = await apply_event(rt, conn, row, policy.CookieReceived(fresh=True), trigger="extension",
                                 event_kind="cookie_received", data=job.event_data(), now=now)
    state = decision.link.state.value
    return answer(rt, state, row.unipile_account_id), decision, link_id, True


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
