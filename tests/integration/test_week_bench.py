"""A tiny seeded week (benchmarks/week): a few links over a simulated day, the real `cookiesync
serve` and the plain recipe each beside a simulator process. Checks only that the accounting adds
up: every simulated slot of every link counted once, every email classified. The figures and any
timing are the benchmark's, not this test's."""
from __future__ import annotations

from benchmarks.week import accounting, harness, rows


def test_a_tiny_week_accounts_for_every_hour_and_every_email() -> None:
    sc = harness.Scale("tiny", links=6, hours=24, hour_s=0.3, seed=5)
    arms = harness.run(sc, say=lambda m: None)
    slots = round(sc.hours / sc.slot_h)
    for name, arm in arms.items():
        led = arm.ledger()
        assert all(len(s) == slots for s in arm.samples), name
        assert sum(led.counts.values()) == sc.links * slots, name
        assert set(led.counts) <= set(accounting.CLASSES), name
        assert abs(sum(led.hours(c) for c in accounting.CLASSES) - sc.links * sc.hours) < 1e-6, name
        assert len(led.emails) == len(arm.emails), name
        assert {e[2] for e in led.emails} <= set(accounting.EMAIL_CLASSES), name
        assert sum(led.email_count(c) for c in accounting.EMAIL_CLASSES) == len(arm.emails), name
        down_slots = sum(led.counts[c] for c in accounting.CLASSES if c != "connected")
        assert abs(sum(d.hours for d in led.downs) - down_slots * sc.slot_h) < 1e-6, name
    table = rows(sc, arms)
    assert any(r.figure == "connected share of recoverable account-hours" for r in table)
