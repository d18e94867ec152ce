"""Attempt throttles: a key's state and the clock in, allowed (with the state to write) or a wait out.

Pure on purpose: no clock (``now`` is passed in), no database. domain/throttle/services.py reads a
key's state, asks a rule here, and writes the state it gives back in one guarded statement
(db/throttle_sql.py); so every rule can be tested as a table.

An attempt is *reserved* before the slow check it guards (a pairing code lookup, an argon2
password check) and counts from then on: a success gives it back (`Window`) or resets the key
(`Backoff`); a failure keeps it. Counting only after the check let 300 concurrent guesses all be
checked, since none had failed yet when the others asked.

Two rules:

- ``Window(limit, window)``: at most ``limit`` attempts reserved in a fixed window that starts at
  the first one. Pairing per address (10 per 10 minutes) and staff sign-in per address, across
  all accounts (the ceiling on an address that sprays many accounts).
- ``Backoff(free, max_delay, forget_after, first_delay)``: the first ``free`` attempts go at once;
  from then on, after the n-th attempt the next one must wait first_delay * 2**(n - free) (2, 4,
  8, ... seconds), capped at ``max_delay``; the key is forgotten ``forget_after`` its last attempt. Staff sign-in per
  (account, address): it slows a guesser on that address without refusing the owner anywhere
  else, and never for longer than ``max_delay``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class State:
    """A key's row: attempts reserved since `window_start`; none allowed before `next_at`."""

    attempts: int
    window_start: datetime
    next_at: datetime | None
    expires_at: datetime       # after this the row means nothing (and may be dropped)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    state: State | None = None     # allowed: the state to write (this attempt reserved)
    retry_after_s: float = 0.0     # refused: seconds until an attempt may be allowed


def _refused(until: datetime, now: datetime) -> Decision:
    return Decision(False, retry_after_s=max(1.0, (until - now).total_seconds()))


def _live(state: State | None, now: datetime) -> State | None:
    return state if state is not None and state.expires_at > now else None


@dataclass(frozen=True)
class Window:
    limit: int
    window: timedelta

    def decide(self, state: State | None, now: datetime) -> Decision:
        state = _live(state, now)
        if state is None:
            return Decision(True, State(1, now, None, now + self.window))
        if state.attempts >= self.limit:
            return _refused(state.window_start + self.window, now)
        return Decision(True, State(state.attempts + 1, state.window_start, None, state.expires_at))


@dataclass(frozen=True)
class Backoff:
    free: int = 5
    max_delay: timedelta = timedelta(minutes=15)
    forget_after: timedelta = timedelta(hours=24)
    first_delay: timedelta = timedelta(seconds=2)   # after the free ones; doubled at each further one

    def delay_after(self, attempts: int) -> timedelta:
        """How long the next attempt waits once `attempts` are reserved."""
        if attempts < self.free:
            return timedelta(0)
        # capped before the power grows: a long-running guesser must not overflow timedelta
        return min(self.max_delay, self.first_delay * 2 ** min(attempts - self.free, 40))

    def decide(self, state: State | None, now: datetime) -> Decision:
        state = _live(state, now)
        if state is None:
            state = State(0, now, None, now)
        if state.next_at is not None and now < state.next_at:
            return _refused(state.next_at, now)
        attempts = state.attempts + 1
        delay = self.delay_after(attempts)
        return Decision(True, State(attempts, state.window_start, now + delay if delay else None,
                                    now + max(self.forget_after, delay)))
