"""`GET /v1/users/{user_id}/export`: everything held on one user, as one JSON document, for the
user's right of access.

It reads column by column, naming each one it hands out, so a column added later stays out
until someone decides it belongs here. It never hands out a secret or what stands for one:
the cookie's ciphertext, key id and fingerprint, the proxy password (only whether one is set),
a device token's hash, a pairing code's hash, an email's stored bodies (their reconnect link is a live credential once signed), a
notification's payload signature. The user's history rows are what the service wrote about
them, and no secret is ever written there (the logging and event standards), so their data
goes out as stored.

It does not page: one user's rows are a few thousand at most (the history of years of
heartbeats is coalesced into one row per cookie); the whole document is read in one
transaction, so it is consistent with itself.
"""
from __future__ import annotations

import msgspec
import sqlalchemy as sa

from cookiesync.db.engine import reader
from cookiesync.db.schema import devices, events, incidents, links, notifications, outbox, pairing_codes, users, \
    utcnow
from cookiesync.domain.integrator.schemas import ExportDevice, ExportEmail, ExportEvent, ExportIncident, \
    ExportLink, ExportNotification, ExportPairingCode, UserExport
from cookiesync.domain.integrator.services import linkedin_of, location_out, user_out
from cookiesync.domain.reconnect.services import add_event
from cookiesync.runtime import Runtime

# What each table hands out, and in which order its rows come.
_DEVICE = (devices.c.id, devices.c.extension_version, devices.c.created_at, devices.c.last_seen_at,
           devices.c.last_ip, devices.c.revoked_at)
_LINK = (links.c.id, links.c.plain_id, links.c.state, links.c.auto_connect, links.c.hold_reason,
         links.c.unipile_account_id, links.c.user_agent, links.c.client_ip, links.c.date_last_cookie,
         links.c.last_attempt_at, links.c.last_error, links.c.checkpoint_type, links.c.next_attempt_at,
         links.c.created_at, links.c.updated_at)
# the LinkedIn profile (migration 0011), handed out as `linkedin` (integrator.services.linkedin_of); not
# profile_due_at and profile_failures, which are the service's own bookkeeping
_PROFILE = (links.c.linkedin_name, links.c.linkedin_public_id, links.c.linkedin_premium, links.c.profile_read_at,
            links.c.member_check, links.c.member_seen)
# the location (migration 0013), handed out as `location`; not the policy's streak bookkeeping
_LOCATION = (links.c.country, links.c.country_source)
_INCIDENT = (incidents.c.id, incidents.c.link_id, incidents.c.kind, incidents.c.opened_at, incidents.c.closed_at,
             incidents.c.outcome, incidents.c.attempts)
_EMAIL = (outbox.c.id, outbox.c.kind, outbox.c.link_id, outbox.c.to_addr, outbox.c.subject, outbox.c.status,
          outbox.c.created_at, outbox.c.sent_at)
_NOTIFICATION = (notifications.c.id, notifications.c.event_type, notifications.c.link_id, notifications.c.payload,
                 notifications.c.status, notifications.c.created_at, notifications.c.delivered_at)
_PAIRING = (pairing_codes.c.created_at, pairing_codes.c.expires_at, pairing_codes.c.used_at)
_EVENT = (events.c.id, events.c.at, events.c.link_id, events.c.kind, events.c.actor, events.c.data)


def _payload(text: str) -> object:
    """A notification's body as the integrator received it (JSON); kept as text if it is not JSON."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text


async def export_user(rt: Runtime, user_id: str, actor: str) -> UserExport | None:
    """The user's document, or None when no such user exists. The export itself goes into the
    user's history (who asked, and how much went out), after the read: a document never lists
    its own export."""
    doc = await _read(rt, user_id)
    if doc is not None:
        async with rt.engine.begin() as conn:
            await add_event(conn, user_id=user_id, link_id=None, kind="user_exported", actor=actor,
                            data={"links": len(doc.links), "devices": len(doc.devices), "events": len(doc.history)})
    return doc


async def _read(rt: Runtime, user_id: str) -> UserExport | None:
    async with reader(rt.engine) as conn:
        user = (await conn.execute(sa.select(users).where(users.c.user_id == user_id))).first()
        if user is None:
            return None

        async def rows(cols, table, where, order):
            return (await conn.execute(sa.select(*cols).where(where).order_by(order))).all()

        link_rows = await rows(_LINK + _PROFILE + _LOCATION, links, links.c.user_id == user_id, links.c.id)
        link_ids = [r.id for r in link_rows]
        incident_rows = (await rows(_INCIDENT, incidents, incidents.c.link_id.in_(link_ids), incidents.c.id)
                         if link_ids else [])
        history = [ExportEvent(*r) for r in await rows(_EVENT, events, events.c.user_id == user_id, events.c.id)]
        by_link: dict[int, list] = {i: [] for i in link_ids}
        for r in incident_rows:
            by_link[r.link_id].append(ExportIncident(r.id, r.kind, r.opened_at, r.closed_at, r.outcome, r.attempts))
        return UserExport(
            exported_at=utcnow(),
            user=user_out(user),
            devices=[ExportDevice(*r) for r in await rows(_DEVICE, devices, devices.c.user_id == user_id,
                                                          devices.c.created_at)],
            links=[ExportLink(*r[:len(_LINK)], linkedin=linkedin_of(r), location=location_out(r),
                              incidents=by_link[r.id]) for r in link_rows],
            emails=[ExportEmail(*r) for r in await rows(_EMAIL, outbox, outbox.c.user_id == user_id, outbox.c.id)],
            notifications=[ExportNotification(r.id, r.event_type, r.link_id, _payload(r.payload), r.status,
                                              r.created_at, r.delivered_at)
                           for r in await rows(_NOTIFICATION, notifications, notifications.c.user_id == user_id,
                                               notifications.c.id)],
            pairing_codes=[ExportPairingCode(*r) for r in await rows(
                _PAIRING, pairing_codes, pairing_codes.c.user_id == user_id, pairing_codes.c.created_at)],
            history=history)
