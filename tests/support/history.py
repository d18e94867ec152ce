"""A link's history (its `events` rows, oldest first), read from the service's database."""
from __future__ import annotations

import sqlalchemy as sa

from cookiesync.db.schema import events, links


def history(svc, link_plain_id: str) -> list[dict]:
    async def q(conn):
        link_id = (await conn.execute(sa.select(links.c.id).where(links.c.plain_id == link_plain_id))).scalar_one()
        rows = (await conn.execute(sa.select(events).where(events.c.link_id == link_id).order_by(events.c.id))).all()
        return [dict(r._mapping) for r in rows]

    return svc.db(q)
