"""Attempt throttles in the database: reserve an attempt before the check it guards, give it
back on success. The rules are pure (policy.py); the statements are named in db/throttle_sql.py.

In the database, not in process memory, so a limit holds across instances and restarts.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from cookiesync.db import throttle_sql as sql
from cookiesync.db.engine import reader
from cookiesync.db.schema import utcnow
from cookiesync.domain.throttle.policy import Backoff, State, Window

# A lost compare-and-set means another request wrote the key meanwhile; past this many the
# attempt is refused (fail closed) rather than retried forever under a storm.
CLAIM_TRIES = 30
# Rows whose window is over, dropped per new key (bounded: a write never pays for a backlog).
DROP_BATCH = 100

Rule = Window | Backoff


class Throttled(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"throttled for {retry_after_s:.0f}s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Reservation:
    """One reserved attempt: the key and the window it counts in."""

    key: str
    window_start: datetime


def _state(row) -> State | None:
    return None if row is None else State(row.attempts, row.window_start, row.next_at, row.expires_at)


async def wait_for(engine: AsyncEngine, key: str, rule: Rule, now: datetime | None = None) -> float | None:
    """Seconds until `rule` would allow an attempt on `key`, or None; reserves nothing."""
    now = now or utcnow()
    async with reader(engine) as conn:
        row = (await conn.execute(sql.READ, {"key": key})).first()
    decision = rule.decide(_state(row), now)
    return None if decision.allowed else decision.retry_after_s


async def reserve(engine: AsyncEngine, key: str, rule: Rule, *, subject: str | None = None,
                  now: datetime | None = None) -> Reservation:
    """Reserve one attempt on `key` under `rule`, before the check; raises Throttled when the rule
    refuses. `subject`: the staff account the key throttles, for `forget_subject`."""
    now = now or utcnow()
    for _try in range(CLAIM_TRIES):
        async with engine.begin() as conn:
            row = (await conn.execute(sql.READ, {"key": key})).first()
            decision = rule.decide(_state(row), now)
            if not decision.allowed:
                raise Throttled(decision.retry_after_s)
            new = decision.state
            values = {"key": key, "subject": subject, "attempts": new.attempts, "window_start": new.window_start,
                      "next_at": new.next_at, "expires_at": new.expires_at}
            if row is None:
                claimed = (await conn.execute(sql.CLAIM_NEW, values)).first()
            else:
                claimed = (await conn.execute(sql.CLAIM, values | {"version": row.version})).first()
        if claimed is not None:
            if row is None:  # a new key: the moment to drop a few old ones
                async with engine.begin() as conn:
                    await conn.execute(sql.drop_expired(engine.dialect.name), {"now": now, "batch": DROP_BATCH})
            return Reservation(key, new.window_start)
    raise Throttled(1.0)


async def release(engine: AsyncEngine, reservation: Reservation) -> None:
    """Give a reserved attempt back (it succeeded): successes do not count towards a Window."""
    async with engine.begin() as conn:
        await conn.execute(sql.RELEASE, {"key": reservation.key, "window_start": reservation.window_start})


async def forget(engine: AsyncEngine, key: str) -> None:
    """Drop the key (a staff sign-in that succeeded ends its (account, address) delay)."""
    async with engine.begin() as conn:
        await conn.execute(sql.FORGET, {"key": key})


async def forget_subject(conn, subject: str) -> int:
    """Drop every key of one staff account; returns how many."""
    return (await conn.execute(sql.FORGET_SUBJECT, {"subject": subject})).rowcount
