"""The sweep: APScheduler ticks it; the database decides what is due.

Only one instance leads the sweep at a time (a lease row, renewed each run).
The sweep reconnects accounts Unipile left CONNECTING too long, makes due
attempts (claimed per link, see AttemptRunner) and delivers due emails; beside it, it starts the
prune and the reconciliation with Unipile's account list when they are due (scheduler/jobs.py). Immediate attempts don't wait for it: any instance kicks
its own runner when it schedules one, and the per-link claim keeps that safe.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import IntegrityError

from cookiesync.db.engine import reader
from cookiesync.db.schema import leases, links, utcnow
from cookiesync.domain.reconnect.services import expire_connecting_watches
from cookiesync.domain.reconcile.services import Reconciler
from cookiesync.domain.retention.services import Pruner

log = logging.getLogger("cookiesync.scheduler")
SWEEP = "sweep"


async def acquire_lease(rt, name: str = SWEEP) -> bool:
    now = utcnow()
    until = now + timedelta(seconds=rt.settings.sweep_lease_s)
    async with rt.engine.begin() as conn:
        res = await conn.execute(leases.update().where(
            leases.c.name == name, sa.or_(leases.c.owner == rt.instance_id, leases.c.until < now)
        ).values(owner=rt.instance_id, until=until))
        if res.rowcount == 1:
            return True
    try:
        async with rt.engine.begin() as conn:
            await conn.execute(leases.insert().values(name=name, owner=rt.instance_id, until=until))
        return True
    except IntegrityError:
        return False


async def release_lease(rt, name: str = SWEEP) -> None:
    async with rt.engine.begin() as conn:
        await conn.execute(leases.delete().where(leases.c.name == name, leases.c.owner == rt.instance_id))


async def sweep(rt) -> dict:
    """One pass. Returns what it did (for logs and tests)."""
    if not await acquire_lease(rt):
        rt.metrics.sweep_leader.set(0)
        return {"leader": False}
    rt.metrics.sweep_leader.set(1)
    heartbeat = asyncio.get_running_loop().create_task(_keep_lease(rt))
    try:
        return await _sweep_as_leader(rt)
    finally:
        heartbeat.cancel()


async def _keep_lease(rt) -> None:
    """A long sweep renews its lease, so no second leader starts while it works."""
    while True:
        await asyncio.sleep(max(0.05, rt.settings.sweep_lease_s / 3))
        if not await acquire_lease(rt):
            rt.metrics.sweep_leader.set(0)
            log.warning("lost the sweep lease to another instance")
            return


async def _sweep_as_leader(rt) -> dict:
    started = time.perf_counter()
    now = utcnow()
    async with reader(rt.engine) as conn:
        oldest = (await conn.execute(sa.select(sa.func.min(links.c.next_attempt_at))
                                     .where(links.c.next_attempt_at <= now))).scalar()
    rt.metrics.sweep_lag.set((now - oldest).total_seconds() if oldest else 0)
    connecting = await expire_connecting_watches(rt)
    attempts = await rt.runner.run_due()
    # profile reads due (connects by webhook or hosted auth, failed reads to retry) run in the
    # reader's own loop: a burst of them never holds up the emails and notifications below
    rt.profiles.kick()
    emails = await rt.mailer.deliver_due()
    notices = await rt.notifier.deliver_due()
    pruning = await rt.scheduler.pruner.start_if_due()  # beside the sweep, not in it (domain/retention)
    reconciling = await rt.scheduler.reconciler.start_if_due()  # the same (domain/reconcile)
    duration = time.perf_counter() - started
    rt.metrics.sweep_seconds.observe(duration)
    async with rt.engine.begin() as conn:
        await conn.execute(leases.update().where(leases.c.name == SWEEP, leases.c.owner == rt.instance_id)
                           .values(last_run_at=now, last_duration_ms=int(duration * 1000)))
    return {"leader": True, "connecting_lasted": connecting, "attempts": attempts, "emails": emails, "notifications": notices,
            "prune_started": pruning, "reconcile_started": reconciling}


class Scheduler:
    def __init__(self, rt) -> None:
        self.rt = rt
        self.aps = AsyncIOScheduler(timezone="UTC")
        self.running: asyncio.Task | None = None
        self.stopping = False
        self.pruner = Pruner(rt)
        self.reconciler = Reconciler(rt)

    async def _tick(self) -> None:
        if self.stopping:
            return
        self.running = asyncio.current_task()
        try:
            await sweep(self.rt)
        except Exception:
            log.exception("sweep failed; next tick tries again")
        finally:
            self.running = None

    def start(self) -> None:
        self.aps.add_job(self._tick, "interval", seconds=self.rt.settings.sweep_interval_s, id=SWEEP,
                         max_instances=1, coalesce=True, next_run_time=None)
        self.aps.start()
        # first run right away, so a restart resumes overdue work at once
        self.aps.modify_job(SWEEP, next_run_time=utcnow())

    async def stop(self, grace_s: float = 15.0) -> None:
        self.stopping = True
        self.aps.pause()
        if self.running is not None:
            # let the sweep in progress finish its attempts; what it can't, the leases hand over
            # (APScheduler's shutdown cancels running jobs, so it comes after)
            await asyncio.wait({self.running}, timeout=grace_s)
        self.aps.shutdown(wait=False)
        await self.pruner.stop()
        await self.reconciler.stop()
        try:
            await release_lease(self.rt)
        except Exception:
            log.warning("could not release the sweep lease; it expires by itself")
