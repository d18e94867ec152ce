"""The instance's backoff from Unipile: the gate's state and one answer in, the new state out.

Pure on purpose: no clock (``now`` is passed in), no network. services.py holds one `Gate` per
instance (the Unipile client's) and asks here after every answer; so every rule can be tested
as a table.

One 429 is one link's business: the reconnect policy moves that link's next attempt (at least
its ``Retry-After``). A *burst* of them (``burst`` within ``window``) means Unipile rate limits
this API key, so every call from this instance waits: the pause is the longest ``Retry-After``
of the burst, and at least ``first_pause`` doubled for each burst in a row with no other answer
between them, all capped at ``max_pause``. Any other answer ends the streak (the next burst
pauses ``first_pause`` again) but not a pause in force: calls that were under way when the pause
began answer during it.

What it will not do: hold calls itself, see other instances (each backs off from what it sees),
or schedule any link (a held-back attempt is answered as rate limited, and the reconnect policy
schedules it at the pause's end).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Config:
    burst: int = 5
    window: timedelta = timedelta(seconds=10)
    first_pause: timedelta = timedelta(seconds=2)
    max_pause: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class Gate:
    recent: tuple[tuple[datetime, timedelta | None], ...] = ()  # the 429s in the window and their Retry-After
    paused_until: datetime | None = None
    streak: int = 0                       # bursts in a row, no other answer between them


# --- events ---------------------------------------------------------------
@dataclass(frozen=True)
class RateLimited:
    retry_after: timedelta | None = None


@dataclass(frozen=True)
class Answered:
    """Any answer but a 429 (an error too: Unipile is answering)."""


Event = RateLimited | Answered


@dataclass(frozen=True)
class Decision:
    gate: Gate
    pause_started: bool = False  # a burst: from now on calls wait until gate.paused_until
    note: str = ""


def paused_for(gate: Gate, now: datetime) -> timedelta:
    """How long a call must wait now (zero: go ahead)."""
    if gate.paused_until is None or gate.paused_until <= now:
        return timedelta(0)
    return gate.paused_until - now


def decide(gate: Gate, event: Event, now: datetime, config: Config = Config()) -> Decision:
    match event:
        case RateLimited():
            if paused_for(gate, now):
                return _during_pause(gate, event, now, config)
            return _count(gate, event, now, config)
        case Answered():
            if gate.streak == 0 and not gate.recent:
                return Decision(gate, note="answered")
            return Decision(replace(gate, recent=(), streak=0),
                            note="answered: the streak of bursts ends")
    raise TypeError(f"unknown event {event!r}")


def _during_pause(gate: Gate, event: RateLimited, now: datetime, config: Config) -> Decision:
    """A call that began before the pause answers 429 too: it may only lengthen the pause."""
    if event.retry_after is None:
        return Decision(gate, note="429 during the pause")
    until = now + min(event.retry_after, config.max_pause)
    if until <= gate.paused_until:
        return Decision(gate, note="429 during the pause; its Retry-After ends sooner")
    return Decision(replace(gate, paused_until=until), note="429 during the pause: Retry-After lengthens it")


def _count(gate: Gate, event: RateLimited, now: datetime, config: Config) -> Decision:
    recent = tuple(seen for seen in gate.recent if seen[0] > now - config.window) + ((now, event.retry_after),)
    if len(recent) < config.burst:
        return Decision(replace(gate, recent=recent), note=f"429 {len(recent)} of {config.burst} in {config.window}")
    longest = max((r for _, r in recent if r is not None), default=timedelta(0))
    pause = min(config.max_pause, max(config.first_pause * (2 ** gate.streak), longest))
    new = Gate(recent=(), paused_until=now + pause, streak=gate.streak + 1)
    return Decision(new, pause_started=True,
                    note=f"{config.burst} 429s in {config.window}: no calls to Unipile for {pause}")
