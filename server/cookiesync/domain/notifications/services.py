"""Integrator notifications: signed outbound webhooks (Standard Webhooks spec).

When a link becomes connected, needs the user, hits a checkpoint or is disabled,
a notification row is written in the same transaction as the state change, and
delivered later with retries and backoff. Headers: `webhook-id`,
`webhook-timestamp`, `webhook-signature` = space-separated `v1,<base64 HMAC-SHA256
of "id.timestamp.body">`, one per configured secret (secret rotation).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from datetime import timedelta

import httpx
import msgspec
import sqlalchemy as sa

from cookiesync.db.schema import notifications, utcnow

log = logging.getLogger("cookiesync.notifications")

EVENT_TYPES = {"connected": "link.connected", "needs_user": "link.needs_user", "checkpoint": "link.checkpoint",
               "disabled": "link.disabled"}
MAX_ATTEMPTS = 10


class LinkEventData(msgspec.Struct):
    user_id: str
    plain_id: str
    status: str
    unipile_account_id: str | None
    reason: str


class Notification(msgspec.Struct):
    type: str
    timestamp: str
    data: LinkEventData


def secret_bytes(secret: str) -> bytes:
    """`whsec_<base64>` as the spec writes it; anything else is used as raw bytes."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_bytes(s), to_sign, hashlib.sha256).digest()).decode()
        for s in secrets_
    )


def verify(secrets_: list[str], headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """What a receiver does; used by our tests and offered to integrators as reference."""
    msg_id, ts, sig = headers.get("webhook-id"), headers.get("webhook-timestamp"), headers.get("webhook-signature")
    if not (msg_id and ts and sig) or abs(time.time() - int(ts)) > tolerance_s:
        return False
    expected = sign(secrets_, msg_id, int(ts), body).split(" ")
    given = sig.split(" ")
    return any(hmac.compare_digest(e, g) for e in expected for g in given)


def notification_row(rt, *, row, new_state: str, reason: str, account_id: str | None) -> dict | None:
    """The notification a link's new state calls for, as a row of `notifications`; None if none
    (no integrator webhook configured, or a state integrators are not told of). The caller
    inserts it in the state change's transaction."""
    if not rt.settings.integrator_webhook_url or new_state not in EVENT_TYPES:
        return None
    now = utcnow()
    payload = Notification(type=EVENT_TYPES[new_state], timestamp=now.isoformat().replace("+00:00", "Z"),
                           data=LinkEventData(row.user_id, row.plain_id, new_state, account_id, reason))
    return dict(msg_id="msg_" + secrets.token_urlsafe(16), event_type=payload.type, user_id=row.user_id,
                link_id=row.id, payload=msgspec.json.encode(payload).decode(), status="pending", attempts=0,
                next_attempt_at=now, created_at=now)


class Notifier:
    """Delivers due notifications, each claimed with a lease (one sender across instances)."""

    def __init__(self, rt) -> None:
        self.rt = rt
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))

    async def aclose(self) -> None:
        await self.http.aclose()

    def backoff(self, attempts: int) -> timedelta:
        base = self.rt.settings.notify_retry_base_s
        return timedelta(seconds=min(base * 4 ** (attempts - 1), 6 * 3600))

    async def deliver_due(self, limit: int = 100) -> int:
        s = self.rt.settings
        if not s.integrator_webhook_url:
            return 0
        engine = self.rt.engine
        now = utcnow()
        free = sa.or_(notifications.c.lease_until.is_(None), notifications.c.lease_until < now)
        async with engine.connect() as conn:
            ids = (await conn.execute(sa.select(notifications.c.id).where(
                notifications.c.status == "pending", notifications.c.next_attempt_at <= now, free
            ).order_by(notifications.c.id).limit(limit))).scalars().all()
        sent = 0
        secrets_ = [x for x in s.integrator_webhook_secret.replace(",", " ").split() if x]
        for nid in ids:
            async with engine.begin() as conn:
                claimed = await conn.execute(notifications.update().where(
                    notifications.c.id == nid, notifications.c.status == "pending", free
                ).values(lease_until=now + timedelta(seconds=60)))
                if claimed.rowcount != 1:
                    continue
                row = (await conn.execute(sa.select(notifications).where(notifications.c.id == nid))).one()
            body = row.payload.encode()
            ts = int(time.time())
            headers = {"content-type": "application/json", "webhook-id": row.msg_id,
                       "webhook-timestamp": str(ts), "webhook-signature": sign(secrets_, row.msg_id, ts, body)}
            status_code, error = None, None
            try:
                resp = await self.http.post(s.integrator_webhook_url, content=body, headers=headers)
                status_code = resp.status_code
                ok = 200 <= resp.status_code < 300
                if not ok:
                    error = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                ok, error = False, type(exc).__name__
            attempts = row.attempts + 1
            values = dict(attempts=attempts, lease_until=None, last_status_code=status_code, last_error=error,
                          last_attempt_at=utcnow())
            if ok:
                values.update(status="delivered", delivered_at=utcnow())
                sent += 1
            elif attempts >= MAX_ATTEMPTS:
                values.update(status="failed")
                log.error("integrator notification %s failed %d times; giving up", row.msg_id, attempts)
            else:
                values.update(next_attempt_at=utcnow() + self.backoff(attempts))
            async with engine.begin() as conn:
                await conn.execute(notifications.update().where(notifications.c.id == nid).values(**values))
        return sent
