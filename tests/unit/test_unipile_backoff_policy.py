"""The instance's backoff from Unipile, as a table: every gate state x every answer."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cookiesync.domain.unipile_backoff import policy as b

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
S = timedelta(seconds=1)
CFG = b.Config(burst=3, window=10 * S, first_pause=2 * S, max_pause=60 * S)

GATES = {
    "quiet": b.Gate(),
    "one 429": b.Gate(recent=((T0 - S, None),)),
    "two 429s": b.Gate(recent=((T0 - 2 * S, 7 * S), (T0 - S, None))),
    "two old 429s": b.Gate(recent=((T0 - 20 * S, None), (T0 - 15 * S, None))),  # out of the window
    "paused": b.Gate(paused_until=T0 + 5 * S, streak=1),
    "pause over, streak 1": b.Gate(paused_until=T0 - S, streak=1, recent=((T0 - S, None), (T0 - S, None))),
    "pause over, streak 6": b.Gate(paused_until=T0 - S, streak=6, recent=((T0 - S, None), (T0 - S, None))),
}
EVENTS = {"429": b.RateLimited(), "429 Retry-After 30 s": b.RateLimited(30 * S),
          "429 Retry-After 1 h": b.RateLimited(3600 * S), "answer": b.Answered()}

# (gate, event) -> (paused for, from T0, afterwards; a pause started?). Why, beside each.
TABLE = {
    ("quiet", "429"): (0 * S, False),                     # one 429 is that link's business
    ("quiet", "429 Retry-After 30 s"): (0 * S, False),
    ("quiet", "429 Retry-After 1 h"): (0 * S, False),
    ("quiet", "answer"): (0 * S, False),
    ("one 429", "429"): (0 * S, False),                   # two in the window: not yet a burst
    ("one 429", "429 Retry-After 30 s"): (0 * S, False),
    ("one 429", "429 Retry-After 1 h"): (0 * S, False),
    ("one 429", "answer"): (0 * S, False),
    ("two 429s", "429"): (7 * S, True),                   # a burst: the longest Retry-After in it (7 s > 2 s)
    ("two 429s", "429 Retry-After 30 s"): (30 * S, True),
    ("two 429s", "429 Retry-After 1 h"): (60 * S, True),  # capped at max_pause
    ("two 429s", "answer"): (0 * S, False),               # Unipile answers again: the count starts over
    ("two old 429s", "429"): (0 * S, False),              # the old ones fell out of the window
    ("two old 429s", "429 Retry-After 30 s"): (0 * S, False),
    ("two old 429s", "429 Retry-After 1 h"): (0 * S, False),
    ("two old 429s", "answer"): (0 * S, False),
    ("paused", "429"): (5 * S, False),                    # a call from before the pause: pause unchanged
    ("paused", "429 Retry-After 30 s"): (30 * S, False),  # ... unless its Retry-After is later
    ("paused", "429 Retry-After 1 h"): (60 * S, False),   # (capped)
    ("paused", "answer"): (5 * S, False),                 # an answer does not end a pause in force
    ("pause over, streak 1", "429"): (4 * S, True),       # the second burst in a row: twice as long
    ("pause over, streak 1", "429 Retry-After 30 s"): (30 * S, True),
    ("pause over, streak 1", "429 Retry-After 1 h"): (60 * S, True),
    ("pause over, streak 1", "answer"): (0 * S, False),
    ("pause over, streak 6", "429"): (60 * S, True),      # 2 s * 2**6 = 128 s: capped
    ("pause over, streak 6", "429 Retry-After 30 s"): (60 * S, True),
    ("pause over, streak 6", "429 Retry-After 1 h"): (60 * S, True),
    ("pause over, streak 6", "answer"): (0 * S, False),
}


def test_the_table_covers_every_pair() -> None:
    assert set(TABLE) == {(g, e) for g in GATES for e in EVENTS}


@pytest.mark.parametrize("gate,event", sorted(TABLE))
def test_every_gate_answer_pair(gate: str, event: str) -> None:
    d = b.decide(GATES[gate], EVENTS[event], T0, CFG)
    want_pause, want_started = TABLE[gate, event]
    assert b.paused_for(d.gate, T0) == want_pause, d.note
    assert d.pause_started is want_started, d.note
    assert d.note
    if isinstance(EVENTS[event], b.Answered) and not b.paused_for(GATES[gate], T0):
        assert d.gate.streak == 0 and d.gate.recent == ()


def test_a_stream_of_429s_pauses_doubling_and_an_answer_resets_the_doubling() -> None:
    gate, now, pauses = b.Gate(), T0, []
    for _ in range(4):
        for _ in range(3):
            d = b.decide(gate, b.RateLimited(), now, CFG)
            gate = d.gate
        assert d.pause_started
        pauses.append(b.paused_for(gate, now))
        now = gate.paused_until  # the first calls after the pause meet 429s again
    assert pauses == [2 * S, 4 * S, 8 * S, 16 * S]
    gate = b.decide(gate, b.Answered(), now, CFG).gate
    for _ in range(3):
        gate = b.decide(gate, b.RateLimited(), now, CFG).gate
    assert b.paused_for(gate, now) == 2 * S
