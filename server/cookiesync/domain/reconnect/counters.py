"""The hourly attempt counters (table `attempt_counts`, migration 0004): the attempt runner bumps
them in the transaction that records each attempt's result, and readers (the support console's
overview) sum a few hour buckets instead of scanning the attempt events."""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from cookiesync.db.schema import attempt_counts, dialect_insert


def top_of_hour(at: datetime) -> datetime:
    """The UTC hour bucket `at` falls in."""
    return at.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


async def count_attempt(conn, at: datetime, kind: str, outcome: str, n: int = 1) -> None:
    """`n` more attempts of `kind` that ended in `outcome` in the UTC hour of `at`. Call it in the
    transaction that writes the attempts' events, so an attempt is counted if and only if it is recorded."""
    c = attempt_counts.c
    stmt = dialect_insert(conn, attempt_counts).values(hour=top_of_hour(at), kind=kind, outcome=outcome, count=n)
    await conn.execute(stmt.on_conflict_do_update(index_elements=[c.hour, c.kind, c.outcome],
                                                  set_={"count": c.count + stmt.excluded.count}))


async def counts_since(conn, since: datetime) -> list[tuple[datetime, str, str, int]]:
    """(hour, attempt kind, outcome, count) for every bucket from the hour `since` on: at most 6 rows an hour."""
    c = attempt_counts.c
    return list((await conn.execute(sa.select(c.hour, c.kind, c.outcome, c.count).where(c.hour >= since))).all())
