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

from cookiesync.db import prune as sql
from cookiesync.db.engine import reader
from cookiesync.db.schema import DEDUPE_WINDOW, utcnow
from cookiesync.domain.retention.policy import COOKIE_RECEIVED, PRUNE, Rule, config_from, cutoffs, rule_of_event
from cookiesync.scheduler.jobs import LeaderJob, LostClaim

log = logging.getLogger("cookiesync.retention")
DUTY = 3.0       # pause after a statement, in multiples of the time it took (see prune)


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
        # `held` counts on purpose the wait for the write lock (BEGIN IMMEDIATE) too: the busier the
        # sync path, the longer the wait and so the pause, and the prune yields most when it must.
        # Timed from the lock instead, 2,000,000 rows went in 422 s (724 s counting it, in an earlier
        # run), but the 100% changed ingest beside it kept 0.58 of its rate, below the row's 0.60.
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


class Pruner(LeaderJob):
    """The sweep leader's prune job (one per runtime): a `LeaderJob` (scheduler/jobs.py)."""

    name = PRUNE

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=self.rt.settings.retention_interval_s)

    async def run(self) -> dict[str, int]:
        rt, s = self.rt, self.rt.settings
        started, t0 = utcnow(), time.perf_counter()
        cuts = cutoffs(config_from(s, DEDUPE_WINDOW), started)
        try:
            removed = await prune(rt.engine, cuts, s.retention_batch_rows, s.retention_pause_s, keep=self.keep,
                                  counted=lambda table, n: rt.metrics.prune_removed.labels(table).inc(n))
        except LostClaim:
            log.warning("prune stopped: another instance holds it now")
            return {}
        duration = time.perf_counter() - t0
        from cookiesync.domain.retention.status import recorded_sizes, table_sizes

        async with reader(rt.engine) as conn:  # kept for the console on SQLite, which has no cheap estimate
            sizes = recorded_sizes(await table_sizes(conn)) if conn.dialect.name == "sqlite" else []
        await self.finish(duration, {"started_at": started.isoformat(), "removed": removed, "tables": sizes})
        rt.metrics.prune_runs.inc()
        log.info("prune done in %.1f s: removed %s", duration, removed)
        return removed
