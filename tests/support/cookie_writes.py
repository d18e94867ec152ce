"""New cookies handed to the writer (`domain.sync.writer`) as the sync path would, and the
link row they leave."""
from __future__ import annotations

import sqlalchemy as sa

from cookiesync.db.schema import links
from cookiesync.domain.sync.models import Device, NewCookie
from cookiesync.domain.sync.schemas import SyncIn
from cookiesync.security import cookie_fingerprint
from tests.support.devices import UA


def new_cookie(svc, device: Device, plain_id: str, li_at: str, now) -> NewCookie:
    body = SyncIn(li_at=li_at, li_a=None, user_agent=UA, plain_id=plain_id, extension_version="1.0.0")
    fp = cookie_fingerprint(svc.settings.signing_secret, li_at, None, UA)
    return NewCookie(device, body, "127.0.0.9", fp, now)


def link_row(svc, plain_id: str):
    async def q(conn):
        return (await conn.execute(sa.select(links).where(links.c.plain_id == plain_id))).one()
    return svc.db(q)
