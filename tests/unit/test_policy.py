"""The reconnect policy, table-driven: every (state, event) pair, no clock, no network."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from cookiesync.domain.reconnect import policy as p
from cookiesync.domain.reconnect.policy import Email, Failure, State

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)
CFG = p.Config(retry_interval=H, retry_count=4, max_incident_age=timedelta(hours=24),
               connecting_grace=timedelta(minutes=15), rate_limit_delay=timedelta(minutes=1))


def link(state: State, **kw) -> p.Link:
    defaults = dict(has_account=state is not State.PENDING, has_cookie=True, auto_connect=True)
    if state in (State.RECONNECTING,):
        defaults |= dict(incident_started_at=T0, next_slot=1, next_attempt_at=T0 + H)
    return p.Link(state=state, **(defaults | kw))


# Every account status (contract §4 and §6) and what it does to a link in each state, with why.
# (new state, attempt now?, email) per state comes from `expected` below; this is its table.
UP, DISCONNECTED, RESTART, WATCH, ALERT, RECORD, GONE = "up", "disconnected", "restart", "watch", "alert", "record", "gone"
STATUS_ROWS = {
    "OK": UP,                 # the account works: any incident is over
    "RECONNECTED": UP,        # Unipile reconnected it (hosted auth, its own retry)
    "SYNC_SUCCESS": UP,       # it synced, so it works
    "CREATION_SUCCESS": UP,   # created and working (we never call it before OK anyway)
    "CREDENTIALS": DISCONNECTED,  # session lost: reconnect a connected link with the newest cookie
    "ERROR": RESTART,         # Unipile's side stuck: ask it to restart the account, state kept
    "STOPPED": RESTART,       # paused (e.g. a sandbox limit): same
    "CONNECTING": WATCH,      # temporary: a connected link is watched, reconnected if it lasts
    "PERMISSIONS": ALERT,     # lacks a permission no cookie gives: operators alerted, state kept
    "DELETED": GONE,          # gone in Unipile: disabled, nothing recreates it
    "CREATION_FAIL": RECORD,  # UNCONFIRMED in v1: an unknown message, recorded only
    "SOMETHING_NEW": RECORD,  # any message v1 does not document: recorded, nothing done, no error
}

ALL_EVENTS = [
    p.CookieReceived(fresh=True), p.CookieReceived(fresh=False),
    *[p.WebhookStatus(m) for m in STATUS_ROWS],
    p.HostedAuthCompleted(), p.AttemptSucceeded(), p.AttemptCheckpoint("2FA"),
    *[p.AttemptFailed(f, scheduled=s) for f in Failure for s in (True, False)],
    *[p.AttemptFailed(Failure.TRANSIENT, scheduled=s, rate_limited=True, retry_after=r)
      for s in (True, False) for r in (None, timedelta(minutes=5))],
    *[p.StaffAction(a) for a in ("retry", "stop", "disable", "enable")],
    p.ConnectingLasted(),
    p.MemberMismatch(),
]


def test_every_v1_status_has_a_row() -> None:
    from cookiesync.simulator.state import STATUS_MESSAGES

    assert set(p.V1_STATUSES) <= set(STATUS_ROWS)
    assert set(STATUS_MESSAGES) <= set(STATUS_ROWS)  # whatever the simulator can send
    assert {m for m, row in STATUS_ROWS.items() if row == UP} == p.CONNECTED_MESSAGES
    assert {m for m, row in STATUS_ROWS.items() if row == RESTART} == p.RESTART_MESSAGES


def expected(state: State, ev) -> tuple[State, bool, Email | None]:
    """(new state, attempt now?, email) for a link in `state` at T0 + 30 min."""
    match ev:
        case p.CookieReceived(fresh=False):
            return state, False, None
        case p.CookieReceived(fresh=True):
            return state, state in (State.PENDING, State.RECONNECTING, State.NEEDS_USER, State.CHECKPOINT), None
        case p.WebhookStatus(message=m) if STATUS_ROWS[m] == GONE:
            return State.DISABLED, False, None
        case p.WebhookStatus() if state is State.DISABLED:
            return State.DISABLED, False, None
        case p.WebhookStatus(message=m) if STATUS_ROWS[m] == UP:
            return State.CONNECTED, False, None
        case p.WebhookStatus(message=m) if STATUS_ROWS[m] == DISCONNECTED:
            if state is State.CONNECTED:
                return State.RECONNECTING, True, None
            return state, False, None
        case p.WebhookStatus():  # restart, watch, alert, record: the state stays
            return state, False, None
        case p.ConnectingLasted():  # no watch on these links (see the watched-link table)
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
    if isinstance(ev, p.WebhookStatus):
        row = STATUS_ROWS[ev.message]
        live = state is not State.DISABLED
        assert decision.restart_account is (row == RESTART and live and link(state).has_account), decision.note
        assert (decision.alert == p.PERMISSIONS_ALERT) is (row == ALERT and live), decision.note
        if row == WATCH:
            watched = state is State.CONNECTED
            assert decision.link.next_attempt_at == (now + CFG.connecting_grace if watched else link(state).next_attempt_at)
        if row == RECORD:
            assert not decision.changed and decision.alert is None
    if isinstance(ev, p.AttemptFailed) and ev.rate_limited and state is not State.DISABLED:
        # a 429 keeps the slot, waits at least Retry-After (or the default delay), never emails
        wait = ev.retry_after or CFG.rate_limit_delay
        assert decision.link.next_attempt_at >= now + wait and decision.link.next_slot == link(state).next_slot


WATCHED = p.Link(State.CONNECTED, has_account=True, next_attempt_at=T0 + timedelta(minutes=15))
# a connected link whose account reported CONNECTING at T0: every status again, before the watch is due
WATCHED_ROWS = [
    # (event, new state, attempt now, next_attempt_at afterwards)
    *[(p.WebhookStatus(m), State.CONNECTED, False, None) for m in sorted(p.CONNECTED_MESSAGES)],  # up: watch ends
    (p.WebhookStatus("CREDENTIALS"), State.RECONNECTING, True, T0 + timedelta(minutes=5)),  # reconnect now
    (p.WebhookStatus("CONNECTING"), State.CONNECTED, False, WATCHED.next_attempt_at),  # the first deadline holds
    (p.WebhookStatus("ERROR"), State.CONNECTED, False, WATCHED.next_attempt_at),  # restart, watch kept
    (p.WebhookStatus("STOPPED"), State.CONNECTED, False, WATCHED.next_attempt_at),
    (p.WebhookStatus("PERMISSIONS"), State.CONNECTED, False, WATCHED.next_attempt_at),
    (p.WebhookStatus("SOMETHING_NEW"), State.CONNECTED, False, WATCHED.next_attempt_at),
    (p.WebhookStatus("DELETED"), State.DISABLED, False, None),
    (p.ConnectingLasted(), State.CONNECTED, False, WATCHED.next_attempt_at),  # not due yet
    (p.CookieReceived(fresh=True), State.CONNECTED, False, WATCHED.next_attempt_at),
    (p.StaffAction("stop"), State.CONNECTED, False, None),
    (p.StaffAction("retry"), State.RECONNECTING, True, T0 + timedelta(minutes=5)),
]


@pytest.mark.parametrize("ev,state,attempt,next_at", WATCHED_ROWS, ids=repr)
def test_a_connecting_watch_against_every_status(ev, state, attempt, next_at) -> None:
    d = p.decide(WATCHED, ev, T0 + timedelta(minutes=5), CFG)
    assert (d.link.state, d.attempt_now, d.link.next_attempt_at) == (state, attempt, next_at), d.note
    assert d.email is None


def test_connecting_that_lasts_opens_an_incident_and_reconnects() -> None:
    d = p.decide(link(State.CONNECTED), p.WebhookStatus("CONNECTING"), T0, CFG)
    assert d.link.state is State.CONNECTED and d.link.next_attempt_at == T0 + CFG.connecting_grace and d.changed
    early = p.decide(d.link, p.ConnectingLasted(), T0 + CFG.connecting_grace - timedelta(seconds=1), CFG)
    assert not early.changed and not early.attempt_now
    due = T0 + CFG.connecting_grace
    lasted = p.decide(d.link, p.ConnectingLasted(), due, CFG)
    assert lasted.link.state is State.RECONNECTING and lasted.attempt_now and lasted.incident_opened
    assert lasted.link.incident_started_at == due and lasted.email is None
    nocookie = p.decide(replace(d.link, has_cookie=False), p.ConnectingLasted(), due, CFG)
    assert nocookie.link.state is State.NEEDS_USER and nocookie.email is Email.GAVE_UP


def test_a_429_keeps_the_slot_honours_retry_after_and_never_emails() -> None:
    current = run_window([Failure.NEEDS_USER])[-1].link  # slot 1 due at T0 + 1 h
    at = current.next_attempt_at
    long_wait = p.decide(current, p.AttemptFailed(Failure.TRANSIENT, scheduled=True, rate_limited=True,
                                                  retry_after=timedelta(hours=2)), at, CFG)
    assert long_wait.link.next_attempt_at == at + timedelta(hours=2) and long_wait.link.next_slot == 1
    default = p.decide(current, p.AttemptFailed(Failure.TRANSIENT, scheduled=True, rate_limited=True), at, CFG)
    assert default.link.next_attempt_at == at + CFG.rate_limit_delay
    # a fresher cookie does not jump the queue Unipile asked for
    newer = p.decide(current, p.AttemptFailed(Failure.TRANSIENT, True, newer_cookie=True, rate_limited=True), at, CFG)
    assert not newer.attempt_now and newer.link.next_attempt_at == at + CFG.rate_limit_delay
    # 429s for ever: the window never runs out, nobody is emailed, operators hear past the maximum age
    link_now, when, decisions = current, at, []
    for _ in range(30 * 24):
        d = p.decide(link_now, p.AttemptFailed(Failure.TRANSIENT, True, rate_limited=True,
                                               retry_after=timedelta(hours=1)), when, CFG)
        decisions.append(d)
        link_now, when = d.link, d.link.next_attempt_at
    assert all(d.email is None and d.link.state is State.RECONNECTING for d in decisions)
    assert decisions[-1].alert and not decisions[0].alert


def test_retry_after_on_another_failure_bounds_the_next_attempt() -> None:
    current = run_window([Failure.NEEDS_USER])[-1].link
    at = current.next_attempt_at
    d = p.decide(current, p.AttemptFailed(Failure.TRANSIENT, scheduled=True, retry_after=timedelta(hours=3)), at, CFG)
    assert d.link.next_slot == 2 and d.link.next_attempt_at == at + timedelta(hours=3)
    short = p.decide(current, p.AttemptFailed(Failure.TRANSIENT, True, retry_after=timedelta(seconds=5)), at, CFG)
    assert short.link.next_attempt_at == T0 + 2 * H  # the cadence is later than Unipile asked


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
