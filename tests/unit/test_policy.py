"""The reconnect policy, table-driven: every (state, event) pair, no clock, no network."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from cookiesync.domain.reconnect import policy as p
from cookiesync.domain.reconnect.policy import Email, Failure, State

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)
CFG = p.Config(retry_interval=H, retry_count=4, max_incident_age=timedelta(hours=24))


def link(state: State, **kw) -> p.Link:
    defaults = dict(has_account=state is not State.PENDING, has_cookie=True, auto_connect=True)
    if state in (State.RECONNECTING,):
        defaults |= dict(incident_started_at=T0, next_slot=1, next_attempt_at=T0 + H)
    return p.Link(state=state, **(defaults | kw))


ALL_EVENTS = [
    p.CookieReceived(fresh=True), p.CookieReceived(fresh=False),
    *[p.WebhookStatus(m) for m in ("OK", "RECONNECTED", "SYNC_SUCCESS", "CREATION_SUCCESS", "CREDENTIALS",
                                   "ERROR", "STOPPED", "CONNECTING", "DELETED", "SOMETHING_NEW")],
    p.HostedAuthCompleted(), p.AttemptSucceeded(), p.AttemptCheckpoint("2FA"),
    *[p.AttemptFailed(f, scheduled=s) for f in Failure for s in (True, False)],
    *[p.StaffAction(a) for a in ("retry", "stop", "disable", "enable")],
    p.MemberMismatch(),
]


def expected(state: State, ev) -> tuple[State, bool, Email | None]:
    """(new state, attempt now?, email) for a link in `state` at T0 + 30 min."""
    match ev:
        case p.CookieReceived(fresh=False):
            return state, False, None
        case p.CookieReceived(fresh=True):
            return state, state in (State.PENDING, State.RECONNECTING, State.NEEDS_USER, State.CHECKPOINT), None
        case p.WebhookStatus(message="DELETED"):
            return State.DISABLED, False, None
        case p.WebhookStatus(message=m) if state is State.DISABLED:
            return State.DISABLED, False, None
        case p.WebhookStatus(message=m) if m in p.CONNECTED_MESSAGES:
            return State.CONNECTED, False, None
        case p.WebhookStatus(message="CREDENTIALS"):
            if state is State.CONNECTED:
                return State.RECONNECTING, True, None
            return state, False, None
        case p.WebhookStatus():
            return state, False, None
        case p.HostedAuthCompleted() | p.AttemptSucceeded():
            return (State.DISABLED if state is State.DISABLED else State.CONNECTED), False, None
        case p.AttemptCheckpoint():
            if state is State.DISABLED:
                return state, False, None
            return State.CHECKPOINT, False, (None if state is State.CHECKPOINT else Email.CHECKPOINT)
        case p.AttemptFailed():
            return state, False, None  # mid-window failures never change the state
        case p.StaffAction(action="disable") | p.MemberMismatch():
            return State.DISABLED, False, None
        case p.StaffAction(action="enable"):
            if state is State.DISABLED:
                return State.RECONNECTING, True, None
            return state, False, None
        case p.StaffAction(action="stop"):
            return state, False, None
        case p.StaffAction(action="retry"):
            if state is State.DISABLED:
                return state, False, None
            return (State.RECONNECTING if state is State.CONNECTED else state), True, None
    raise AssertionError(ev)


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("ev", ALL_EVENTS, ids=repr)
def test_every_state_event_pair(state: State, ev) -> None:
    now = T0 + timedelta(minutes=30)
    decision = p.decide(link(state), ev, now, CFG)
    want_state, want_attempt, want_email = expected(state, ev)
    assert decision.link.state is want_state, decision.note
    assert decision.attempt_now is want_attempt, decision.note
    assert decision.email == want_email, decision.note
    if decision.attempt_now:
        assert decision.link.next_attempt_at == now
    if decision.link.state in (State.CONNECTED, State.DISABLED) and state is not decision.link.state:
        assert decision.link.next_attempt_at is None and decision.link.incident_started_at is None
    assert decision.note


def run_window(failures: list[Failure], cfg: p.Config = CFG):
    """Open an incident at T0 and fail each scheduled attempt in turn; return the decisions."""
    d = p.decide(link(State.CONNECTED), p.WebhookStatus("CREDENTIALS"), T0, cfg)
    assert d.attempt_now and d.incident_opened and d.link.next_attempt_at == T0
    out = [d]
    for failure in failures:
        at = d.link.next_attempt_at
        assert at is not None
        d = p.decide(d.link, p.AttemptFailed(failure, scheduled=True), at + timedelta(seconds=2), cfg)
        out.append(d)
        if d.link.next_attempt_at is None:
            break
    return out


def test_user_class_failures_give_up_after_one_plus_four_attempts_at_the_scheduled_times() -> None:
    decisions = run_window([Failure.NEEDS_USER] * 10)
    times = [d.link.next_attempt_at for d in decisions[:-1]]
    assert times == [T0 + k * H for k in range(5)]
    last = decisions[-1]
    assert len(decisions) == 6  # incident opening + 5 failed attempts
    assert last.link.state is State.NEEDS_USER and last.email is Email.GAVE_UP
    assert sum(d.email is not None for d in decisions) == 1


def test_transient_failures_keep_the_cadence_alert_and_give_up_only_at_max_age() -> None:
    decisions = run_window([Failure.TRANSIENT] * 40)
    assert all(d.email is None for d in decisions[:-1])
    past_window = decisions[5:-1]
    assert past_window and all(d.alert for d in past_window)
    assert all(d.link.state is State.RECONNECTING for d in past_window)
    last = decisions[-1]
    assert last.link.state is State.NEEDS_USER and last.email is Email.GAVE_UP and last.alert
    # hourly attempts from T0 up to T0 + 24 h: 25 attempts in all
    assert len(decisions) - 1 == 25


def test_transient_at_the_last_slot_then_user_class_gives_up() -> None:
    decisions = run_window([Failure.NEEDS_USER] * 4 + [Failure.TRANSIENT, Failure.NEEDS_USER])
    assert decisions[5].link.state is State.RECONNECTING and decisions[5].email is None and decisions[5].alert
    assert decisions[6].link.state is State.NEEDS_USER and decisions[6].email is Email.GAVE_UP


def test_fresh_cookie_attempt_is_out_of_schedule_and_keeps_t0() -> None:
    decisions = run_window([Failure.NEEDS_USER] * 2)
    current = decisions[-1].link
    assert current.next_slot == 2 and current.next_attempt_at == T0 + 2 * H
    fresh_at = T0 + H + timedelta(minutes=20)
    d = p.decide(current, p.CookieReceived(fresh=True), fresh_at, CFG)
    assert d.attempt_now and not d.slot_attempt and d.link.incident_started_at == T0
    failed = p.decide(d.link, p.AttemptFailed(Failure.NEEDS_USER, scheduled=False), fresh_at, CFG)
    assert failed.link.next_slot == 2 and failed.link.next_attempt_at == T0 + 2 * H
    ok = p.decide(d.link, p.AttemptSucceeded(), fresh_at, CFG)
    assert ok.link.state is State.CONNECTED and ok.incident_closed and ok.link.next_attempt_at is None


def test_first_connect_user_class_failure_waits_for_a_fresh_cookie_without_email() -> None:
    d = p.decide(link(State.PENDING), p.CookieReceived(fresh=True), T0, CFG)
    assert d.attempt_now and d.incident_opened
    f = p.decide(d.link, p.AttemptFailed(Failure.NEEDS_USER, scheduled=True), T0, CFG)
    assert f.link.state is State.PENDING and f.link.next_attempt_at is None and f.email is None
    again = p.decide(f.link, p.CookieReceived(fresh=True), T0 + H, CFG)
    assert again.attempt_now


def test_first_connect_transient_failure_retries_on_the_cadence() -> None:
    d = p.decide(link(State.PENDING), p.CookieReceived(fresh=True), T0, CFG)
    f = p.decide(d.link, p.AttemptFailed(Failure.TRANSIENT, scheduled=True), T0, CFG)
    assert f.link.state is State.PENDING and f.link.next_attempt_at == T0 + H and f.email is None


def test_second_member_is_not_connected_automatically() -> None:
    d = p.decide(link(State.PENDING, auto_connect=False), p.CookieReceived(fresh=True), T0, CFG)
    assert not d.attempt_now and d.link.state is State.PENDING


def test_checkpoint_ends_retries_and_emails_once() -> None:
    decisions = run_window([Failure.NEEDS_USER])
    d = p.decide(decisions[-1].link, p.AttemptCheckpoint("IN_APP_VALIDATION"), T0 + H, CFG)
    assert d.link.state is State.CHECKPOINT and d.link.next_attempt_at is None and d.email is Email.CHECKPOINT


def test_credentials_without_a_cookie_goes_straight_to_the_user() -> None:
    d = p.decide(link(State.CONNECTED, has_cookie=False), p.WebhookStatus("CREDENTIALS"), T0, CFG)
    assert d.link.state is State.NEEDS_USER and d.email is Email.GAVE_UP and not d.attempt_now


def test_error_and_stopped_ask_for_a_restart() -> None:
    for message in ("ERROR", "STOPPED"):
        d = p.decide(link(State.CONNECTED), p.WebhookStatus(message), T0, CFG)
        assert d.restart_account and d.link.state is State.CONNECTED


def test_duplicate_credentials_during_an_incident_changes_nothing() -> None:
    current = run_window([Failure.NEEDS_USER])[-1].link
    d = p.decide(current, p.WebhookStatus("CREDENTIALS"), T0 + timedelta(minutes=5), CFG)
    assert not d.changed and d.link == current


def test_late_scheduled_attempt_after_downtime_runs_the_next_slot_at_once() -> None:
    """After a restart that missed slots, the next due slot is in the past: due now."""
    current = replace(run_window([Failure.NEEDS_USER])[-1].link)
    late = T0 + 3 * H
    d = p.decide(current, p.AttemptFailed(Failure.NEEDS_USER, scheduled=True), late, CFG)
    assert d.link.next_slot == 2 and d.link.next_attempt_at == T0 + 2 * H <= late


def test_a_fresher_cookie_during_a_failed_call_is_tried_at_once() -> None:
    current = run_window([Failure.NEEDS_USER])[-1].link
    at = current.next_attempt_at
    d = p.decide(current, p.AttemptFailed(Failure.NEEDS_USER, scheduled=True, newer_cookie=True), at, CFG)
    assert d.attempt_now and d.link.next_attempt_at == at and d.link.next_slot == 2
    gone = p.decide(p.Link(State.DISABLED), p.AttemptFailed(Failure.NEEDS_USER, True, newer_cookie=True), at, CFG)
    assert not gone.attempt_now
