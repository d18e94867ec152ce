"""Writing new cookies: every sync whose cookie the link did not have yet.

Syncs that arrive while one transaction runs are written together by the next
(`db.batch.GroupCommit`), and each is answered only after that commit. A cookie that only
refreshes a link (the common case: a connected account's session cookie rotated) is decided
on by the policy and written in bulk on the sync path's own connection (`write_in_bulk`, on
`db.hot.HotWrites`, with the statements of `db.bulk`). A cookie that changes a link's state
(a first sync, a cookie for an incident) goes through the policy's `apply_event`, in the
server, in a transaction of its own after the bulk one (`write_alone`).

Where the bulk write runs is chosen once, at start-up (`runtime.open_runtime`): in the
cookie writer process (`writer_process.WriterProcess`), in the server (`InProcess`), or
nowhere, every cookie then going one by one. This module does not know about processes: the
bulk plan needs only what `WriterContext` names, which the server's runtime and the
child's both have.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from cookiesync.db.bulk import COOKIE_COLUMNS, BulkSQL, LinkRow
from cookiesync.db.engine import reader, to_json
from cookiesync.db.hot import HotWrites
from cookiesync.db.schema import devices, links
from cookiesync.domain.reconnect import policy
from cookiesync.domain.reconnect.services import add_event, apply_event, event_payload, load_link, needs_apply, \
    to_policy
from cookiesync.domain.sync.models import CookieResult, DeviceGone, NewCookie, answer
from cookiesync.security import KeyRing, same_fingerprint

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from cookiesync.settings import Settings

log = logging.getLogger("cookiesync.sync")


class WriterContext(Protocol):
    """What the bulk plan reads: the server's `Runtime` and the child's `ChildRuntime` both."""
    settings: Settings
    keyring: KeyRing
    writes: HotWrites
    bulk_sql: BulkSQL

    @property
    def policy_config(self) -> policy.Config: ...


class ServerContext(WriterContext, Protocol):
    """What the one-by-one path reads besides: the engine, and whatever the reconnect policy's
    `apply_event` reads of the server's `Runtime` (it is handed the same object)."""
    engine: AsyncEngine


class Bulk(Protocol):
    """A way to write a batch in bulk."""

    async def write(self, jobs: list[NewCookie]) -> list[CookieResult | None]:
        """Each job's result, or None for a cookie left to `write_alone`. Raises when nothing
        of the batch was written (or whether it was is unknown)."""
        ...


class InProcess:
    """The bulk write in this process, on its own `HotWrites` connection."""

    def __init__(self, ctx: WriterContext) -> None:
        self.ctx = ctx

    async def write(self, jobs: list[NewCookie]) -> list[CookieResult | None]:
        return await write_in_bulk(self.ctx, jobs)


class CookieWrites:
    """The server's writer of new cookies, for `GroupCommit`: a batch `together`, in bulk where
    `bulk` can (None: every cookie one by one), the rest `alone`."""

    def __init__(self, rt: ServerContext, bulk: Bulk | None) -> None:
        self.rt = rt
        self.bulk = bulk

    async def together(self, jobs: list[NewCookie]) -> list[CookieResult | Exception]:
        """One bulk transaction for the cookies that only refresh their link, then one transaction
        each, in arrival order, for those the policy must apply (and any later cookie of their link)."""
        results: list = [None] * len(jobs) if self.bulk is None else await self.bulk.write(jobs)
        for i, job in enumerate(jobs):
            if results[i] is None:
                try:
                    results[i] = await self.alone(job)
                except Exception as exc:  # this cookie's caller gets the error; its neighbours are written
                    results[i] = exc
        return results

    async def alone(self, job: NewCookie) -> CookieResult:
        return await write_alone(self.rt, job)


# --- in bulk, on the sync path's own connection -------------------------------------------------
async def write_in_bulk(ctx: WriterContext, jobs: list[NewCookie]) -> list[CookieResult | None]:
    """The bulk transaction; None for each cookie it leaves to `write_alone`."""
    sql, params = ctx.bulk_sql.links(list(dict.fromkeys(job.key for job in jobs)))
    return await ctx.writes.read_decide_write(sql, params, lambda rows: _plan(ctx, jobs, rows))


def _plan(ctx: WriterContext, jobs: list[NewCookie], rows: list):
    """The batch's answers and bulk writes, decided between its read and its writes (on SQLite,
    in the writer thread, so it only computes). None for a cookie left to `write_alone`."""
    bulk, value, cfg, interval = ctx.bulk_sql, ctx.writes.value, ctx.policy_config, ctx.settings.sync_interval_s
    links_by_key: dict[tuple[str, str], LinkRow] = {}
    for r in bulk.link_rows(rows):
        row = LinkRow(*r[:8], value.from_ts(r[8]), r[9], value.from_ts(r[10]), r[11], r[12])
        links_by_key[(row.user_id, row.plain_id)] = row
    stored: dict[tuple[str, str], str] = {}  # fingerprints written earlier in this batch
    deferred: set[tuple[str, str]] = set()   # links whose cookies go one by one from here on
    results: list[CookieResult | None] = []
    updates: list[tuple] = []
    history: list[tuple] = []
    for job in jobs:
        key = job.key
        row = links_by_key.get(key)
        if row is None or key in deferred:
            deferred.add(key)
            results.append(None)
            continue
        if same_fingerprint(stored.get(key, row.cookie_fingerprint), job.fingerprint):
            results.append(CookieResult(answer(interval, row.state, row.unipile_account_id, row.hold_reason), False,
                                        row.id, False, row.incident_id))
            continue
        decision = policy.decide(to_policy(row), policy.CookieReceived(fresh=True), job.now, cfg)
        if needs_apply(decision):
            deferred.add(key)
            results.append(None)
            continue
        at = value.ts(job.now)
        updates.append((*job.cookie_row(ctx.keyring, at), row.id))
        history.append((at, row.user_id, row.id, "cookie_received", None,
                        to_json(event_payload(row, decision, job.event_data(), row.incident_id))))
        stored[key] = job.fingerprint
        results.append(CookieResult(answer(interval, decision.link.state.value, row.unipile_account_id,
                                           row.hold_reason), decision.attempt_now, row.id, True, row.incident_id))
    return results, bulk.writes(updates, history)


# --- one at a time, through the policy's apply_event ---------------------------------------------
class _LinkGone(Exception):
    """The link read at the start of the transaction was deleted before it was written."""


DEVICE_LIVE = sa.select(devices.c.id).where(devices.c.id == sa.bindparam("device_id"), devices.c.revoked_at.is_(None))


async def write_alone(rt: ServerContext, job: NewCookie) -> CookieResult:
    for _try in range(3):
        try:
            async with rt.engine.begin() as conn:
                return await _write_in(rt, conn, job)
        except (IntegrityError, _LinkGone):
            # Two first syncs for one member raced, the other one creating the link: the next try
            # finds it. Or the user was erased (by another instance, or between this device's
            # admission from memory and now): the new link's user_id breaks its foreign key, or the
            # link went under the update. No retry helps then; the device is gone (401, not 500).
            pass
        async with reader(rt.engine) as conn:
            if (await conn.execute(DEVICE_LIVE, {"device_id": job.device.id})).first() is None:
                raise DeviceGone(job.device.id)
        await asyncio.sleep(0.01)
    raise RuntimeError("could not store the sync after 3 tries")


async def _count_auto_links(conn, user_id: str) -> int:
    return (await conn.execute(
        sa.select(sa.func.count()).select_from(links)
        .where(links.c.user_id == user_id, links.c.auto_connect.is_(True))
    )).scalar_one()


async def _write_in(rt: ServerContext, conn, job: NewCookie) -> CookieResult:
    """One sync's writes, in the caller's transaction, through the policy."""
    s = rt.settings
    device, body, now = job.device, job.body, job.now
    row = (await conn.execute(
        sa.select(links).where(links.c.user_id == device.user_id, links.c.plain_id == body.plain_id)
    )).first()
    if row is not None and same_fingerprint(row.cookie_fingerprint, job.fingerprint):
        return CookieResult(answer(s.sync_interval_s, row.state, row.unipile_account_id, row.hold_reason), False,
                            row.id, False, row.incident_id)
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
    await conn.execute(links.update().where(links.c.id == link_id).values(
        dict(zip(COOKIE_COLUMNS, job.cookie_row(rt.keyring, now)), cookie_signed_out_at=None)))
    row = await load_link(conn, link_id)
    if row is None:
        raise _LinkGone(link_id)
    decision = await apply_event(rt, conn, row, policy.CookieReceived(fresh=True), trigger="extension",
                                 event_kind="cookie_received", data=job.event_data(), now=now)
    after = await load_link(conn, link_id)  # apply_event may have opened an incident
    return CookieResult(answer(s.sync_interval_s, decision.link.state.value, row.unipile_account_id,
                               row.hold_reason), decision.attempt_now, link_id, True,
                        after.incident_id if after is not None else row.incident_id)
