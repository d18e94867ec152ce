"""Unipile calls us: account-status webhooks and hosted-auth notifications.

Answered fast: the state change is committed before the 200, and any call to
Unipile it leads to (a reconnect, a restart) runs after the answer.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Annotated, TypeVar

import msgspec
import sqlalchemy as sa
from litestar import Controller, Request, post
from litestar.exceptions import NotAuthorizedException, ValidationException

from cookiesync.db.schema import DEDUPE_WINDOW, links, utcnow, webhook_receipts
from cookiesync.domain.reconnect import policy
from cookiesync.domain.reconnect.services import add_event, apply_event
from cookiesync.domain.webhooks.services import Applied, after_commit, apply_status
from cookiesync.domain.sync.services import forget_link
from cookiesync.runtime import RT
from cookiesync.security import same_secret
from cookiesync.validation import text

log = logging.getLogger("cookiesync.webhooks")


T = TypeVar("T")
Word = Annotated[str, text(200)]  # an id or a status word from Unipile; stored and shown in the history


class AccountStatus(msgspec.Struct):
    account_id: Word
    message: Word
    account_type: Word | None = None


class AccountStatusIn(msgspec.Struct):
    AccountStatus: AccountStatus


class HostedAuthIn(msgspec.Struct):
    status: Word
    account_id: Word
    name: Annotated[str, text(1000)] | None = None


class Ack(msgspec.Struct):
    ok: bool
    duplicate: bool = False
    known_account: bool = True


async def _authentic(request: Request, given: str, secret: str, refused: str, shape: type[T],
                     what: str) -> tuple[bytes, T]:
    """The raw body and its decoded `shape`, once `given` matches the `secret` (constant time):
    401 (`refused`) before the body is read, 400 naming `what` for a body of another shape."""
    if not same_secret(given, secret):
        raise NotAuthorizedException(detail=refused)
    raw = await request.body()
    try:
        return raw, msgspec.json.decode(raw, type=shape)
    except msgspec.DecodeError as exc:
        raise ValidationException(detail=f"not {what}: {exc}") from None


def _digest(source: str, raw: bytes) -> str:
    return hashlib.sha256(source.encode() + b"\0" + raw).hexdigest()


async def _last_receipt(conn, digest: str, now):
    """When this body was last received within the window, or None."""
    return (await conn.execute(sa.select(sa.func.max(webhook_receipts.c.received_at)).where(
        webhook_receipts.c.body_hash == digest, webhook_receipts.c.received_at > now - DEDUPE_WINDOW))).scalar()


async def _record_receipt(conn, source: str, digest: str, now) -> None:
    await conn.execute(webhook_receipts.insert().values(source=source, body_hash=digest, received_at=now))


async def _seen_before(conn, source: str, raw: bytes, now) -> bool:
    """Unipile retries deliveries; the same body within the window is the same event."""
    digest = _digest(source, raw)
    if await _last_receipt(conn, digest, now) is not None:
        return True
    await _record_receipt(conn, source, digest, now)
    return False


def _redelivery(rows, received_at) -> bool:
    """An account-status body received before is Unipile retrying it, unless one of the account's links
    is connected again since (its `updated_at` is the change): then the earlier disconnect was dealt
    with, and the same words now are a new one. The body carries no id or time of its own, so the
    window alone would swallow a second real CREDENTIALS within it. A retry that arrives after we
    reconnected costs one reconnect with the same cookie; a swallowed disconnect costs the account."""
    if received_at is None:
        return False
    return not any(r.state == "connected" and r.updated_at > received_at for r in rows)


async def _links_for_account(conn, account_id: str):
    return (await conn.execute(sa.select(links).where(links.c.unipile_account_id == account_id))).all()


class WebhookController(Controller):
    path = "/v1/webhooks/unipile"
    tags = ["webhooks"]
    include_in_schema = True

    @post("/account-status", status_code=200, summary="Unipile account-status webhook")
    async def account_status(self, request: Request, rt: RT) -> Ack:
        s = rt.settings
        raw, body = await _authentic(request, request.headers.get(s.webhook_header.lower(), ""), s.webhook_secret,
                                     "bad or missing webhook secret", AccountStatusIn, "an account-status payload")
        status = body.AccountStatus
        message = status.message.upper()
        # labelled by the v1 statuses only (CREATION_SUCCESS has an underscore): any other is "other",
        # so a sender cannot grow the label set; the history keeps the message itself
        rt.metrics.webhooks.labels("account_status", message if message in policy.V1_STATUSES else "other").inc()
        now = utcnow()
        applied = Applied()
        async with rt.engine.begin() as conn:
            digest = _digest("account_status", raw)
            rows = await _links_for_account(conn, status.account_id)
            duplicate = _redelivery(rows, await _last_receipt(conn, digest, now))
            if not duplicate:
                await _record_receipt(conn, "account_status", digest, now)
            data = {"message": message, "unipile_account_id": status.account_id, "duplicate": duplicate}
            if not rows:
                await add_event(conn, user_id="-", link_id=None, kind="webhook_unknown_account", data=data, at=now)
                return Ack(ok=True, duplicate=duplicate, known_account=False)
            if duplicate:
                for row in rows:
                    await add_event(conn, user_id=row.user_id, link_id=row.id, kind="webhook", data=data, at=now)
            else:
                await apply_status(rt, conn, rows, message, trigger="webhook", event_kind="webhook", data=data,
                                   now=now, applied=applied)
        after_commit(rt, applied)
        return Ack(ok=True, duplicate=duplicate)

    @post("/hosted-auth", status_code=200, summary="Unipile hosted-auth notify_url")
    async def hosted_auth(self, request: Request, rt: RT) -> Ack:
        raw, body = await _authentic(request, request.query_params.get("secret", ""), rt.settings.hosted_auth_secret,
                                     "bad or missing secret", HostedAuthIn, "a hosted-auth notification")
        rt.metrics.webhooks.labels("hosted_auth", body.status if body.status.isalpha() else "other").inc()
        now = utcnow()
        async with rt.engine.begin() as conn:
            duplicate = await _seen_before(conn, "hosted_auth", raw, now)
            rows = await _links_for_account(conn, body.account_id)
            data = {"status": body.status, "unipile_account_id": body.account_id, "duplicate": duplicate}
            if not rows:
                await add_event(conn, user_id="-", link_id=None, kind="hosted_auth_unknown_account", data=data, at=now)
                return Ack(ok=True, duplicate=duplicate, known_account=False)
            for row in rows:
                if duplicate or body.status not in ("RECONNECTED", "CREATION_SUCCESS"):
                    await add_event(conn, user_id=row.user_id, link_id=row.id, kind="hosted_auth", data=data, at=now)
                    continue
                await apply_event(rt, conn, row, policy.HostedAuthCompleted(), trigger="hosted_auth",
                                  event_kind="hosted_auth", data=data, now=now)
                forget_link(rt, row.user_id, row.plain_id)
        return Ack(ok=True, duplicate=duplicate)


