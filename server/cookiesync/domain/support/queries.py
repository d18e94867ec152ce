"""Read side of the support console: overview figures, the links list, a link's
whole history, the outbox. Every query walks an index (see migration 0002);
lists use keyset pagination so page 500 costs what page 1 costs; the overview's
attempt figures come from hourly counters (migration 0004), not from the history."""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from cookiesync.db.engine import reader
from cookiesync.db.schema import UTCDateTime, attempt_counts, devices, events, incidents, leases, links, \
    notifications, outbox, users, utcnow
from cookiesync.domain.notifications.services import EVENT_TYPES
from cookiesync.domain.reconnect.counters import top_of_hour
from cookiesync.domain.support import schemas as S
from cookiesync.domain.support.stats import link_counts


class BadQuery(ValueError):
    """A filter or cursor the caller sent is malformed; the message says which."""


# --- overview -----------------------------------------------------------------
def _stats(name: str, since: datetime, rows, give_ups: int) -> S.WindowStats:
    """rows: (attempt kind, outcome, count)."""
    total = ok = failed = checkpoints = rec_total = rec_ok = 0
    for k, o, n in rows:
        total += n
        ok += n if o == "connected" else 0
        failed += n if o == "failed" else 0
        checkpoints += n if o == "checkpoint" else 0
        if k == "reconnect":
            rec_total += n
            rec_ok += n if o == "connected" else 0
    return S.WindowStats(
        window=name, since=since, attempts=total, succeeded=ok, failed=failed, checkpoints=checkpoints,
        success_rate=round(ok / total, 4) if total else None, reconnect_attempts=rec_total,
        reconnect_succeeded=rec_ok, reconnect_success_rate=round(rec_ok / rec_total, 4) if rec_total else None,
        give_ups=give_ups)


async def _give_ups(conn, day_start: datetime, week_start: datetime) -> tuple[int, int]:
    """Give-up emails queued since each start, in one pass over the week's (few) email events."""
    day, week = (await conn.execute(
        sa.select(sa.func.count(sa.case((events.c.at >= day_start, 1))), sa.func.count())
        .where(events.c.kind == "email_queued", events.c.at >= week_start,
               events.c.data["email_kind"].as_string() == "gave_up")
    )).one()
    return day, week


async def overview(rt, hours: int = 24) -> S.Overview:
    """The console's front page.

    Attempt figures are sums of the hourly counters (`attempt_counts`, bumped with each
    attempt's result), never a scan of the attempt events, so each window is a whole number
    of UTC hour buckets: the 24 h figures and the chart cover the last `hours` buckets, the
    current one included (from the top of the hour 23 hours ago); the 7-day figures start at
    the top of the hour 7 days ago (the full 7 days, plus up to the hour before them). Each
    window's `since` says where it starts; its give-ups are counted from there too."""
    now = utcnow()
    start = top_of_hour(now - timedelta(hours=hours - 1))
    week_start = top_of_hour(now - timedelta(days=7))
    c = attempt_counts.c
    async with reader(rt.engine) as conn:
        by_state = await link_counts(conn)
        open_incidents = (await conn.execute(sa.select(sa.func.count()).select_from(incidents)
                                             .where(incidents.c.closed_at.is_(None)))).scalar_one()
        by_status = dict((await conn.execute(
            sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status))).all())
        lease = (await conn.execute(sa.select(leases).where(leases.c.name == "sweep"))).first()
        # at most 6 rows an hour: the chart, the 24 h and the 7-day figures all come from these
        counted = (await conn.execute(sa.select(c.hour, c.kind, c.outcome, c.count)
                                      .where(c.hour >= min(start, week_start)))).all()
        day_give_ups, week_give_ups = await _give_ups(conn, start, week_start)
    day = _stats("24h", start, [(k, o, n) for h, k, o, n in counted if h >= start], day_give_ups)
    week = _stats("7d", week_start, [(k, o, n) for h, k, o, n in counted if h >= week_start], week_give_ups)
    buckets = {start + timedelta(hours=i): [0, 0, 0] for i in range(hours)}
    for hour, _kind, out, n in counted:
        if hour in buckets:
            buckets[hour][0 if out == "connected" else 1 if out == "failed" else 2] += n
    live = lease is not None and lease.until > now
    sweep = S.SweepStatus(
        owner=lease.owner if lease else None, until=lease.until if lease else None,
        last_run_at=lease.last_run_at if lease else None, last_duration_ms=lease.last_duration_ms if lease else None,
        lease_live=live, this_instance=rt.instance_id,
        this_instance_leads=bool(live and lease.owner == rt.instance_id))
    return S.Overview(
        generated_at=now, links_by_state=by_state, links_total=sum(by_state.values()),
        open_incidents=open_incidents, last_24h=day, last_7d=week,
        outbox_waiting=by_status.get("pending", 0) + by_status.get("held", 0) + by_status.get("sending", 0),
        outbox_by_status=by_status, sweep=sweep,
        attempts_per_hour=[S.HourBucket(h, *v) for h, v in sorted(buckets.items())])


# --- links list -------------------------------------------------------------------
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
        if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return day + timedelta(days=1) if end else day
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"not a date: {text[:40]!r} (use YYYY-MM-DD or an ISO 8601 timestamp)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def encode_cursor(at: datetime, row_id: int) -> str:
    return _b64(f"{at.astimezone(timezone.utc).isoformat()}|{row_id}")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        at, _, row_id = _unb64(cursor).partition("|")
        return datetime.fromisoformat(at), int(row_id)
    except Exception:
        raise BadQuery("malformed cursor: pass back the next_cursor of the previous page") from None


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
        checkpoint_type=r.checkpoint_type, created_at=r.created_at, updated_at=r.updated_at)


# what a list row needs, never the cookie columns
_LIST_COLUMNS = [links.c.id, links.c.user_id, links.c.plain_id, links.c.state, links.c.unipile_account_id,
                 links.c.auto_connect, links.c.hold_reason, links.c.date_last_cookie, links.c.incident_id,
                 links.c.incident_started_at, links.c.attempts_in_incident, links.c.next_attempt_at,
                 links.c.last_attempt_at, links.c.last_error, links.c.checkpoint_type, links.c.created_at,
                 links.c.updated_at]


async def list_links(rt, flt: LinkFilter, *, cursor: str | None = None, limit: int = 50) -> S.LinkPage:
    limit = max(1, min(200, limit))
    query = (sa.select(*_LIST_COLUMNS, users.c.email)
             .select_from(links.outerjoin(users, users.c.user_id == links.c.user_id)))
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
    key = sa.tuple_(links.c.updated_at, links.c.id)
    if cursor:
        at, row_id = decode_cursor(cursor)
        mark = sa.tuple_(sa.literal(at, UTCDateTime()), sa.literal(row_id, sa.Integer()))
        query = query.where(key < mark if flt.order == "desc" else key > mark)
    if flt.order == "desc":
        query = query.order_by(links.c.updated_at.desc(), links.c.id.desc())
    else:
        query = query.order_by(links.c.updated_at.asc(), links.c.id.asc())
    now = utcnow()
    async with reader(rt.engine) as conn:
        rows = (await conn.execute(query.limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].updated_at, rows[-1].id) if more and rows else None
    return S.LinkPage(items=[_summary(rt, r, now) for r in rows], limit=limit, next_cursor=next_cursor)


# --- a link's whole story ------------------------------------------------------------
_SECRET_KEYS = {"li_at", "li_a", "cookie", "cookies", "token", "device_token", "password", "api_key", "secret"}


def clean(value: Any, depth: int = 0) -> Any:
    """Event data as shown to staff: nothing under a secret-sounding key, bounded size."""
    if depth > 4:
        return "…"
    if isinstance(value, dict):
        return {str(k): ("[redacted]" if str(k).lower() in _SECRET_KEYS else clean(v, depth + 1))
                for k, v in list(value.items())[:50]}
    if isinstance(value, list):
        return [clean(v, depth + 1) for v in value[:50]]
    if isinstance(value, str) and len(value) > 500:
        return value[:500] + "…"
    return value


def _fmt_ms(ms: Any) -> str:
    return f"{ms} ms" if isinstance(ms, (int, float)) else ""


def describe(kind: str, data: dict, actor: str | None) -> tuple[str, str]:
    """A one-line summary and a tone for an event."""
    d = data
    note = d.get("note") or ""
    arrow = f" ({d.get('from_state')} → {d.get('to_state')})" if d.get("from_state") != d.get("to_state") and \
        d.get("to_state") else ""
    if kind == "attempt":
        outcome = d.get("outcome")
        head = f"{d.get('kind', 'attempt')} attempt {d.get('attempt', '?')}: {outcome}"
        bits = [str(x) for x in (d.get("http_status"), d.get("error_type"), d.get("checkpoint_type")) if x]
        if bits:
            head += " — " + " ".join(bits)
        head += f" · trigger {d.get('trigger')} · {_fmt_ms(d.get('duration_ms'))}"
        tone = "ok" if outcome == "connected" else "warn" if outcome == "checkpoint" else "bad"
        return head + arrow + (f" · {note}" if note else ""), tone
    if kind == "attempt_started":
        return (f"{d.get('kind', 'attempt')} attempt {d.get('attempt', '?')} started · trigger {d.get('trigger')}"
                f" · cookie {d.get('cookie_fingerprint') or '—'}", "info")
    if kind == "cookie_received":
        return (f"cookie received · fingerprint {d.get('fingerprint')} · ip {d.get('ip')} · extension "
                f"{d.get('extension_version')}{arrow}" + (f" · {note}" if note else ""), "info")
    if kind == "webhook":
        dup = " (duplicate delivery)" if d.get("duplicate") else ""
        return f"Unipile webhook {d.get('message')}{dup}{arrow}" + (f" · {note}" if note else ""), \
            "bad" if d.get("message") in ("CREDENTIALS", "DELETED") else "info"
    if kind == "staff_action":
        action = d.get("action", "?")
        return f"staff: {action} by {actor or '?'}{arrow}" + (f" · {note}" if note else ""), "warn"
    if kind == "email_queued":
        return (f"email queued: {d.get('email_kind')}" + (" · asks to check the extension"
                                                         if d.get("stale_extension") else "")
                + ("" if d.get("to_set", True) else " · user has no email address"), "warn")
    if kind == "operator_alert":
        return f"operator alert: {d.get('reason')}", "bad"
    if kind == "device_paired":
        return f"device {d.get('device_id')} paired · extension {d.get('extension_version')} · ip {d.get('ip')}", "info"
    if kind == "device_revoked":
        return f"device {d.get('device_id')} revoked by {actor or '?'}", "warn"
    if kind == "link_created":
        return f"link created for LinkedIn member {d.get('plain_id')}" + (
            "" if d.get("auto_connect", True) else " · held: another member holds this user's slot"), "info"
    if kind == "hosted_auth":
        return f"hosted auth: {d.get('status') or d.get('message') or ''}{arrow}" + (f" · {note}" if note else ""), "ok"
    if kind == "reconnect_link_opened":
        return "the user opened the reconnect link from the email", "info"
    if kind == "account_restart":
        return f"asked Unipile to restart the account: {d.get('outcome')}", "info"
    return f"{kind.replace('_', ' ')}{arrow}" + (f" · {note}" if note else ""), "info"


def _event(r: Any) -> S.TimelineEvent:
    data = clean(r.data if isinstance(r.data, dict) else {"value": r.data})
    summary, tone = describe(r.kind, data, r.actor)
    outbox_id = data.get("outbox_id") if isinstance(data.get("outbox_id"), int) else None
    return S.TimelineEvent(id=r.id, at=r.at, kind=r.kind, actor=r.actor, link_id=r.link_id, summary=summary,
                           tone=tone, data=data, outbox_id=outbox_id)


def _outbox_summary(r: Any) -> S.OutboxSummary:
    return S.OutboxSummary(id=r.id, kind=r.kind, user_id=r.user_id, link_id=r.link_id, to_addr=r.to_addr,
                           subject=r.subject, status=r.status, attempts=r.attempts, last_error=r.last_error,
                           message_id=r.message_id, created_at=r.created_at, next_attempt_at=r.next_attempt_at,
                           sent_at=r.sent_at)


_OUTBOX_COLUMNS = [outbox.c.id, outbox.c.kind, outbox.c.user_id, outbox.c.link_id, outbox.c.to_addr,
                   outbox.c.subject, outbox.c.status, outbox.c.attempts, outbox.c.last_error, outbox.c.message_id,
                   outbox.c.created_at, outbox.c.next_attempt_at, outbox.c.sent_at]


async def link_detail(rt, link_id: int, *, before: int | None = None, limit: int = 100) -> S.LinkDetail | None:
    limit = max(1, min(500, limit))
    now = utcnow()
    async with reader(rt.engine) as conn:
        r = (await conn.execute(
            sa.select(*_LIST_COLUMNS, users.c.email, links.c.cookie_fingerprint, links.c.user_agent,
                      links.c.client_ip, links.c.next_slot, links.c.lease_owner, links.c.lease_until)
            .select_from(links.outerjoin(users, users.c.user_id == links.c.user_id))
            .where(links.c.id == link_id))).first()
        if r is None:
            return None
        user = (await conn.execute(sa.select(users).where(users.c.user_id == r.user_id))).first()
        devs = (await conn.execute(sa.select(devices.c.id, devices.c.extension_version, devices.c.created_at,
                                             devices.c.last_seen_at, devices.c.last_ip, devices.c.revoked_at)
                                   .where(devices.c.user_id == r.user_id)
                                   .order_by(devices.c.created_at.desc()).limit(50))).all()
        incs = (await conn.execute(sa.select(incidents).where(incidents.c.link_id == link_id)
                                   .order_by(incidents.c.id.desc()).limit(20))).all()
        mails = (await conn.execute(sa.select(*_OUTBOX_COLUMNS).where(outbox.c.link_id == link_id)
                                    .order_by(outbox.c.id.desc()).limit(50))).all()
        notes = (await conn.execute(sa.select(*_NOTIFICATION_COLUMNS).where(notifications.c.link_id == link_id)
                                    .order_by(notifications.c.id.desc()).limit(20))).all()
        others = (await conn.execute(
            sa.select(*_LIST_COLUMNS, users.c.email)
            .select_from(links.outerjoin(users, users.c.user_id == links.c.user_id))
            .where(links.c.user_id == r.user_id, links.c.id != link_id).order_by(links.c.id).limit(20))).all()
        # the link's own events, and the user's events that belong to no link (devices, account)
        own = sa.select(events).where(events.c.link_id == link_id)
        users_own = sa.select(events).where(events.c.user_id == r.user_id, events.c.link_id.is_(None))
        if before is not None:
            own = own.where(events.c.id < before)
            users_own = users_own.where(events.c.id < before)
        rows = list((await conn.execute(own.order_by(events.c.id.desc()).limit(limit + 1))).all())
        rows += (await conn.execute(users_own.order_by(events.c.id.desc()).limit(limit + 1))).all()
    rows.sort(key=lambda e: e.id, reverse=True)
    more = len(rows) > limit
    rows = rows[:limit]
    timeline = [_event(e) for e in rows]
    # point each "email queued" at the outbox row it wrote (same link, kind, moment)
    for ev in timeline:
        if ev.kind == "email_queued" and ev.outbox_id is None:
            match = [m for m in mails if m.kind == ev.data.get("email_kind")
                     and abs((m.created_at - ev.at).total_seconds()) < 5]
            if match:
                ev.outbox_id = match[-1].id
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
        emails=[_outbox_summary(m) for m in mails],
        other_links=[_summary(rt, o, now) for o in others],
        timeline=timeline, timeline_next_cursor=rows[-1].id if more and rows else None,
        notifications=[_notification_summary(n) for n in notes])


# --- outbox ------------------------------------------------------------------------------
OUTBOX_STATUSES = ("pending", "held", "sending", "sent", "failed")


async def list_outbox(rt, *, status: str | None = None, user_id: str | None = None, link_id: int | None = None,
                      cursor: str | None = None, limit: int = 50) -> S.OutboxPage:
    limit = max(1, min(200, limit))
    query = sa.select(*_OUTBOX_COLUMNS)
    if status:
        query = query.where(outbox.c.status == status)
    if user_id:
        query = query.where(outbox.c.user_id == user_id)
    if link_id is not None:
        query = query.where(outbox.c.link_id == link_id)
    if cursor:
        try:
            query = query.where(outbox.c.id < int(cursor))
        except ValueError:
            raise BadQuery("malformed cursor: pass back the next_cursor of the previous page") from None
    async with reader(rt.engine) as conn:
        rows = (await conn.execute(query.order_by(outbox.c.id.desc()).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return S.OutboxPage(items=[_outbox_summary(r) for r in rows], limit=limit,
                        next_cursor=str(rows[-1].id) if more and rows else None)


_RECONNECT_TOKEN = re.compile(r"(/reconnect/)[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")


def redact(body: str) -> str:
    """The email's reconnect link carries a signed token that mints a hosted-auth link for the
    user's account: staff see where it points, not the token."""
    return _RECONNECT_TOKEN.sub(r"\1[token-redacted]", body)


async def outbox_detail(rt, outbox_id: int) -> S.OutboxDetail | None:
    async with reader(rt.engine) as conn:
        r = (await conn.execute(sa.select(outbox).where(outbox.c.id == outbox_id))).first()
    if r is None:
        return None
    return S.OutboxDetail(email=_outbox_summary(r), body_text=redact(r.body_text), body_html=redact(r.body_html))


# --- integrator notifications -------------------------------------------------------------
NOTIFICATION_STATUSES = ("pending", "delivered", "failed")
NOTIFICATION_EVENT_TYPES = tuple(EVENT_TYPES.values())

_NOTIFICATION_COLUMNS = [notifications.c.id, notifications.c.msg_id, notifications.c.event_type,
                         notifications.c.user_id, notifications.c.link_id, notifications.c.payload,
                         notifications.c.status, notifications.c.attempts, notifications.c.last_status_code,
                         notifications.c.last_error, notifications.c.created_at, notifications.c.next_attempt_at,
                         notifications.c.last_attempt_at, notifications.c.delivered_at]


def _payload(text: str | None) -> dict[str, Any]:
    """The body as sent, parsed and cleaned (secret-sounding keys redacted, sizes bounded)."""
    try:
        value = json.loads(text or "")
    except ValueError:
        return {"raw": clean(text or "")}
    return clean(value) if isinstance(value, dict) else {"value": clean(value)}


def _notification_summary(r: Any, payload: dict[str, Any] | None = None) -> S.NotificationSummary:
    data = (payload if payload is not None else _payload(r.payload)).get("data")
    plain_id = data.get("plain_id") if isinstance(data, dict) else None
    return S.NotificationSummary(
        id=r.id, msg_id=r.msg_id, event_type=r.event_type, user_id=r.user_id,
        plain_id=str(plain_id) if plain_id is not None else None, link_id=r.link_id, status=r.status,
        attempts=r.attempts, last_status_code=r.last_status_code, last_error=r.last_error, created_at=r.created_at,
        next_attempt_at=r.next_attempt_at, last_attempt_at=r.last_attempt_at, delivered_at=r.delivered_at)


async def list_notifications(rt, *, status: str | None = None, event_type: str | None = None,
                             user_id: str | None = None, link_id: int | None = None, cursor: str | None = None,
                             limit: int = 50) -> S.NotificationPage:
    limit = max(1, min(200, limit))
    query = sa.select(*_NOTIFICATION_COLUMNS)
    if status:
        query = query.where(notifications.c.status == status)
    if event_type:
        query = query.where(notifications.c.event_type == event_type)
    if user_id:
        query = query.where(notifications.c.user_id == user_id)
    if link_id is not None:
        query = query.where(notifications.c.link_id == link_id)
    if cursor:
        try:
            query = query.where(notifications.c.id < int(cursor))
        except ValueError:
            raise BadQuery("malformed cursor: pass back the next_cursor of the previous page") from None
    async with reader(rt.engine) as conn:
        rows = (await conn.execute(query.order_by(notifications.c.id.desc()).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return S.NotificationPage(items=[_notification_summary(r) for r in rows], limit=limit,
                              next_cursor=str(rows[-1].id) if more and rows else None)


async def notification_detail(rt, notification_id: int) -> S.NotificationDetail | None:
    async with reader(rt.engine) as conn:
        r = (await conn.execute(sa.select(*_NOTIFICATION_COLUMNS)
                                .where(notifications.c.id == notification_id))).first()
    if r is None:
        return None
    payload = _payload(r.payload)
    return S.NotificationDetail(notification=_notification_summary(r, payload), payload=payload)
