"""Write side of the support console. Every action is one transaction that also
writes its audit event (actor = "staff:<email>" or "apikey:<name>")."""
from __future__ import annotations

import email.utils
import secrets

import sqlalchemy as sa

from cookiesync.db.engine import reader
from cookiesync.db.schema import devices, outbox, users, utcnow
from cookiesync.domain.reconnect import policy
from cookiesync.domain.reconnect.services import add_event, apply_event, load_link, render_email
from cookiesync.domain.support.schemas import ActionOut
from cookiesync.domain.sync.models import Device
from cookiesync.domain.sync.services import forget_link, revoke_device

LINK_ACTIONS = ("retry", "stop", "disable", "enable")
ALL_LINK_ACTIONS = LINK_ACTIONS + ("resend-email",)


class NotFound(LookupError):
    pass


async def link_action(rt, link_id: int, action: str, actor: str, reason: str | None = None) -> ActionOut:
    if action == "resend-email":
        return await resend_last_email(rt, link_id, actor, reason)
    if action not in LINK_ACTIONS:
        raise ValueError(f"unknown action {action!r}: one of {', '.join(ALL_LINK_ACTIONS)}")
    data = {"action": action}
    if reason:
        data["reason"] = reason[:500]
    async with rt.engine.begin() as conn:
        row = await load_link(conn, link_id)
        if row is None:
            raise NotFound(f"no link {link_id}")
        decision = await apply_event(rt, conn, row, policy.StaffAction(action), trigger="staff",
                                     event_kind="staff_action", data=data, actor=actor)
    forget_link(rt, row.user_id, row.plain_id)
    if decision.attempt_now:
        rt.runner.kick()
    return ActionOut(ok=True, action=action, link_id=link_id, changed=decision.changed, note=decision.note,
                     state=decision.link.state.value, attempt_now=decision.attempt_now)


def _domain(rt) -> str:
    return rt.settings.base_url.split("//", 1)[-1].split(":", 1)[0].split("/", 1)[0] or "localhost"


async def resend_email(rt, outbox_id: int, actor: str, reason: str | None = None) -> ActionOut:
    """A copy of an email, as a new message: new dedupe key and Message-ID, pending, audited.
    It goes to the user's current address (the reason to resend is often a corrected one)."""
    now = utcnow()
    async with rt.engine.begin() as conn:
        src = (await conn.execute(sa.select(outbox).where(outbox.c.id == outbox_id))).first()
        if src is None:
            raise NotFound(f"no email {outbox_id}")
        user = (await conn.execute(sa.select(users.c.email).where(users.c.user_id == src.user_id))).first()
        to_addr = (user.email if user and user.email else None) or src.to_addr
        subject, body_text, body_html = src.subject, src.body_text, src.body_html
        incident_id, link_expires_at = src.reconnect_incident_id, src.reconnect_expires_at
        link_row = await load_link(conn, src.link_id) if src.link_id is not None else None
        if link_row is not None and src.kind in {k.value for k in policy.Email}:
            # rendered anew: the reconnect link in the original may have expired
            mail = await render_email(rt, conn, link_row, policy.Email(src.kind), link_row.incident_id, now)
            subject, body_text, body_html = mail.subject, mail.text, mail.html
            incident_id, link_expires_at = mail.incident_id, mail.link_expires_at
        result = await conn.execute(outbox.insert().values(
            dedupe_key=f"resend:{src.id}:{secrets.token_hex(8)}", kind=src.kind, user_id=src.user_id,
            link_id=src.link_id, to_addr=to_addr, subject=subject, body_text=body_text,
            body_html=body_html, reconnect_incident_id=incident_id, reconnect_expires_at=link_expires_at,
            message_id=email.utils.make_msgid(domain=_domain(rt)),
            status="pending" if to_addr else "held",
            last_error=None if to_addr else "the user has no email address",
            attempts=0, next_attempt_at=now, created_at=now))
        new_id = result.inserted_primary_key[0]
        data = {"action": "resend_email", "outbox_id": new_id, "copied_from": src.id, "email_kind": src.kind,
                "to_changed": to_addr != src.to_addr}
        if reason:
            data["reason"] = reason[:500]
        await add_event(conn, user_id=src.user_id, link_id=src.link_id, kind="staff_action", actor=actor,
                        data=data, at=now)
    rt.metrics.emails.labels("queued").inc()
    note = f"email {src.id} copied as {new_id}" + ("" if to_addr else " (held: the user has no email address)")
    return ActionOut(ok=True, action="resend-email", link_id=src.link_id, changed=True, note=note,
                     outbox_id=new_id)


async def resend_last_email(rt, link_id: int, actor: str, reason: str | None = None) -> ActionOut:
    async with reader(rt.engine) as conn:
        if await load_link(conn, link_id) is None:
            raise NotFound(f"no link {link_id}")
        last = (await conn.execute(sa.select(outbox.c.id).where(outbox.c.link_id == link_id)
                                   .order_by(outbox.c.id.desc()).limit(1))).scalar()
    if last is None:
        return ActionOut(ok=False, action="resend-email", link_id=link_id, changed=False,
                         note="no email was ever written for this link")
    return await resend_email(rt, last, actor, reason)


async def revoke(rt, device_id: str, actor: str) -> ActionOut:
    async with reader(rt.engine) as conn:
        row = (await conn.execute(sa.select(devices.c.id, devices.c.user_id, devices.c.revoked_at)
                                  .where(devices.c.id == device_id))).first()
    if row is None:
        raise NotFound(f"no device {device_id}")
    if row.revoked_at is not None:
        return ActionOut(ok=True, action="revoke-device", link_id=None, changed=False,
                         note=f"device {device_id} was already revoked")
    await revoke_device(rt, Device(row.id, row.user_id), actor=actor)
    return ActionOut(ok=True, action="revoke-device", link_id=None, changed=True,
                     note=f"device {device_id} revoked: its extension must be paired again")
