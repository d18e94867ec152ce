"""Carrying out the policy's decisions: the I/O around `policy.decide`.

`apply_event` is the one place a link changes state: it runs the policy and
writes the new link fields, the incident, the history row and any email in the
caller's transaction. `AttemptRunner` makes the connect/reconnect calls: it
claims due links with a conditional update and a lease (so no two workers,
in this process or another, make the same attempt), records the attempt before
calling Unipile, and records the answer through `apply_event`.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cookiesync.background import KickedLoop
from cookiesync.db.batch import GroupCommit
from cookiesync.db.schema import events, incidents, links, notifications, users, utcnow
from cookiesync.domain.email import outbox as email_outbox
from cookiesync.domain.notifications import services as notify
from cookiesync.domain.reconnect import policy
from cookiesync.domain.reconnect.counters import count_attempt, top_of_hour
from cookiesync.domain.reconnect.policy import State
from cookiesync.security import DecryptError, Signer, decrypt_cookies
from cookiesync.unipile.client import AuthResult, CookieCredentials

if TYPE_CHECKING:
    from cookiesync.settings import Settings

log = logging.getLogger("cookiesync.reconnect")


def policy_config(s: Settings) -> policy.Config:
    """The policy's durations, from the settings."""
    return policy.Config(
        retry_interval=timedelta(seconds=s.retry_interval_s),
        retry_count=s.retry_count,
        max_incident_age=timedelta(seconds=s.max_incident_age_s),
        connecting_grace=timedelta(seconds=s.connecting_grace_s),
        rate_limit_delay=timedelta(seconds=s.rate_limit_delay_s),
    )


def to_policy(row: Any) -> policy.Link:
    return policy.Link(
        state=State(row.state),
        has_account=row.unipile_account_id is not None,
        has_cookie=row.cookie_key_id is not None,  # set with the ciphertext, always
        auto_connect=bool(row.auto_connect),
        incident_started_at=row.incident_started_at,
        next_slot=row.next_slot,
        next_attempt_at=row.next_attempt_at,
    )


async def add_event(conn: AsyncConnection, *, user_id: str, link_id: int | None, kind: str,
                    data: dict, actor: str | None = None, at: datetime | None = None) -> None:
    await conn.execute(events.insert().values(at=at or utcnow(), user_id=user_id, link_id=link_id, kind=kind,
                                              actor=actor, data=data))


async def load_link(conn: AsyncConnection, link_id: int) -> Any:
    return (await conn.execute(sa.select(links).where(links.c.id == link_id))).first()


def event_payload(row: Any, decision: policy.Decision, data: dict | None, incident_id: int | None) -> dict:
    """The history row's data for an event the policy decided on."""
    new = decision.link
    payload = dict(data or {})
    payload.update(note=decision.note, from_state=row.state, to_state=new.state.value)
    if new.next_attempt_at is not None:
        payload["next_attempt_at"] = new.next_attempt_at.isoformat()
    if incident_id is not None:
        payload["incident_id"] = incident_id
    return payload


def needs_apply(decision: policy.Decision) -> bool:
    """False when the decision only adds a history row (no link change, alert or email):
    such events can be written in bulk."""
    return decision.changed or decision.alert is not None or decision.email is not None


_LINK_BY_KEY = links.update().where(links.c.id == sa.bindparam("link_key"))
_INCIDENT_BY_KEY = incidents.update().where(incidents.c.id == sa.bindparam("incident_key"))


class Writes:
    """Rows that decisions write, queued and then written with one statement per table and
    shape (an executemany), in the caller's transaction. A batch of attempt answers shares
    one: one at a time, each answer's four or five statements through SQLAlchemy and the
    driver cost more of the event loop than the Unipile call itself."""

    def __init__(self) -> None:
        self._empty()

    def _empty(self) -> None:
        self.incidents: list[dict] = []
        self.links: dict[frozenset, list[dict]] = {}
        self.events: list[dict] = []
        self.notifications: list[dict] = []
        self.attempts: Counter = Counter()

    def link(self, link_id: int, values: dict) -> None:
        self.links.setdefault(frozenset(values), []).append(dict(values, link_key=link_id))

    def event(self, *, user_id: str, link_id: int | None, kind: str, data: dict, actor: str | None,
              at: datetime) -> None:
        self.events.append(dict(at=at, user_id=user_id, link_id=link_id, kind=kind, actor=actor, data=data))

    def attempt(self, at: datetime, kind: str, outcome: str) -> None:
        self.attempts[top_of_hour(at), kind, outcome] += 1

    async def flush(self, conn: AsyncConnection) -> None:
        if self.incidents:
            await conn.execute(_INCIDENT_BY_KEY, self.incidents)
        for rows in self.links.values():
            await conn.execute(_LINK_BY_KEY, rows)
        if self.events:
            await conn.execute(events.insert(), self.events)
        if self.notifications:
            await conn.execute(notifications.insert(), self.notifications)
        # last, so the hot counter rows stay locked least; in key order, as another instance locks them
        for (hour, kind, outcome), n in sorted(self.attempts.items()):
            await count_attempt(conn, hour, kind, outcome, n)
        self._empty()


async def apply_event(rt, conn: AsyncConnection, row: Any, event: policy.Event, *, trigger: str,
                      event_kind: str, data: dict | None = None, actor: str | None = None,
                      extra_values: dict | None = None, now: datetime | None = None,
                      writes: Writes | None = None) -> policy.Decision:
    """Decide and persist in the caller's transaction. Returns the decision so the
    caller can act after commit (kick the runner, restart the account).

    With `writes`, the rows that need nothing back (link fields, a closed incident, history,
    notification) are queued there for the caller to flush; without, they are written here."""
    now = now or utcnow()
    decision = policy.decide(to_policy(row), event, now, rt.policy_config)
    new = decision.link
    values: dict[str, Any] = dict(extra_values or {})
    incident_id = row.incident_id
    queue = writes if writes is not None else Writes()
    if decision.changed:
        values.update(state=new.state.value, incident_started_at=new.incident_started_at, next_slot=new.next_slot,
                      next_attempt_at=new.next_attempt_at, updated_at=now)
        if new.next_attempt_at is not None and new.next_attempt_at != row.next_attempt_at:
            values["attempt_trigger"] = "scheduler" if new.next_attempt_at > now else trigger
        if decision.incident_closed and incident_id is not None:
            queue.incidents.append(dict(incident_key=incident_id, closed_at=now, outcome=new.state.value))
            values["incident_id"] = None
            incident_id = None
        if decision.incident_opened:
            if row.incident_id is not None:
                await conn.execute(incidents.update().where(incidents.c.id == row.incident_id, incidents.c.closed_at.is_(None))
                                   .values(closed_at=now, outcome="superseded"))
            result = await conn.execute(incidents.insert().values(
                link_id=row.id, kind="reconnect" if new.has_account else "connect", opened_at=now, attempts=0))
            incident_id = result.inserted_primary_key[0]
            values.update(incident_id=incident_id, attempts_in_incident=0)
    if decision.changed and new.state is State.CONNECTED and row.state != State.CONNECTED.value:
        # connected or reconnected: the LinkedIn profile is read again, after this commits
        # (domain/profile); recorded here, so neither a crash nor a failed read loses it
        values.update(profile_due_at=now, profile_failures=0)
    if values:
        queue.link(row.id, values)
        rt.link_cache.drop((row.user_id, row.plain_id))  # the sync path answers with the state: let it re-read

    queue.event(user_id=row.user_id, link_id=row.id, kind=event_kind,
                data=event_payload(row, decision, data, incident_id), actor=actor, at=now)

    if decision.changed and new.state.value != row.state:
        notice = notify.notification_row(
            rt, row=row, new_state=new.state.value, reason=decision.note,
            account_id=(extra_values or {}).get("unipile_account_id", row.unipile_account_id))
        if notice is not None:
            queue.notifications.append(notice)

    if decision.alert:
        raise_alert(rt, queue, row, decision.alert, now)
    if decision.email is not None:
        await queue.flush(conn)  # the email is rendered from the link as just written
        await write_email(rt, conn, row, decision.email, incident_id, now)
    if writes is None:
        await queue.flush(conn)
    return decision


def raise_alert(rt, queue: Writes, row: Any, reason: str, now: datetime) -> None:
    """An operator alert: an error log line operators page on, the metric by reason, a history row."""
    rt.metrics.alerts.labels(reason[:60]).inc()
    log.error("OPERATOR ALERT link=%s: %s", row.id, reason)
    queue.event(user_id=row.user_id, link_id=row.id, kind="operator_alert", data={"reason": reason},
                actor=None, at=now)


@dataclass(frozen=True)
class RenderedEmail:
    """An email as the outbox keeps it: its reconnect link without the token, which the mailer
    signs from (link id, `incident_id`, `link_expires_at`) when it sends (email.outbox)."""
    subject: str
    text: str
    html: str
    stale: bool
    incident_id: int | None
    link_expires_at: datetime


async def render_email(rt, conn: AsyncConnection, row: Any, kind: policy.Email, incident_id: int | None,
                       now: datetime) -> RenderedEmail:
    """The email, whether the extension looks stale, and a fresh reconnect link's claims."""
    s = rt.settings
    user = (await conn.execute(sa.select(users).where(users.c.user_id == row.user_id))).first()
    link_row = await load_link(conn, row.id)
    last_cookie = link_row.date_last_cookie
    stale = last_cookie is None or (now - last_cookie).total_seconds() > s.stale_cookie_s
    subject, text, html = rt.emails.render(
        kind, linkedin_name=link_row.linkedin_name, plain_id=row.plain_id, name=user.display_name if user else None,
        reconnect_url=email_outbox.reconnect_url(s.base_url), link_ttl_s=s.reconnect_link_ttl_s,
        stale=stale, last_cookie=last_cookie, signed_out=link_row.cookie_signed_out_at is not None,
    )
    return RenderedEmail(subject, text, html, stale, incident_id, now + timedelta(seconds=s.reconnect_link_ttl_s))


def reconnect_token_for(signer: Signer, ttl_s: int, link_id: int, incident_id: int | None, now: datetime) -> str:
    """The reconnect link's token for the extension's answer: the email's kind (email.outbox's
    `reconnect_token`), expiring at the start of the current quarter of the link's lifetime plus
    that lifetime, so it is the same token for every sync of that quarter (the popup's button does
    not change under the user) and stays valid at least three quarters of `ttl_s`. Nothing is stored."""
    step = max(60, ttl_s // 4)
    start = int(now.timestamp()) // step * step
    return email_outbox.reconnect_token(signer, link_id, incident_id, datetime.fromtimestamp(start + ttl_s, timezone.utc))


async def write_email(rt, conn: AsyncConnection, row: Any, kind: policy.Email, incident_id: int | None,
                      now: datetime) -> bool:
    s = rt.settings
    user = (await conn.execute(sa.select(users).where(users.c.user_id == row.user_id))).first()
    mail = await render_email(rt, conn, row, kind, incident_id, now)
    stale = mail.stale
    dedupe = f"{kind.value}:link{row.id}:incident{incident_id if incident_id is not None else now.isoformat()}"
    written = await email_outbox.enqueue(
        conn, dedupe_key=dedupe, kind=kind.value, user_id=row.user_id, link_id=row.id,
        to_addr=user.email if user else None, subject=mail.subject, body_text=mail.text, body_html=mail.html,
        domain=s.base_url.split("//", 1)[-1].split(":", 1)[0].split("/", 1)[0] or "localhost",
        reconnect_incident_id=mail.incident_id, reconnect_expires_at=mail.link_expires_at,
    )
    if written:
        if kind is policy.Email.GAVE_UP:
            rt.metrics.give_ups.inc()
        rt.metrics.emails.labels("queued").inc()
        if not s.smtp_enabled:
            log.info("email for link %s kept in the outbox (no SMTP configured)", row.id)
        await add_event(conn, user_id=row.user_id, link_id=row.id, kind="email_queued",
                        data={"email_kind": kind.value, "stale_extension": stale, "to_set": bool(user and user.email)},
                        at=now)
    return written


WATCH_BATCH = 500  # CONNECTING watches turned into incidents per transaction


def _connecting_watches_due(now: datetime, postgres: bool) -> sa.Select:
    """Connected links whose CONNECTING watch is past its time (policy module docstring): the
    only connected links with a `next_attempt_at`. Locked in id order (PostgreSQL), as every other
    batch that updates links locks its rows; rows another transaction holds are skipped."""
    due = (sa.select(links).where(links.c.state == State.CONNECTED.value, links.c.incident_started_at.is_(None),
                                  links.c.next_attempt_at <= now)
           .order_by(links.c.id).limit(WATCH_BATCH))
    return due.with_for_update(skip_locked=True) if postgres else due


async def expire_connecting_watches(rt) -> int:
    """The sweep's step for accounts Unipile left CONNECTING too long: each gets `ConnectingLasted`
    (an incident opens and a reconnect is due at once). Returns how many links it moved."""
    now = utcnow()
    total, kick = 0, False
    postgres = rt.engine.dialect.name == "postgresql"
    while True:
        async with rt.engine.begin() as conn:
            rows = (await conn.execute(_connecting_watches_due(now, postgres))).all()
            writes = Writes()
            for row in rows:
                decision = await apply_event(rt, conn, row, policy.ConnectingLasted(), trigger="connecting",
                                             event_kind="connecting_lasted", now=now, writes=writes)
                kick |= decision.attempt_now
            await writes.flush(conn)
        total += len(rows)
        if len(rows) < WATCH_BATCH:
            break
    if kick:
        rt.runner.kick()
    return total


def _result_event(result: AuthResult, scheduled: bool, newer_cookie: bool) -> policy.Event:
    if result.outcome == "connected":
        return policy.AttemptSucceeded()
    if result.outcome == "checkpoint":
        return policy.AttemptCheckpoint(result.checkpoint_type or "UNKNOWN")
    assert result.failure is not None
    wait = timedelta(seconds=result.retry_after_s) if result.retry_after_s is not None else None
    return policy.AttemptFailed(result.failure, scheduled=scheduled, newer_cookie=newer_cookie,
                                rate_limited=result.rate_limited, retry_after=wait)


class AttemptRunner(KickedLoop):
    """Claims due links and makes their attempts, at most `concurrency` at once."""

    failure_message = "attempt runner pass failed"
    logger = log  # the module's logger, for the pass that fails

    def __init__(self, rt) -> None:
        super().__init__()
        self.rt = rt
        self.sem = asyncio.Semaphore(max(1, rt.settings.unipile_concurrency))
        self.inflight: set[asyncio.Task] = set()
        self.attempts_made = 0
        self.results = GroupCommit("attempt results", self._record_together, self._record_alone)

    def start(self) -> None:
        super().start()
        self.results.start()

    async def stop(self, grace_s: float = 10.0) -> None:
        await self.cancel_loop()
        if self.inflight:
            # Let attempts already talking to Unipile finish; the lease covers the rest.
            await asyncio.wait(self.inflight, timeout=grace_s)
        await self.results.stop()

    async def run_once(self) -> int:
        return await self.run_due()

    async def claim_due(self, limit: int) -> list[Any]:
        """Claim up to `limit` due links in one statement, and record that their attempts
        start, in the same transaction: the lease and the history are durable before any call."""
        rt = self.rt
        now = utcnow()
        lease_until = now + timedelta(seconds=rt.settings.attempt_lease_s)
        free = sa.or_(links.c.lease_until.is_(None), links.c.lease_until < now)
        # a connected link's next_attempt_at is a CONNECTING watch: the sweep turns it into an
        # incident (expire_connecting_watches) before anything is attempted
        due = (sa.select(links.c.id).where(links.c.next_attempt_at <= now, free, links.c.state != State.CONNECTED.value)
               .order_by(links.c.next_attempt_at).limit(limit))
        if rt.engine.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        claim = (links.update().where(links.c.id.in_(due.scalar_subquery()))
                 .values(lease_owner=rt.instance_id, lease_until=lease_until,
                         attempts_in_incident=links.c.attempts_in_incident + 1, last_attempt_at=now)
                 .returning(*links.c))
        async with rt.engine.begin() as conn:
            rows = (await conn.execute(claim)).all()
            if not rows:
                return []
            incident_ids = [r.incident_id for r in rows if r.incident_id is not None]
            if incident_ids:
                await conn.execute(incidents.update().where(incidents.c.id.in_(incident_ids))
                                   .values(attempts=incidents.c.attempts + 1))
            await conn.execute(events.insert(), [{
                "at": now, "user_id": r.user_id, "link_id": r.id, "kind": "attempt_started", "actor": None,
                "data": {"attempt": r.attempts_in_incident, "kind": "reconnect" if r.unipile_account_id else "connect",
                         "trigger": r.attempt_trigger or "scheduler",
                         "scheduled_slot": r.next_slot if self._scheduled(r, now) else None,
                         "cookie_fingerprint": (r.cookie_fingerprint or "")[:12]},
            } for r in rows])
        return [(r, now) for r in rows]

    def _scheduled(self, row: Any, now: datetime) -> bool:
        return (row.incident_started_at is not None and
                row.incident_started_at + row.next_slot * self.rt.policy_config.retry_interval <= now)

    async def run_due(self) -> int:
        """Claim and run everything due now; returns how many attempts were made."""
        total = 0
        limit = self.rt.settings.unipile_concurrency * 2
        batch = max(1, self.rt.settings.unipile_concurrency // 2)
        while True:
            room = limit - len(self.inflight)
            if pause := self.rt.unipile.backoff.paused_for():
                # Unipile rate limits this instance: claim nothing until the pause ends (the
                # attempts held back meanwhile are scheduled at its end, see the client)
                room = 0
                asyncio.get_running_loop().call_later(pause.total_seconds(), self.kick)
            claimed = await self.claim_due(room) if room > 0 else []
            for row, claimed_at in claimed:
                task = asyncio.get_running_loop().create_task(self._guarded(row, claimed_at))
                self.inflight.add(task)
                task.add_done_callback(self.inflight.discard)
            total += len(claimed)
            if not claimed and not self.inflight:
                break
            # Wait for room before claiming more, so leases don't age in a queue; and claim in
            # batches of C/2 (one claim transaction per batch, not per finished attempt), which
            # still keeps at least C claimed while the batch is taken.
            if self.inflight and not claimed:  # nothing due now: look again when an attempt ends
                await asyncio.wait(set(self.inflight), return_when=asyncio.FIRST_COMPLETED)
            while self.inflight and limit - len(self.inflight) < batch:
                await asyncio.wait(set(self.inflight), return_when=asyncio.FIRST_COMPLETED)
        return total

    async def _guarded(self, row: Any, claimed_at: datetime) -> None:
        try:
            await self.attempt(row, claimed_at)
        except Exception:
            log.exception("attempt on link %s failed unexpectedly; the lease will expire and it is retried",
                          row.id)

    async def attempt(self, row: Any, claimed_at: datetime) -> None:
        rt = self.rt
        link_id = row.id
        trigger = row.attempt_trigger or "scheduler"
        scheduled = self._scheduled(row, claimed_at)
        number = row.attempts_in_incident
        kind = "reconnect" if row.unipile_account_id else "connect"
        used_fp = row.cookie_fingerprint
        creds = None
        if row.cookie_ciphertext is not None:
            try:
                bundle = decrypt_cookies(rt.keyring, row.cookie_key_id, row.cookie_ciphertext, row.user_id, row.plain_id)
            except DecryptError as exc:
                log.error("link %s: stored cookie cannot be decrypted (%s)", link_id, exc)
            else:
                # the link's location, brought up to date and written before it is sent
                location = await rt.locator.for_attempt(rt.engine, rt.keyring, row, claimed_at)
                creds = CookieCredentials(bundle.li_at, bundle.li_a, bundle.user_agent, location)
        if creds is None:
            result = AuthResult(outcome="failed", http_status=None, duration_ms=0, failure=policy.Failure.NEEDS_USER,
                                error_type="no_usable_cookie", error_title="no usable cookie on record")
        else:
            # The limit is on calls to Unipile: the slot is free again while the answer is recorded
            async with self.sem:
                if row.unipile_account_id:
                    result = await rt.unipile.reconnect(row.unipile_account_id, creds)
                else:
                    result = await rt.unipile.connect(creds)
        self.attempts_made += 1
        rt.metrics.attempts.labels(kind, result.outcome).inc()
        # answers that arrive together share one transaction (group commit): one commit per batch
        decision = await self.results.submit(_Answer(link_id, result, scheduled, trigger, number, kind, used_fp,
                                                     row.next_slot if scheduled else None))
        if decision and decision.attempt_now:
            self.kick()
        if decision and decision.changed and decision.link.state is State.CONNECTED:
            rt.profiles.kick()  # its read is due, committed with this answer

    async def _record_alone(self, answer: "_Answer") -> policy.Decision | None:
        async with self.rt.engine.begin() as conn:
            writes = Writes()
            decision = await self._record_in(conn, answer, utcnow(), await load_link(conn, answer.link_id), writes)
            await writes.flush(conn)
            return decision

    async def _record_together(self, answers: list["_Answer"]) -> list[policy.Decision | None]:
        now = utcnow()
        if len({a.link_id for a in answers}) < len(answers):
            # one link twice (never while leases hold): each answer must see the one before it
            return [await self._record_alone(a) for a in answers]
        async with self.rt.engine.begin() as conn:
            # locked at once, in id order (PostgreSQL), as the other batches that update links lock theirs
            rows = {r.id: r for r in (await conn.execute(
                sa.select(links).where(links.c.id.in_([a.link_id for a in answers]))
                .order_by(links.c.id).with_for_update())).all()}
            writes = Writes()
            decisions = [await self._record_in(conn, a, now, rows.get(a.link_id), writes) for a in answers]
            await writes.flush(conn)
            return decisions

    async def _record_in(self, conn: AsyncConnection, a: "_Answer", now: datetime,
                         row: Any, writes: Writes) -> policy.Decision | None:
        """One answer through the policy, its rows queued in `writes` (the caller flushes them)."""
        rt, result = self.rt, a.result
        if row is None:  # erased meanwhile
            return None
        extra: dict[str, Any] = {"lease_owner": None, "lease_until": None,
                                 "last_error": None if result.outcome != "failed" else
                                 f"{result.http_status or 'no answer'} {result.error_type or result.failure}"[:200],
                                 "checkpoint_type": result.checkpoint_type}
        if result.account_id and row.unipile_account_id != result.account_id:
            extra["unipile_account_id"] = result.account_id
        data = {
            "attempt": a.number, "kind": a.kind, "trigger": a.trigger, "scheduled": a.scheduled, "slot": a.slot,
            "outcome": result.outcome, "http_status": result.http_status, "duration_ms": result.duration_ms,
            "error_type": result.error_type, "error_title": result.error_title,
            "failure": result.failure.value if result.failure else None,
            "checkpoint_type": result.checkpoint_type, "unipile_account_id": result.account_id,
        }
        if result.rate_limited:
            data.update(rate_limited=True, retry_after_s=result.retry_after_s)
        newer_cookie = row.cookie_fingerprint != a.used_fingerprint
        decision = await apply_event(rt, conn, row, _result_event(result, a.scheduled, newer_cookie),
                                     trigger="extension" if newer_cookie else "scheduler",
                                     event_kind="attempt", data=data, extra_values=extra, now=now,
                                     writes=writes)
        writes.attempt(now, a.kind, result.outcome)
        return decision


@dataclass(frozen=True)
class _Answer:
    link_id: int
    result: AuthResult
    scheduled: bool
    trigger: str
    number: int
    kind: str
    used_fingerprint: str | None
    slot: int | None
