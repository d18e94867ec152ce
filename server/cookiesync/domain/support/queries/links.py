"""The links pages: the list (filtered, last changed first) and one link's whole story (its user,
devices, incidents, emails, notifications, other links and history)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from cookiesync.db.engine import reader
from cookiesync.db.schema import devices, events, incidents, links, users, utcnow
from cookiesync.domain.support import schemas as S
from cookiesync.domain.support.queries.notifications import LIST as NOTIFICATIONS
from cookiesync.domain.support.queries.notifications import summary as notification_summary
from cookiesync.domain.support.queries.outbox import LIST as OUTBOX
from cookiesync.domain.support.queries.outbox import summary as email_summary
from cookiesync.domain.support.queries.paging import BadQuery, Keyset, clamp, cut
from cookiesync.domain.support.queries.timeline import timeline


@dataclass
class LinkFilter:
    state: str | None = None
    user_id: str | None = None
    email: str | None = None
    plain_id: str | None = None
    account_id: str | None = None
    updated_from: datetime | None = None   # inclusive
    updated_to: datetime | None = None     # exclusive
    order: str = "desc"                    # by last change (updated_at)
    cursor: str | None = None
    limit: int = 50

    def query_args(self) -> dict[str, str]:
        """The filter as query-string arguments (for the next page's link)."""
        out = {}
        for name in ("state", "user_id", "email", "plain_id", "account_id"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.updated_from:
            out["from"] = self.updated_from.date().isoformat()
        if self.updated_to:
            out["to"] = (self.updated_to - timedelta(days=1)).date().isoformat()
        if self.order != "desc":
            out["order"] = self.order
        return out


def parse_day(text: str | None, *, end: bool = False) -> datetime | None:
    """'YYYY-MM-DD' (a UTC day; `end` gives the next midnight) or a full ISO timestamp."""
    if not text:
        return None
    text = text.strip()
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return day + timedelta(days=1) if end else day
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"not a date: {text[:40]!r} (use YYYY-MM-DD or an ISO 8601 timestamp)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _summary(rt, r: Any, now: datetime) -> S.LinkSummary:
    age = (now - r.date_last_cookie).total_seconds() if r.date_last_cookie else None
    incident = None
    if r.incident_id is not None or r.incident_started_at is not None:
        incident = S.IncidentNow(id=r.incident_id, started_at=r.incident_started_at,
                                 attempts_made=r.attempts_in_incident,
                                 attempts_planned=rt.settings.retry_count + 1, next_attempt_at=r.next_attempt_at)
    return S.LinkSummary(
        id=r.id, user_id=r.user_id, email=getattr(r, "email", None), plain_id=r.plain_id, state=r.state,
        unipile_account_id=r.unipile_account_id, auto_connect=bool(r.auto_connect), hold_reason=r.hold_reason,
        date_last_cookie=r.date_last_cookie, cookie_age_s=round(age, 1) if age is not None else None,
        cookie_stale=age is None or age > rt.settings.stale_cookie_s, incident=incident,
        next_attempt_at=r.next_attempt_at, last_attempt_at=r.last_attempt_at, last_error=r.last_error,
        checkpoint_type=r.checkpoint_type, created_at=r.created_at, updated_at=r.updated_at,
        linkedin_name=r.linkedin_name, linkedin_public_id=r.linkedin_public_id, linkedin_premium=r.linkedin_premium,
        profile_read_at=r.profile_read_at, member_check=r.member_check, member_seen=r.member_seen,
        country=r.country, country_source=r.country_source)


# what a list row needs, never the cookie columns
_LIST_COLUMNS = [links.c.id, links.c.user_id, links.c.plain_id, links.c.state, links.c.unipile_account_id,
                 links.c.auto_connect, links.c.hold_reason, links.c.date_last_cookie, links.c.incident_id,
                 links.c.incident_started_at, links.c.attempts_in_incident, links.c.next_attempt_at,
                 links.c.last_attempt_at, links.c.last_error, links.c.checkpoint_type, links.c.created_at,
                 links.c.updated_at, links.c.linkedin_name, links.c.linkedin_public_id, links.c.linkedin_premium,
                 links.c.profile_read_at, links.c.member_check, links.c.member_seen, links.c.country,
                 links.c.country_source]
_WITH_EMAIL = links.outerjoin(users, users.c.user_id == links.c.user_id)
_BY_CHANGE = Keyset.by_time_and_id(links.c.updated_at, links.c.id)   # index ix_links_updated_at_id
_NEWEST_EVENTS = Keyset.by_id(events.c.id)


async def page(rt, flt: LinkFilter) -> S.LinkPage:
    query = sa.select(*_LIST_COLUMNS, users.c.email).select_from(_WITH_EMAIL)
    if flt.state:
        query = query.where(links.c.state == flt.state)
    if flt.user_id:
        query = query.where(links.c.user_id == flt.user_id)
    if flt.plain_id:
        query = query.where(links.c.plain_id == flt.plain_id)
    if flt.account_id:
        query = query.where(links.c.unipile_account_id == flt.account_id)
    if flt.email:
        wanted = {flt.email.strip(), flt.email.strip().lower()}  # as the integrator wrote it, or lower-cased
        query = query.where(links.c.user_id.in_(sa.select(users.c.user_id).where(users.c.email.in_(wanted))))
    if flt.updated_from:
        query = query.where(links.c.updated_at >= flt.updated_from)
    if flt.updated_to:
        query = query.where(links.c.updated_at < flt.updated_to)
    now = utcnow()
    async with reader(rt.engine) as conn:
        got = await _BY_CHANGE.page(conn, query, flt.cursor, flt.limit, flt.order)
    return S.LinkPage(items=[_summary(rt, r, now) for r in got.rows], limit=got.limit, next_cursor=got.next_cursor)


async def detail(rt, link_id: int, *, before: int | None = None, limit: int = 100) -> S.LinkDetail | None:
    """The link and its history, newest first: `limit` events older than the event `before`."""
    limit = clamp(limit, 500)
    now = utcnow()
    async with reader(rt.engine) as conn:
        r = (await conn.execute(
            sa.select(*_LIST_COLUMNS, users.c.email, links.c.cookie_fingerprint, links.c.user_agent,
                      links.c.client_ip, links.c.next_slot, links.c.lease_owner, links.c.lease_until)
            .select_from(_WITH_EMAIL).where(links.c.id == link_id))).first()
        if r is None:
            return None
        user = (await conn.execute(sa.select(users).where(users.c.user_id == r.user_id))).first()
        devs = (await conn.execute(sa.select(devices.c.id, devices.c.extension_version, devices.c.created_at,
                                             devices.c.last_seen_at, devices.c.last_ip, devices.c.revoked_at)
                                   .where(devices.c.user_id == r.user_id)
                                   .order_by(devices.c.created_at.desc()).limit(50))).all()
        incs = (await conn.execute(sa.select(incidents).where(incidents.c.link_id == link_id)
                                   .order_by(incidents.c.id.desc()).limit(20))).all()
        mails = (await conn.execute(OUTBOX.newest(50, link_id=link_id))).all()
        notes = (await conn.execute(NOTIFICATIONS.newest(20, link_id=link_id))).all()
        others = (await conn.execute(
            sa.select(*_LIST_COLUMNS, users.c.email).select_from(_WITH_EMAIL)
            .where(links.c.user_id == r.user_id, links.c.id != link_id).order_by(links.c.id).limit(20))).all()
        # the link's own events, and the user's events that belong to no link (devices, account)
        mark = (before,) if before is not None else None
        own = _NEWEST_EVENTS.after(sa.select(events).where(events.c.link_id == link_id), mark)
        users_own = _NEWEST_EVENTS.after(
            sa.select(events).where(events.c.user_id == r.user_id, events.c.link_id.is_(None)), mark)
        rows = list((await conn.execute(own.limit(limit + 1))).all())
        rows += (await conn.execute(users_own.limit(limit + 1))).all()
    rows.sort(key=lambda e: e.id, reverse=True)
    rows, older = cut(rows, limit, lambda e: e.id)
    in_flight = r.lease_until is not None and r.lease_until > now
    return S.LinkDetail(
        link=_summary(rt, r, now),
        user=S.UserInfo(user_id=r.user_id, email=user.email if user else None,
                        display_name=user.display_name if user else None,
                        created_at=user.created_at if user else None),
        cookie_fingerprint=(r.cookie_fingerprint or "")[:12] or None, user_agent=r.user_agent,
        client_ip=r.client_ip, next_slot=r.next_slot, attempt_in_flight=in_flight,
        devices=[S.DeviceInfo(d.id, d.extension_version, d.created_at, d.last_seen_at, d.last_ip, d.revoked_at)
                 for d in devs],
        incidents=[S.IncidentInfo(i.id, i.kind, i.opened_at, i.closed_at, i.outcome, i.attempts) for i in incs],
        emails=[email_summary(m) for m in mails],
        other_links=[_summary(rt, o, now) for o in others],
        timeline=timeline(rows, mails), timeline_next_cursor=older,
        notifications=[notification_summary(n) for n in notes])
