"""The reconciliation policy, table-driven: every link state × every observation, and the
decision each must give; then what the decided event does in the reconnect policy, and the
safety valve. No clock, no network."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cookiesync.domain.reconcile import policy as rp
from cookiesync.domain.reconcile.policy import Absent, Action, ConfirmFailed, Listed, NotFound
from cookiesync.domain.reconnect import policy as p
from cookiesync.domain.reconnect.policy import State

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)

# The link states the table covers: every State, the connected one with and without a CONNECTING watch.
LINKS = {
    "connected": p.Link(State.CONNECTED, has_account=True),
    "connected+watch": p.Link(State.CONNECTED, has_account=True, next_attempt_at=T0 + timedelta(minutes=5)),
    "pending": p.Link(State.PENDING, has_account=True),
    "reconnecting": p.Link(State.RECONNECTING, has_account=True, incident_started_at=T0, next_slot=1,
                           next_attempt_at=T0 + timedelta(hours=1)),
    "needs_user": p.Link(State.NEEDS_USER, has_account=True, incident_started_at=T0),
    "checkpoint": p.Link(State.CHECKPOINT, has_account=True, incident_started_at=T0),
    "disabled": p.Link(State.DISABLED, has_account=True),
}
OBSERVATIONS = {**{s: Listed(s) for s in rp.LISTED_STATUSES}, "UNKNOWN_LATER": Listed("UNKNOWN_LATER"),
                "absent": Absent(), "404": NotFound(), "confirm failed": ConfirmFailed()}

N, C = "nothing", "confirm"  # else: the webhook message sent as the event
# rows: observation; columns: LINKS in order. The reason for each row is in the policy beside it.
TABLE = {
    #                 connected      +watch        pending        reconnecting needs_user  checkpoint  disabled
    "OK":            (N,             "OK",         "OK",          "OK",        "OK",       "OK",       N),
    "CREDENTIALS":   ("CREDENTIALS", "CREDENTIALS", "CREDENTIALS", N,          N,          N,          N),
    "ERROR":         ("ERROR",       "ERROR",      N,             N,           N,          N,          N),
    "STOPPED":       ("STOPPED",     "STOPPED",    N,             N,           N,          N,          N),
    "PERMISSIONS":   ("PERMISSIONS", "PERMISSIONS", N,            N,           N,          N,          N),
    "CONNECTING":    ("CONNECTING",  N,            N,             N,           N,          N,          N),
    "UNKNOWN_LATER": (N,             N,            N,             N,           N,          N,          N),
    "absent":        (C,             C,            C,             C,           C,          C,          N),
    "404":           ("DELETED",     "DELETED",    "DELETED",     "DELETED",   "DELETED",  "DELETED",  N),
    "confirm failed": (N,            N,            N,             N,           N,          N,          N),
}


def test_the_table_covers_every_state_and_observation() -> None:
    assert set(TABLE) == set(OBSERVATIONS)
    assert {link.state for link in LINKS.values()} == set(State)
    assert all(len(row) == len(LINKS) for row in TABLE.values())


CASES = [(obs, name, TABLE[obs][i]) for obs in TABLE for i, name in enumerate(LINKS)]


@pytest.mark.parametrize(("obs", "name", "want"), CASES, ids=[f"{o}-{n}" for o, n, _ in CASES])
def test_decision(obs: str, name: str, want: str) -> None:
    d = rp.decide(LINKS[name], OBSERVATIONS[obs])
    assert d.note
    if want == N:
        assert d.action is Action.NOTHING and d.event is None
    elif want == C:
        assert d.action is Action.CONFIRM and d.event is None
    else:
        assert d.action is Action.EVENT and d.event == p.WebhookStatus(want)


@pytest.mark.parametrize(("obs", "name", "want"), [c for c in CASES if c[2] not in (N, C)],
                         ids=[f"{o}-{n}" for o, n, w in CASES if w not in (N, C)])
def test_every_drift_changes_something_in_the_reconnect_policy(obs: str, name: str, want: str) -> None:
    """A drift is never a no-op once the reconnect policy has it: the state, the watch, a restart
    or an alert. So the listing is only acted on where the webhook would have done something."""
    d = p.decide(LINKS[name], rp.decide(LINKS[name], OBSERVATIONS[obs]).event, T0)
    assert d.changed or d.restart_account or d.alert


def test_a_lost_credentials_reconnects_and_a_confirmed_404_disables() -> None:
    lost = p.decide(LINKS["connected"], rp.decide(LINKS["connected"], Listed("CREDENTIALS")).event, T0)
    assert lost.link.state is State.RECONNECTING and lost.attempt_now and lost.incident_opened
    gone = p.decide(LINKS["reconnecting"], rp.decide(LINKS["reconnecting"], NotFound()).event, T0)
    assert gone.link.state is State.DISABLED and not gone.attempt_now


def test_a_link_without_an_account_is_never_compared() -> None:
    for state in State:
        for obs in OBSERVATIONS.values():
            assert rp.decide(p.Link(state, has_account=False), obs).action is Action.NOTHING


@pytest.mark.parametrize(("sources", "status"), [
    ([], None), (["OK"], "OK"), (["OK", "CREDENTIALS"], "CREDENTIALS"), (["CONNECTING", "OK"], "CONNECTING"),
    (["STOPPED", "ERROR"], "ERROR"), (["PERMISSIONS", "OK"], "PERMISSIONS"), (["NEW"], "NEW"), (["NEW", "OK"], "OK"),
])
def test_account_status_is_its_worst_source(sources, status) -> None:
    assert rp.account_status(sources) == status


CFG = rp.Config(missing_max_share=0.10, missing_floor=10)


@pytest.mark.parametrize(("missing", "linked", "trips"), [
    (0, 0, False),            # nothing missing
    (1, 5, False),            # one deletion in a small installation: 20%, but under the floor
    (10, 10, False),          # the floor itself is believed
    (11, 10_000, False),      # 0.11%: deletions
    (1_000, 10_000, False),   # exactly the share: believed
    (1_001, 10_000, True),    # past it: not believed
    (11, 11, True),           # every account of a small one missing: a wrong key or workspace
    (500_000, 1_000_000, True),
])
def test_valve(missing: int, linked: int, trips: bool) -> None:
    assert rp.valve(missing, linked, CFG) is trips
