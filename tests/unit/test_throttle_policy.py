"""The attempt throttles' rules, table-driven: a key's state and the clock in, allowed (and the
state to write) or the wait out. No clock, no database."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cookiesync.domain.throttle.policy import Backoff, Decision, State, Window

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
S = timedelta(seconds=1)
M = timedelta(minutes=1)
WINDOW = Window(limit=3, window=10 * M)
BACKOFF = Backoff(free=3, max_delay=15 * M, forget_after=timedelta(hours=24))
DAY = timedelta(hours=24)


def win(attempts: int, start: datetime = T0) -> State:
    return State(attempts, start, None, start + 10 * M)


def back(attempts: int, next_at: datetime | None, last: datetime = T0) -> State:
    return State(attempts, T0, next_at, last + DAY)


WINDOW_CASES = [
    # (name, state, now, expected)
    ("first attempt opens a window", None, T0, Decision(True, win(1))),
    ("second in the window", win(1), T0 + M, Decision(True, win(2))),
    ("the limit-th is allowed", win(2), T0 + M, Decision(True, win(3))),
    ("past the limit: refused until the window ends", win(3), T0 + 4 * M, Decision(False, retry_after_s=360.0)),
    ("a released slot is usable again", win(2), T0 + 9 * M, Decision(True, win(3))),
    ("refused a second before the end: waits at least 1 s", win(3), T0 + 10 * M - S / 2,
     Decision(False, retry_after_s=1.0)),
    ("a window over starts a new one", win(3), T0 + 10 * M, Decision(True, win(1, T0 + 10 * M))),
    ("an old window long over", win(9), T0 + DAY, Decision(True, win(1, T0 + DAY))),
]


@pytest.mark.parametrize("name,state,now,expected", WINDOW_CASES, ids=[c[0] for c in WINDOW_CASES])
def test_window(name, state, now, expected) -> None:
    assert WINDOW.decide(state, now) == expected


BACKOFF_CASES = [
    ("first attempt: at once, no delay after", None, T0, Decision(True, State(1, T0, None, T0 + DAY))),
    ("the free ones go at once", back(1, None), T0 + S, Decision(True, back(2, None, T0 + S))),
    ("the last free one sets a 2 s wait", back(2, None), T0, Decision(True, back(3, T0 + 2 * S))),
    ("during the wait: refused, even the right password", back(3, T0 + 2 * S), T0 + S,
     Decision(False, retry_after_s=1.0)),
    ("after the wait: allowed, the next waits 4 s", back(3, T0 + 2 * S), T0 + 2 * S,
     Decision(True, back(4, T0 + 6 * S, T0 + 2 * S))),
    ("then 8 s", back(4, T0), T0, Decision(True, back(5, T0 + 8 * S))),
    ("then 2^k: the 12th waits 2^10 s, capped at 15 min", back(11, T0), T0, Decision(True, back(12, T0 + 15 * M))),
    ("a long-running guesser stays at the cap", back(10_000, T0), T0, Decision(True, back(10_001, T0 + 15 * M))),
    ("refused with the time left", back(12, T0 + 15 * M), T0 + 5 * M, Decision(False, retry_after_s=600.0)),
    ("forgotten a day after the last attempt", back(12, T0 + 15 * M, T0), T0 + DAY,
     Decision(True, State(1, T0 + DAY, None, T0 + 2 * DAY))),
]


@pytest.mark.parametrize("name,state,now,expected", BACKOFF_CASES, ids=[c[0] for c in BACKOFF_CASES])
def test_backoff(name, state, now, expected) -> None:
    assert BACKOFF.decide(state, now) == expected


def test_backoff_delays_double_then_cap() -> None:
    delays = [BACKOFF.delay_after(n).total_seconds() for n in range(1, 15)]
    assert delays == [0, 0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]
