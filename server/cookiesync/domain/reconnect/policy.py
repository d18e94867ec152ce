"""The reconnect policy: link state and one event in, one decision out.

Pure on purpose: no clock (``now`` is passed in), no database, no network.
Everything the service does about a link's connection is decided here and
carried out elsewhere (``domain/reconnect/services.py``), so every rule of the
retry table in the design can be tested as a table.

Schedule. An incident opens at ``T0``. Scheduled attempts ("slots") are due at
``T0 + k * interval`` for k = 0..retry_count. An attempt made out of schedule
(a fresh cookie, staff "retry now") does not consume a slot and never moves T0;
nor does an attempt Unipile refused with 429 (rate limited: LinkedIn was never asked), which
waits at least its ``Retry-After`` and never emails anyone.

A connected link whose account Unipile reports ``CONNECTING`` gets a watch: ``next_attempt_at``
set ``connecting_grace`` ahead while the state stays ``connected`` and no incident is open (no
other connected link has a ``next_attempt_at``). Any up message clears it; if it is still there
when due, the sweep sends ``ConnectingLasted`` and an incident opens as for ``CREDENTIALS``.

What it will not do: call Unipile, read the clock, or look at HTTP codes (the client sorts those
into a ``Failure`` and says whether the answer was a rate limit); nor pace the whole instance
when Unipile rate limits it (domain/unipile_backoff/policy.py does that).
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


# Every account-status message Unipile v1 sends (contract §6) and every `sources[].status` of an
# account (§4), which is how PERMISSIONS comes in. What each does is `_on_webhook`'s table; any
# other message is recorded in the history and changes nothing.
V1_STATUSES = ("OK", "CREDENTIALS", "ERROR", "STOPPED", "CONNECTING", "DELETED", "CREATION_SUCCESS",
               "RECONNECTED", "SYNC_SUCCESS", "PERMISSIONS")
CONNECTED_MESSAGES = frozenset({"OK", "RECONNECTED", "SYNC_SUCCESS", "CREATION_SUCCESS"})
RESTART_MESSAGES = frozenset({"ERROR", "STOPPED"})
PERMISSIONS_ALERT = "Unipile reports PERMISSIONS: the account lacks a permission a reconnect cannot give"


@dataclass(frozen=True)
class Config:
    retry_interval: timedelta = timedelta(hours=1)
    retry_count: int = 4
    max_incident_age: timedelta = timedelta(hours=24)
    connecting_grace: timedelta = timedelta(minutes=15)  # CONNECTING this long: reconnect
    rate_limit_delay: timedelta = timedelta(minutes=1)   # after a 429 without Retry-After


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
    rate_limited: bool = False  # Unipile answered 429 (or this instance held the call back for one)
    retry_after: timedelta | None = None  # Unipile's Retry-After: no attempt before now + this


@dataclass(frozen=True)
class ConnectingLasted:
    """The sweep found a CONNECTING watch past its time (see the module docstring)."""


@dataclass(frozen=True)
class StaffAction:
    action: str  # retry | stop | disable | enable


@dataclass(frozen=True)
class MemberMismatch:
    """Unipile says the account is another LinkedIn member's than the link's, and the member check
    is enforced (domain/profile): the link stops using that cookie."""


Event = (
    CookieReceived | WebhookStatus | HostedAuthCompleted | AttemptSucceeded
    | AttemptCheckpoint | AttemptFailed | StaffAction | ConnectingLasted | MemberMismatch
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
            return _on_webhook(link, event, now, config)
        case ConnectingLasted():
            return _on_connecting_lasted(link, now, config)
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
            return _after_failure(_on_failure(link, event, now, config), event, now)
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


def _on_webhook(link: Link, event: WebhookStatus, now: datetime, config: Config) -> Decision:
    """One row per v1 message; the reason is beside each."""
    message = event.message
    if message == "DELETED":
        # The account is gone in Unipile: nothing to reconnect to. Disabled, so no attempt recreates it.
        if link.state is State.DISABLED:
            return _unchanged(link, "account deleted in Unipile (already disabled)")
        return _close(link, State.DISABLED, "account deleted in Unipile")
    if link.state is State.DISABLED:
        return _unchanged(link, f"{message} recorded; link is disabled")
    match message:
        case "OK" | "RECONNECTED" | "SYNC_SUCCESS" | "CREATION_SUCCESS":
            # The account works (CREATION_SUCCESS: created; Unipile still says wait for OK before
            # calling it, but nothing we do calls it): whatever we were doing about it is over.
            return _on_up(link, message)
        case "CREDENTIALS":
            # Unipile lost the LinkedIn session: a reconnect with the newest cookie may bring it back.
            return _on_credentials(link, now)
        case "ERROR" | "STOPPED":
            # Unipile's side is stuck or paused, the session may be fine: ask Unipile to restart it.
            if link.has_account:
                return Decision(link=link, restart_account=True, changed=False,
                                note=f"Unipile reports {message}: asking Unipile to restart the account")
            return _unchanged(link, f"{message} recorded")
        case "CONNECTING":
            # Temporary, says Unipile: leave it, but not for ever (the watch, module docstring).
            return _on_connecting(link, now, config)
        case "PERMISSIONS":
            # The session works but lacks a permission (a product, a scope): no cookie of ours
            # fixes that and the user cannot tell why, so operators hear of it; the state stays.
            return Decision(link=link, alert=PERMISSIONS_ALERT, changed=False,
                            note="Unipile reports PERMISSIONS: left as it is, operators alerted")
    # A message v1 does not document (CREATION_FAIL, a new one): kept in the history, nothing done.
    return _unchanged(link, f"{message} recorded")


def _on_up(link: Link, message: str) -> Decision:
    if link.state is not State.CONNECTED:
        return _close(link, State.CONNECTED, f"Unipile reports {message}")
    if link.next_attempt_at is not None:
        return Decision(link=replace(link, next_attempt_at=None),
                        note=f"{message}: the account is up again, the CONNECTING watch ends")
    return _unchanged(link, f"{message}: already connected")


def _disconnected(link: Link, now: datetime, note: str) -> Decision:
    """A connected account that stopped working: reconnect with the newest cookie, or ask the user."""
    if not link.has_cookie:
        new = replace(link, state=State.NEEDS_USER, incident_started_at=now, next_attempt_at=None)
        return Decision(link=new, incident_opened=True, email=Email.GAVE_UP,
                        note="disconnected and no cookie on record to reconnect with")
    return _open_incident(link, State.RECONNECTING, now, note)


def _on_credentials(link: Link, now: datetime) -> Decision:
    if link.state in (State.CONNECTED, State.PENDING) and link.has_account:
        return _disconnected(link, now, "Unipile reports the account disconnected")
    return _unchanged(link, f"CREDENTIALS while {link.state}: nothing new to do")


def _watching(link: Link) -> bool:
    return link.state is State.CONNECTED and link.incident_started_at is None and link.next_attempt_at is not None


def _on_connecting(link: Link, now: datetime, config: Config) -> Decision:
    if link.state is not State.CONNECTED or not link.has_account:
        return _unchanged(link, f"CONNECTING recorded while {link.state}: already being handled")
    if _watching(link):
        return _unchanged(link, "CONNECTING again: the first one's watch stands")
    return Decision(link=replace(link, next_attempt_at=now + config.connecting_grace),
                    note=f"Unipile reports CONNECTING: reconnecting if it lasts {config.connecting_grace}")


def _on_connecting_lasted(link: Link, now: datetime, config: Config) -> Decision:
    if not _watching(link) or link.next_attempt_at > now:
        return _unchanged(link, "no CONNECTING watch due (the account came back meanwhile)")
    return _disconnected(link, now, f"Unipile still reports CONNECTING after {config.connecting_grace}: reconnecting")


def _after_failure(decision: Decision, event: AttemptFailed, now: datetime) -> Decision:
    """Unipile's Retry-After bounds the next attempt from below; a fresher cookie that arrived
    during the call is tried at once, unless Unipile asked us to wait."""
    new = decision.link
    if event.retry_after is not None and new.next_attempt_at is not None and new.next_attempt_at < now + event.retry_after:
        decision = replace(decision, link=replace(new, next_attempt_at=now + event.retry_after),
                           note=decision.note + f"; not before Unipile's Retry-After ({event.retry_after})")
    held_back = event.rate_limited or event.retry_after is not None
    if event.newer_cookie and not held_back and decision.link.state not in (State.DISABLED, State.CONNECTED):
        return replace(decision, link=replace(decision.link, next_attempt_at=now), attempt_now=True,
                       note=decision.note + "; a fresher cookie arrived meanwhile: trying it at once")
    return decision


def _on_rate_limited(link: Link, event: AttemptFailed, now: datetime, config: Config) -> Decision:
    """LinkedIn was never asked: the slot is kept, the attempt waits, nobody is emailed."""
    at = now + (event.retry_after if event.retry_after is not None else config.rate_limit_delay)
    if link.state in (State.PENDING, State.RECONNECTING) and link.incident_started_at is not None:
        at = max(at, slot_due_at(link, link.next_slot, config))
    alert = None
    if link.incident_started_at is not None and now >= link.incident_started_at + config.max_incident_age:
        alert = "Unipile still rate limits us past the maximum incident age"
    return Decision(link=replace(link, next_attempt_at=at), alert=alert,
                    note=f"Unipile rate limits us (429): this attempt does not count, the next at {at.isoformat()}")


def _on_failure(link: Link, event: AttemptFailed, now: datetime, config: Config) -> Decision:
    if link.state is State.DISABLED:
        return _unchanged(link, "attempt failed; link is disabled")
    if event.rate_limited:
        return _on_rate_limited(link, event, now, config)
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
