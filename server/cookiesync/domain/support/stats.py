"""Figures shared by /metrics and the support console, and the attempt counters behind them."""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from cookiesync.db.engine import reader
from cookiesync.db.schema import attempt_counts, dialect_insert, incidents, links
from cookiesync.domain.reconnect.policy import State


async def link_counts(conn) -> dict[str, int]:
    rows = (await conn.execute(sa.select(links.c.state, sa.func.count()).group_by(links.c.state))).all()
    counts = {s.value: 0 for s in State}
    counts.update({state: n for state, n in rows})
    return counts


async def refresh_gauges(rt) -> None:
    async with reader(rt.engine) as conn:
        for state, n in (await link_counts(conn)).items():
            rt.metrics.link_states.labels(state).set(n)
        open_now = (await conn.execute(sa.select(sa.func.count()).select_from(incidents)
                                       .where(incidents.c.closed_at.is_(None)))).scalar_one()
    rt.metrics.open_incidents.set(open_now)


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
