"""The reconnect policy: link state and one event in, one decision out.

Pure on purpose: no clock (``now`` is passed in), no database, no network.
Everything the service does about a link's connection is decided here and
carried out elsewhere (``domain/reconnect/services.py``), so every rule of the
retry table in the design can be tested as a table.

Schedule. An incident opens at ``T0``. Scheduled attempts ("slots") are due at
``T0 + k * interval`` for k = 0..retry_count. An attempt made out of schedule
(a fresh cookie, staff "retry now") does not consume a slot and never moves T0.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum


class State(StrEnum):
    PENDING = "pending"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    NEEDS_USER = "needs_user"
    CHECKPOINT = "checkpoint"
    DISABLED = "disabled"


class Failure(StrEnum):
    """What kind of failure an attempt met; decides whose problem it is."""

    TRANSIENT = "transient"          # Unipile or LinkedIn side: try again later
    NEEDS_USER = "needs_user"        # the cookie is dead, only the user can help
    RESTART_FLOW = "restart_flow"    # 425 / killed auth intent: start the call again
    CONFIGURATION = "configuration"  # our API key or setup is wrong: operators


class Email(StrEnum):
    GAVE_UP = "gave_up"
    CHECKPOINT = "checkpoint"


CONNECTED_MESSAGES = frozenset({"OK", "RECONNECTED", "SYNC_SUCCESS", "CREATION_SUCCESS"})
RESTART_MESSAGES = frozenset({"ERROR", "STOPPED"})


@dataclass(frozen=True)
class Config:
    retry_interval: timedelta = timedelta(hours=1)
    retry_count: int = 4
    max_incident_age: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class Link:
    """What the policy needs to know about a link, nothing more."""

    state: State
    has_account: bool = False          # a Unipile account id is known
    has_cookie: bool = True
    auto_connect: bool = True          # False: another member of this user holds the slot
    incident_started_at: datetime | None = None
    next_slot: int = 0                 # index of the next scheduled attempt
    next_attempt_at: datetime | None = None


# --- events ---------------------------------------------------------------
@dataclass(frozen=True)
class CookieReceived:
    fresh: bool  # first cookie for this member, or its fingerprint changed


@dataclass(frozen=True)
class WebhookStatus:
    message: str


@dataclass(frozen=True)
class HostedAuthCompleted:
    pass


@dataclass(frozen=True)
class AttemptSucceeded:
    pass


@dataclass(frozen=True)
class AttemptCheckpoint:
    checkpoint_type: str


@dataclass(frozen=True)
class AttemptFailed:
    failure: Failure
    scheduled: bool  # the attempt was the due slot (not an out-of-schedule one)
    newer_cookie: bool = False  # a fresher cookie arrived while the call was under way


@dataclass(frozen=True)
class StaffAction:
    action: str  # retry | stop | disable | enable


@dataclass(frozen=True)
class MemberMismatch:
    """Unipile says the account is another LinkedIn member's than the link's, and the member check
    is enforced (domain/profile): the link stops using that cookie."""


Event = (
    CookieReceived | WebhookStatus | HostedAuthCompleted | AttemptSucceeded
    | AttemptCheckpoint | AttemptFailed | StaffAction | MemberMismatch
)


@dataclass(frozen=True)
class Decision:
    """The new link fields plus the side effects to carry out."""

    link: Link
    attempt_now: bool = False        # next_attempt_at == now: make an attempt at once
    slot_attempt: bool = False       # that attempt is a scheduled slot
    incident_opened: bool = False
    incident_closed: bool = False
    email: Email | None = None
    alert: str | None = None         # operator alert (log at error level + metric)
    restart_account: bool = False    # ask Unipile to restart the account
    note: str = ""                   # why, in words, for the history
    changed: bool = field(default=True)


def _unchanged(link: Link, note: str) -> Decision:
    return Decision(link=link, note=note, changed=False)


def _open_incident(link: Link, state: State, now: datetime, note: str) -> Decision:
    new = replace(link, state=state, incident_started_at=now, next_slot=0, next_attempt_at=now)
    return Decision(link=new, attempt_now=True, slot_attempt=True, incident_opened=True, note=note)


def _close(link: Link, state: State, note: str) -> Decision:
    had_incident = link.incident_started_at is not None
    new = replace(link, state=state, incident_started_at=None, next_slot=0, next_attempt_at=None)
    return Decision(link=new, incident_closed=had_incident, note=note)


def slot_due_at(link: Link, slot: int, config: Config) -> datetime:
    assert link.incident_started_at is not None
    return link.incident_started_at + slot * config.retry_interval


def _attempt_out_of_schedule(link: Link, now: datetime, config: Config, note: str) -> Decision:
    """Try at once; if a slot is already due, this attempt is that slot."""
    if link.incident_started_at is None:
        return _open_incident(link, link.state, now, note)
    slot_is_due = link.next_attempt_at is not None and link.next_attempt_at <= now
    new = replace(link, next_attempt_at=now)
    return Decision(link=new, attempt_now=True, slot_attempt=slot_is_due, note=note)


def decide(link: Link, event: Event, now: datetime, config: Config = Config()) -> Decision:
    match event:
        case CookieReceived():
            return _on_cookie(link, event, now, config)
        case WebhookStatus():
            return _on_webhook(link, event, now)
        case HostedAuthCompleted():
            if link.state is State.DISABLED:
                return _unchanged(link, "hosted auth completed for a disabled link: left disabled")
            return _close(link, State.CONNECTED, "reconnected by the user through hosted auth")
        case AttemptSucceeded():
            if link.state is State.DISABLED:
                return _unchanged(link, "attempt succeeded but the link was disabled meanwhile")
            return _close(link, State.CONNECTED, "connected")
        case AttemptCheckpoint():
            if link.state is State.DISABLED:
                return _unchanged(link, "checkpoint answered but the link was disabled meanwhile")
            new = replace(link, state=State.CHECKPOINT, next_attempt_at=None)
            return Decision(
                link=new,
                email=Email.CHECKPOINT if link.state is not State.CHECKPOINT else None,
                note=f"Unipile asked for a {event.checkpoint_type} checkpoint: the user must act",
            )
        case AttemptFailed():
            decision = _on_failure(link, event, now, config)
            if event.newer_cookie and decision.link.state not in (State.DISABLED, State.CONNECTED):
                return replace(decision, link=replace(decision.link, next_attempt_at=now), attempt_now=True,
                               note=decision.note + "; a fresher cookie arrived meanwhile: trying it at once")
            return decision
        case StaffAction():
            return _on_staff(link, event, now)
        case MemberMismatch():
            # a cookie of the wrong member must not be used again, whatever the link was doing
            if link.state is State.DISABLED:
                return _unchanged(link, "member mismatch; link already disabled")
            return _close(link, State.DISABLED, "disabled: the cookie is another LinkedIn member's")
    raise TypeError(f"unknown event {event!r}")


def _on_cookie(link: Link, event: CookieReceived, now: datetime, config: Config) -> Decision:
    if not event.fresh:
        return _unchanged(link, "same cookie as before")
    match link.state:
        case State.DISABLED:
            return _unchanged(link, "cookie stored; link is disabled")
        case State.CONNECTED:
            return _unchanged(link, "cookie stored for the next reconnect")
        case State.PENDING if not link.auto_connect:
            return _unchanged(link, "cookie stored; another LinkedIn account holds this user's slot")
        case State.PENDING | State.RECONNECTING:
            return _attempt_out_of_schedule(link, now, config, "fresh cookie: trying it at once")
        case State.NEEDS_USER | State.CHECKPOINT:
            new = replace(link, next_attempt_at=now)
            return Decision(link=new, attempt_now=True, note="fresh cookie while waiting for the user: trying it")
    raise AssertionError(link.state)


def _on_webhook(link: Link, event: WebhookStatus, now: datetime) -> Decision:
    message = event.message
    if message == "DELETED":
        if link.state is State.DISABLED:
            return _unchanged(link, "account deleted in Unipile (already disabled)")
        return _close(link, State.DISABLED, "account deleted in Unipile")
    if link.state is State.DISABLED:
        return _unchanged(link, f"{message} recorded; link is disabled")
    if message in CONNECTED_MESSAGES:
        if link.state is State.CONNECTED:
            return _unchanged(link, f"{message}: already connected")
        return _close(link, State.CONNECTED, f"Unipile reports {message}")
    if message == "CREDENTIALS":
        if link.state in (State.CONNECTED, State.PENDING) and link.has_account:
            if not link.has_cookie:
                new = replace(link, state=State.NEEDS_USER, incident_started_at=now, next_attempt_at=None)
                return Decision(link=new, incident_opened=True, email=Email.GAVE_UP,
                                note="disconnected and no cookie on record to reconnect with")
            return _open_incident(link, State.RECONNECTING, now, "Unipile reports the account disconnected")
        return _unchanged(link, f"CREDENTIALS while {link.state}: nothing new to do")
    if message in RESTART_MESSAGES:
        if link.has_account:
            return Decision(link=link, restart_account=True, changed=False,
                            note=f"Unipile reports {message}: asking Unipile to restart the account")
        return _unchanged(link, f"{message} recorded")
    return _unchanged(link, f"{message} recorded")


def _on_failure(link: Link, event: AttemptFailed, now: datetime, config: Config) -> Decision:
    if link.state is State.DISABLED:
        return _unchanged(link, "attempt failed; link is disabled")
    if link.state in (State.NEEDS_USER, State.CHECKPOINT) or link.incident_started_at is None:
        new = replace(link, next_attempt_at=None)
        return Decision(link=new, note=f"attempt failed ({event.failure}); still waiting for the user")

    user_fault = event.failure is Failure.NEEDS_USER
    if link.state is State.PENDING and user_fault:
        # First connect with a dead cookie: wait for a fresh one, bother nobody.
        new = replace(link, incident_started_at=None, next_slot=0, next_attempt_at=None)
        return Decision(link=new, note="cookie refused on first connect: waiting for a fresh cookie")

    next_slot = link.next_slot + 1 if event.scheduled else link.next_slot
    # The slot an out-of-schedule attempt did not consume may be in the past by now.
    due = slot_due_at(link, next_slot, config)
    alert = None
    if event.failure is Failure.CONFIGURATION:
        alert = "Unipile rejects our credentials or configuration"

    if next_slot <= config.retry_count:
        new = replace(link, next_slot=next_slot, next_attempt_at=max(due, now) if not event.scheduled else due)
        return Decision(link=new, alert=alert,
                        note=f"attempt failed ({event.failure}); next scheduled attempt {next_slot + 1} "
                             f"of {config.retry_count + 1}")

    # Every scheduled attempt is spent.
    if user_fault:
        return _give_up(link, "the cookie keeps being refused: asking the user to reconnect")
    age_limit = link.incident_started_at + config.max_incident_age
    if due <= age_limit:
        new = replace(link, next_slot=next_slot, next_attempt_at=due)
        return Decision(link=new, alert=alert or f"reconnect still failing for Unipile/LinkedIn reasons ({event.failure})",
                        note=f"attempt failed ({event.failure}), not the user's fault: keeping the cadence")
    if link.state is State.PENDING:
        new = replace(link, incident_started_at=None, next_slot=0, next_attempt_at=None)
        return Decision(link=new, alert="first connect failed for Unipile/LinkedIn reasons until the maximum age",
                        note="gave up the first connect at the maximum age: waiting for a fresh cookie")
    return replace(_give_up(link, "still failing at the maximum incident age: asking the user to reconnect"),
                   alert="incident reached its maximum age")


def _give_up(link: Link, note: str) -> Decision:
    new = replace(link, state=State.NEEDS_USER, next_attempt_at=None)
    return Decision(link=new, email=Email.GAVE_UP, note=note)


def _on_staff(link: Link, event: StaffAction, now: datetime) -> Decision:
    match event.action:
        case "disable":
            if link.state is State.DISABLED:
                return _unchanged(link, "already disabled")
            return _close(link, State.DISABLED, "disabled by staff")
        case "enable":
            if link.state is not State.DISABLED:
                return _unchanged(link, "not disabled")
            if not link.has_cookie:
                return _close(link, State.PENDING, "enabled by staff; waiting for a cookie")
            state = State.RECONNECTING if link.has_account else State.PENDING
            return _open_incident(link, state, now, "enabled by staff: trying the newest cookie")
        case "stop":
            if link.next_attempt_at is None:
                return _unchanged(link, "no retries scheduled")
            return Decision(link=replace(link, next_attempt_at=None), note="retries stopped by staff")
        case "retry":
            if link.state is State.DISABLED or not link.has_cookie:
                return _unchanged(link, "nothing to retry with")
            if link.state in (State.CONNECTED, State.NEEDS_USER, State.CHECKPOINT):
                if link.state is State.CONNECTED or link.incident_started_at is None:
                    return _open_incident(link, link.state if link.state is not State.CONNECTED
                                          else State.RECONNECTING, now, "retry requested by staff")
                return Decision(link=replace(link, next_attempt_at=now), attempt_now=True,
                                note="retry requested by staff")
            if link.incident_started_at is None:
                return _open_incident(link, link.state, now, "retry requested by staff")
            return Decision(link=replace(link, next_attempt_at=now), attempt_now=True,
                            note="retry requested by staff")
    raise ValueError(f"unknown staff action {event.action!r}")
