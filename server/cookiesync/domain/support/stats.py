"""Figures shared by /metrics and the support console's overview."""
from __future__ import annotations

import sqlalchemy as sa

from cookiesync.db.engine import reader
from cookiesync.db.schema import incidents, links, utcnow
from cookiesync.domain.retention.status import prune_status, set_gauges
from cookiesync.domain.reconnect.policy import State


async def link_counts(conn) -> dict[str, int]:
    rows = (await conn.execute(sa.select(links.c.state, sa.func.count()).group_by(links.c.state))).all()
    counts = {s.value: 0 for s in State}
    counts.update({state: n for state, n in rows})
    return counts


async def open_incidents(conn) -> int:
    return (await conn.execute(sa.select(sa.func.count()).select_from(incidents)
                               .where(incidents.c.closed_at.is_(None)))).scalar_one()


async def refresh_gauges(rt) -> None:
    async with reader(rt.engine) as conn:
        for state, n in (await link_counts(conn)).items():
            rt.metrics.link_states.labels(state).set(n)
        open_now = await open_incidents(conn)
        pruned = await prune_status(conn, utcnow())
    rt.metrics.open_incidents.set(open_now)
    set_gauges(rt.metrics, pruned)
