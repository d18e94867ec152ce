"""The outbox page: emails, newest first, and one email with its bodies (reconnect token redacted)."""
from __future__ import annotations

import re
from typing import Any

from cookiesync.db.schema import outbox
from cookiesync.domain.support import schemas as S
from cookiesync.domain.support.queries.paging import ListQuery, NewestFirst

STATUSES = ("pending", "held", "sending", "sent", "failed")

LIST = NewestFirst(outbox, (
    outbox.c.id, outbox.c.kind, outbox.c.user_id, outbox.c.link_id, outbox.c.to_addr, outbox.c.subject,
    outbox.c.status, outbox.c.attempts, outbox.c.last_error, outbox.c.message_id, outbox.c.created_at,
    outbox.c.next_attempt_at, outbox.c.sent_at))

_RECONNECT_TOKEN = re.compile(r"(/reconnect/)[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")


def redact(body: str) -> str:
    """The email's reconnect link carries a signed token that mints a hosted-auth link for the
    user's account: staff see where it points, not the token."""
    return _RECONNECT_TOKEN.sub(r"\1[token-redacted]", body)


def summary(r: Any) -> S.OutboxSummary:
    return S.OutboxSummary(id=r.id, kind=r.kind, user_id=r.user_id, link_id=r.link_id, to_addr=r.to_addr,
                           subject=r.subject, status=r.status, attempts=r.attempts, last_error=r.last_error,
                           message_id=r.message_id, created_at=r.created_at, next_attempt_at=r.next_attempt_at,
                           sent_at=r.sent_at)


async def page(rt, q: ListQuery) -> S.OutboxPage:
    """q.filters: status, user_id, link_id."""
    got = await LIST.page(rt, q)
    return S.OutboxPage(items=[summary(r) for r in got.rows], limit=got.limit, next_cursor=got.next_cursor)


async def detail(rt, outbox_id: int) -> S.OutboxDetail | None:
    r = await LIST.one(rt, outbox_id, outbox)
    if r is None:
        return None
    return S.OutboxDetail(email=summary(r), body_text=redact(r.body_text), body_html=redact(r.body_html))
