"""Emails to users: rendered into the outbox inside the state change's transaction,
delivered later over SMTP with retries. One Message-ID per email, fixed when it
is written, so a retried delivery is recognisably the same message.

The reconnect link's token is never stored: it mints a hosted-auth link for the user's account,
so a copy of the database (a backup, a replica, a support query) must not hold a live one. The
bodies hold `TOKEN_SLOT` where it goes, the row keeps its claims (`link_id`,
`reconnect_incident_id`, `reconnect_expires_at`), and the mailer signs them into the message it
sends (`Signer.sign_until`: the same claims give the same token, so a retried delivery carries
the same link)."""
from __future__ import annotations

import email.utils
import logging
from datetime import datetime, timedelta
from email.message import EmailMessage

import aiosmtplib
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cookiesync.db.schema import outbox, utcnow
from cookiesync.domain.email.rendering import EmailTemplates
from cookiesync.security import Signer
from cookiesync.settings import Settings

log = logging.getLogger("cookiesync.email")

TOKEN_SLOT = "[reconnect-token]"  # where the token goes in a stored body: /reconnect/[reconnect-token]
_SLOT_IN_LINK = "/reconnect/" + TOKEN_SLOT


def reconnect_url(base_url: str) -> str:
    """The reconnect link as stored: the token is added at send time (`with_token`)."""
    return f"{base_url}{_SLOT_IN_LINK}"


def reconnect_token(signer: Signer, link_id: int, incident_id: int | None, expires_at: datetime) -> str:
    return signer.sign_until({"l": link_id, "i": incident_id}, int(expires_at.timestamp()))


def with_token(body: str, token: str) -> str:
    return body.replace(_SLOT_IN_LINK, "/reconnect/" + token)


async def enqueue(conn: AsyncConnection, *, dedupe_key: str, kind: str, user_id: str, link_id: int | None,
                  to_addr: str | None, subject: str, body_text: str, body_html: str, domain: str,
                  reconnect_incident_id: int | None = None, reconnect_expires_at: datetime | None = None) -> bool:
    """Insert once per dedupe key; False if that email was already written. A body with a
    reconnect link (`reconnect_url`) comes with the link's expiry (and incident)."""
    exists = (await conn.execute(sa.select(outbox.c.id).where(outbox.c.dedupe_key == dedupe_key))).first()
    if exists:
        return False
    now = utcnow()
    await conn.execute(outbox.insert().values(
        dedupe_key=dedupe_key, kind=kind, user_id=user_id, link_id=link_id, to_addr=to_addr, subject=subject,
        body_text=body_text, body_html=body_html, message_id=email.utils.make_msgid(domain=domain),
        reconnect_incident_id=reconnect_incident_id, reconnect_expires_at=reconnect_expires_at,
        status="pending" if to_addr else "held", last_error=None if to_addr else "the user has no email address",
        attempts=0, next_attempt_at=now, created_at=now,
    ))
    return True


class Mailer:
    """Delivers due outbox rows. Claims each with a lease, so two instances never send one twice."""

    def __init__(self, settings: Settings, engine: AsyncEngine, owner: str, reconnect_signer: Signer,
                 templates: EmailTemplates | None = None) -> None:
        self.settings = settings
        self.templates = templates or EmailTemplates(settings)
        self.engine = engine
        self.owner = owner
        self.reconnect_signer = reconnect_signer

    def _message(self, row) -> EmailMessage:
        text, html = row.body_text, row.body_html
        if row.reconnect_expires_at is not None and row.link_id is not None:
            token = reconnect_token(self.reconnect_signer, row.link_id, row.reconnect_incident_id,
                                    row.reconnect_expires_at)
            text, html = with_token(text, token), with_token(html, token)
        msg = EmailMessage()
        msg["From"] = self.templates.brand.sender
        msg["To"] = row.to_addr
        msg["Subject"] = row.subject
        msg["Message-ID"] = row.message_id
        msg["Date"] = email.utils.format_datetime(row.created_at)
        # RFC 3834: sent by a program, so auto-responders (vacation replies) do not answer it. These
        # emails are transactional, about the user's own account: no List-Unsubscribe.
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(text)  # text/plain, then text/html: multipart/alternative, the last one preferred
        msg.add_alternative(html, subtype="html")
        return msg

    async def deliver_due(self, limit: int = 50) -> int:
        if not self.settings.smtp_enabled:
            return 0
        now = utcnow()
        async with self.engine.begin() as conn:
            rows = (await conn.execute(
                sa.select(outbox.c.id).where(
                    outbox.c.status == "pending", outbox.c.next_attempt_at <= now,
                    sa.or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now),
                ).order_by(outbox.c.id).limit(limit)
            )).scalars().all()
        sent = 0
        for row_id in rows:
            # the clock of this claim, not of the query above: sending the rows before this one
            # took time, and a lease dated from then could already be over (and the row sent twice)
            now = utcnow()
            async with self.engine.begin() as conn:
                claimed = await conn.execute(
                    outbox.update().where(
                        outbox.c.id == row_id, outbox.c.status == "pending",
                        sa.or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now),
                    ).values(lease_until=now + timedelta(seconds=self.settings.attempt_lease_s))
                )
                if claimed.rowcount != 1:
                    continue
                row = (await conn.execute(sa.select(outbox).where(outbox.c.id == row_id))).one()
            sent += await self._send_one(row)
        return sent

    async def _send_one(self, row) -> int:
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host, port=s.smtp_port, username=s.smtp_username or None,
            password=s.smtp_password or None, use_tls=s.smtp_tls == "tls",
            start_tls=True if s.smtp_tls == "starttls" else False,
            # at most half the lease: the other half is for recording it sent before the lease ends
            timeout=max(1.0, min(30.0, s.attempt_lease_s * 0.5)),
        )
        try:
            await smtp.connect()
            await smtp.send_message(self._message(row))
        except Exception as exc:  # network, auth, refused recipient: retry with backoff
            smtp.close()
            attempts = row.attempts + 1
            give_up = attempts >= 8
            delay = min(3600, 30 * 2 ** (attempts - 1))
            async with self.engine.begin() as conn:
                await conn.execute(outbox.update().where(outbox.c.id == row.id).values(
                    attempts=attempts, status="failed" if give_up else "pending", lease_until=None,
                    next_attempt_at=utcnow() + timedelta(seconds=delay), last_error=f"{type(exc).__name__}: {exc}"[:500],
                ))
            log.warning("email %s delivery failed (attempt %d): %s", row.id, attempts, type(exc).__name__)
            return 0
        # The server has accepted it: recorded before QUIT, so that a crash can resend it only in
        # the moment between the server's 250 and this commit (QUIT's round trip is not in it).
        try:
            async with self.engine.begin() as conn:
                await conn.execute(outbox.update().where(outbox.c.id == row.id).values(
                    attempts=row.attempts + 1, status="sent", sent_at=utcnow(), lease_until=None, last_error=None))
        finally:
            try:
                await smtp.quit()
            except Exception:
                smtp.close()
        log.info("email %s sent", row.id)
        return 1
