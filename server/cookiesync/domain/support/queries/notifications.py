"""The notifications page: the signed webhooks to the integrator, newest first, and one with the
payload sent (cleaned as the timeline's event data is)."""
from __future__ import annotations

import json
from typing import Any

from cookiesync.db.schema import notifications
from cookiesync.domain.notifications.services import EVENT_TYPES as _EVENTS
from cookiesync.domain.support import schemas as S
from cookiesync.domain.support.queries.paging import ListQuery, NewestFirst
from cookiesync.domain.support.queries.timeline import clean

STATUSES = ("pending", "delivered", "failed")
EVENT_TYPES = tuple(_EVENTS.values())

LIST = NewestFirst(notifications, (
    notifications.c.id, notifications.c.msg_id, notifications.c.event_type, notifications.c.user_id,
    notifications.c.link_id, notifications.c.payload, notifications.c.status, notifications.c.attempts,
    notifications.c.last_status_code, notifications.c.last_error, notifications.c.created_at,
    notifications.c.next_attempt_at, notifications.c.last_attempt_at, notifications.c.delivered_at))


def _payload(text: str | None) -> dict[str, Any]:
    """The body as sent, parsed and cleaned (secret-sounding keys redacted, sizes bounded)."""
    try:
        value = json.loads(text or "")
    except ValueError:
        return {"raw": clean(text or "")}
    return clean(value) if isinstance(value, dict) else {"value": clean(value)}


def summary(r: Any, payload: dict[str, Any] | None = None) -> S.NotificationSummary:
    data = (payload if payload is not None else _payload(r.payload)).get("data")
    plain_id = data.get("plain_id") if isinstance(data, dict) else None
    return S.NotificationSummary(
        id=r.id, msg_id=r.msg_id, event_type=r.event_type, user_id=r.user_id,
        plain_id=str(plain_id) if plain_id is not None else None, link_id=r.link_id, status=r.status,
        attempts=r.attempts, last_status_code=r.last_status_code, last_error=r.last_error, created_at=r.created_at,
        next_attempt_at=r.next_attempt_at, last_attempt_at=r.last_attempt_at, delivered_at=r.delivered_at)


async def page(rt, q: ListQuery) -> S.NotificationPage:
    """q.filters: status, event_type, user_id, link_id."""
    got = await LIST.page(rt, q)
    return S.NotificationPage(items=[summary(r) for r in got.rows], limit=got.limit, next_cursor=got.next_cursor)


async def detail(rt, notification_id: int) -> S.NotificationDetail | None:
    r = await LIST.one(rt, notification_id)
    if r is None:
        return None
    payload = _payload(r.payload)
    return S.NotificationDetail(notification=summary(r, payload), payload=payload)
