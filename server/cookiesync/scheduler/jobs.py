"""Jobs the sweep's leader runs beside the sweep: at most one run at a time across instances, at
most once per interval, each run's end recorded for every instance to read.

A job is a row of `leases` named after it: `claim` takes it if the last run finished at least
`interval` ago (or `due_now` says so) and no live instance holds it, in one conditional statement,
so two leaders in a hand-over never both run it; `keep` renews the claim while the run goes on
(a few times per lease) and raises `LostClaim` when another instance holds it now; `finish`
records when the run ended, how long it took and what it did (`last_result`) and frees the row;
`stop` cancels a run in progress and frees the row, so the next leader resumes it at once.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

import sqlalchemy as sa

from cookiesync.db.engine import reader
from cookiesync.db.schema import insert_missing, leases, utcnow

log = logging.getLogger("cookiesync.scheduler")


class LostClaim(Exception):
    """Another instance holds the job now (this one stalled past its lease)."""


class LeaderJob:
    name: str = ""

    def __init__(self, rt) -> None:
        self.rt = rt
        self.task: asyncio.Task | None = None
        self._renewed = 0.0

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.rt.settings.sweep_lease_s)

    @property
    def interval(self) -> timedelta:
        raise NotImplementedError

    def due_now(self, last_run_at: datetime | None, now: datetime) -> bool:
        return last_run_at is None or now - last_run_at >= self.interval

    async def run(self) -> object:
        raise NotImplementedError

    async def start_if_due(self) -> bool:
        """Start a run beside the sweep if one is due and this instance could claim it."""
        if self.task is not None and not self.task.done():
            return False
        if not await self.claim():
            return False
        self.task = self.rt.spawn(self.run())
        return True

    async def claim(self) -> bool:
        rt, now = self.rt, utcnow()
        async with reader(rt.engine) as conn:
            row = (await conn.execute(sa.select(leases).where(leases.c.name == self.name))).first()
        if row is not None and not self.due_now(row.last_run_at, now):
            return False  # the common case, read without a write
        until = now + self.lease
        async with rt.engine.begin() as conn:
            if row is None:
                res = await conn.execute(insert_missing(conn, leases, name=self.name, owner=rt.instance_id,
                                                        until=until))
            else:  # due and unheld, decided again in the statement: another instance may just have claimed it
                last = leases.c.last_run_at
                res = await conn.execute(leases.update().where(
                    leases.c.name == self.name, sa.or_(leases.c.owner == rt.instance_id, leases.c.until < now),
                    last.is_(None) if row.last_run_at is None else last == row.last_run_at,
                ).values(owner=rt.instance_id, until=until))
        self._renewed = time.perf_counter()
        return res.rowcount == 1

    async def keep(self) -> None:
        """Renew the claim a few times per lease, not at each call."""
        if time.perf_counter() - self._renewed < self.lease.total_seconds() / 3:
            return
        async with self.rt.engine.begin() as conn:
            res = await conn.execute(leases.update().where(leases.c.name == self.name,
                                                           leases.c.owner == self.rt.instance_id)
                                     .values(until=utcnow() + self.lease))
        if res.rowcount != 1:
            raise LostClaim()
        self._renewed = time.perf_counter()

    async def finish(self, duration_s: float, result: dict) -> None:
        finished = utcnow()
        async with self.rt.engine.begin() as conn:
            await conn.execute(leases.update().where(leases.c.name == self.name,
                                                     leases.c.owner == self.rt.instance_id)
                               .values(until=finished, last_run_at=finished, last_duration_ms=int(duration_s * 1000),
                                       last_result=result))

    async def stop(self) -> None:
        """Cancel a run in progress and give up the claim (what the run writes, it writes in
        transactions of its own: nothing is left half done)."""
        if self.task is None or self.task.done():
            return
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, Exception):
            pass
        try:
            async with self.rt.engine.begin() as conn:
                await conn.execute(leases.update().where(leases.c.name == self.name,
                                                         leases.c.owner == self.rt.instance_id)
                                   .values(until=utcnow()))
        except Exception:
            log.warning("could not give up the %s claim; it expires by itself", self.name)
