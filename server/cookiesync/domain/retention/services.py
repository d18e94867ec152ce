"""The prune: old rows removed in small batches, by the sweep's leader, its runs recorded.

`prune` carries out the cut-offs of `policy.cutoffs` with db/prune.py's statements, each in a
transaction of its own with a pause after it: a write never waits long behind the prune (on
SQLite, where a write locks the database, at most one batch), and the prune never holds the
locks of the rows the sync path writes (new history rows, links), only of the old rows it removes.

`Pruner` is the leader's job: the sweep's leader calls `start_if_due` on each pass
(scheduler/sweep.py); it claims the `prune` row of `leases` if the last prune finished at least
`COOKIESYNC_RETENTION_INTERVAL_S` ago and no live instance holds it, runs the prune beside the
sweep (a long first prune never delays attempts or emails), renews the claim as it goes, and
records when it finished, how long it took and what it removed per table in that row, for the
console and `/metrics` of every instance.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Awaitable, Callable

import sqlalchemy as sa

from cookiesync.db import prune as sql
from cookiesync.db.engine import reader
from cookiesync.db.schema import DEDUPE_WINDOW, insert_missing, leases, utcnow
from cookiesync.domain.retention.policy import COOKIE_RECEIVED, PRUNE, Rule, config_from, cutoffs, due, rule_of_event

log = logging.getLogger("cookiesync.retention")
DUTY = 3.0       # pause after a statement, in multiples of the time it took (see prune)


class LostClaim(Exception):
    """Another instance holds the prune now (this one stalled past its lease)."""


async def prune(engine, cuts: dict[Rule, datetime | None], rows: int, pause_s: float, *,
                keep: Callable[[], Awaitable[None]] | None = None,
                counted: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Remove what is past each cut-off, `rows` at most per statement; what was removed per table
    (for the outbox: bodies blanked). `keep` runs before each statement (the claim's renewal:
    it raises to stop); `counted(table, n)` after each."""
    removed = dict.fromkeys(sql.TABLES, 0)
    rows = max(1, rows)

    async def run(table: str, stmt, params: dict) -> int:
        if keep is not None:
            await keep()
        began = time.perf_counter()
        async with engine.begin() as conn:
            n = (await conn.execute(stmt, params)).rowcount
        held = time.perf_counter() - began
        removed[table] += n
        if counted is not None and n:
            counted(table, n)
        # The sync path's turn: at least `pause_s`, and DUTY times what the statement took, so the
        # prune holds the database at most 1/(1 + DUTY) of the time however slow a batch gets (on
        # SQLite, where every write waits for the one write lock, a 2,000-row delete in a
        # 10M-row table took long enough that fixed pauses left the ingest a tenth of its rate).
        await asyncio.sleep(max(pause_s, DUTY * held))
        return n

    async def oldest_first(table: str, stmt, cutoff: datetime | None, enough: int = rows) -> None:
        """Until a statement removes fewer than `enough`: then nothing more qualifies."""
        if cutoff is not None:
            while await run(table, stmt, {"cutoff": cutoff, "n": rows, "hours": max(1, rows // 6)}) >= enough:
                pass

    await oldest_first("notifications", sql.DELETE_NOTIFICATIONS, cuts[Rule.NOTIFICATIONS])
    await oldest_first("outbox", sql.BLANK_EMAIL_BODIES, cuts[Rule.EMAIL_BODIES])
    await oldest_first("webhook_receipts", sql.DELETE_WEBHOOK_RECEIPTS, cuts[Rule.WEBHOOK_RECEIPTS])
    async with reader(engine) as conn:
        kinds = (await conn.execute(sql.EVENT_KINDS)).scalars().all()
    for kind in kinds:
        cutoff = cuts[rule_of_event(kind)]
        if cutoff is None:
            continue
        stmt = sql.DELETE_COOKIE_PAGE if kind == COOKIE_RECEIVED else sql.DELETE_EVENT_PAGE
        after = sql.START
        while True:
            page = {"kind": kind, "cutoff": cutoff, "after_at": after[0], "after_id": after[1]}
            async with reader(engine) as conn:
                end = (await conn.execute(sql.EVENT_PAGE_END, page | {"skip": rows - 1})).first()
            last = end is None  # fewer than `rows` left: this page runs to the cut-off
            end_at, end_id = (cutoff, sql.LAST_ID) if last else (end.at, end.id)
            await run("events", stmt, page | {"end_at": end_at, "end_id": end_id})
            if last:
                break
            after = (end_at, end_id)
    await oldest_first("incidents", sql.DELETE_INCIDENTS, cuts[Rule.HISTORY])
    await oldest_first("attempt_counts", sql.DELETE_ATTEMPT_COUNTS, cuts[Rule.HISTORY], enough=1)
    return removed


class Pruner:
    """The sweep leader's prune job (one per runtime)."""

    def __init__(self, rt) -> None:
        self.rt = rt
        self.task: asyncio.Task | None = None

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.rt.settings.sweep_lease_s)

    async def start_if_due(self) -> bool:
        """Start a prune beside the sweep if one is due and this instance could claim it."""
        if self.task is not None and not self.task.done():
            return False
        if not await self.claim():
            return False
        self.task = self.rt.spawn(self.run())
        return True

    async def claim(self) -> bool:
        rt, now = self.rt, utcnow()
        interval = timedelta(seconds=rt.settings.retention_interval_s)
        async with reader(rt.engine) as conn:
            row = (await conn.execute(sa.select(leases).where(leases.c.name == PRUNE))).first()
        if row is not None and not due(row.last_run_at, interval, now):
            return False  # the common case, read without a write
        until = now + self.lease
        async with rt.engine.begin() as conn:
            if row is None:
                res = await conn.execute(insert_missing(conn, leases, name=PRUNE, owner=rt.instance_id, until=until))
            else:  # due and unheld, decided again in the statement: another instance may just have claimed it
                res = await conn.execute(leases.update().where(
                    leases.c.name == PRUNE, sa.or_(leases.c.owner == rt.instance_id, leases.c.until < now),
                    sa.or_(leases.c.last_run_at.is_(None), leases.c.last_run_at <= now - interval),
                ).values(owner=rt.instance_id, until=until))
        return res.rowcount == 1

    async def run(self) -> dict[str, int]:
        rt, s = self.rt, self.rt.settings

        started, t0 = utcnow(), time.perf_counter()
        renewed = [t0]

        async def keep() -> None:  # renew the claim a few times per lease, not per statement
            if time.perf_counter() - renewed[0] < self.lease.total_seconds() / 3:
                return
            async with rt.engine.begin() as conn:
                res = await conn.execute(leases.update().where(leases.c.name == PRUNE,
                                                               leases.c.owner == rt.instance_id)
                                         .values(until=utcnow() + self.lease))
            if res.rowcount != 1:
                raise LostClaim()
            renewed[0] = time.perf_counter()

        cuts = cutoffs(config_from(s, DEDUPE_WINDOW), started)
        try:
            removed = await prune(rt.engine, cuts, s.retention_batch_rows, s.retention_pause_s, keep=keep,
                                  counted=lambda table, n: rt.metrics.prune_removed.labels(table).inc(n))
        except LostClaim:
            log.warning("prune stopped: another instance holds it now")
            return {}
        duration = time.perf_counter() - t0
        from cookiesync.domain.retention.status import recorded_sizes, table_sizes

        async with reader(rt.engine) as conn:  # kept for the console on SQLite, which has no cheap estimate
            sizes = recorded_sizes(await table_sizes(conn)) if conn.dialect.name == "sqlite" else []
        finished = utcnow()
        async with rt.engine.begin() as conn:
            await conn.execute(leases.update().where(leases.c.name == PRUNE, leases.c.owner == rt.instance_id)
                               .values(until=finished, last_run_at=finished, last_duration_ms=int(duration * 1000),
                                       last_result={"started_at": started.isoformat(), "removed": removed,
                                                    "tables": sizes}))
        rt.metrics.prune_runs.inc()
        log.info("prune done in %.1f s: removed %s", duration, removed)
        return removed

    async def stop(self) -> None:
        """Cancel a prune in progress (each batch is its own transaction: nothing is left half
        done) and give up the claim, so the next leader resumes it at once."""
        if self.task is None or self.task.done():
            return
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, Exception):
            pass
        try:
            async with self.rt.engine.begin() as conn:
                await conn.execute(leases.update().where(leases.c.name == PRUNE, leases.c.owner == self.rt.instance_id)
                                   .values(until=utcnow()))
        except Exception:
            log.warning("could not give up the prune's claim; it expires by itself")
