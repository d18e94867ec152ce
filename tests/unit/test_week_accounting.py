"""The week benchmark's accounting (benchmarks/week/accounting.py) on hand-made samples: every slot
falls in exactly one class, every email in exactly one class, and a disconnect is put down to the
fault before it. No timing here: the figures themselves are the benchmark's."""
from __future__ import annotations

from benchmarks.week import accounting, faults
from benchmarks.week.accounting import CONNECTED as C
from benchmarks.week.accounting import NEED_USER as N
from benchmarks.week.accounting import OUTAGE as O


def test_each_slot_and_each_email_is_counted_once_in_the_right_class() -> None:
    # link 0: down 3 slots after a session end (recoverable), back; link 1: signed out 6 slots (user
    # must act; asked from slot 3, the email's), then a slot down during an outage; link 2: connected
    samples = [bytes([C, 0, 0, 0, C, C, C, C, C, C]),
               bytes([C, N, N, N, N, N, N, O, C, C]),
               bytes([C] * 10)]
    causes = [(0.15, 0, "session ended"), (0.15, 1, "sign-out"), (0.5, 0, "rotate, seen after")]
    emails = [(0.35, 1), (0.95, 0)]
    led = accounting.account(samples, 0.1, emails, causes, act_after_h=0.4, outage_window_h=0.2)
    assert sum(led.counts.values()) == 30
    assert dict(led.counts) == {"connected": 20, "down_recoverable": 7, "down_user": 2, "down_outage": 1}
    assert abs(led.recoverable_h - 2.7) < 1e-9
    assert [(e[1], e[2]) for e in led.emails] == [(1, "needed"), (0, "unneeded")]
    assert led.precision == 0.5 and (led.episodes, led.episodes_emailed) == (1, 1)
    assert [(d.link, d.cause, round(d.hours, 1), d.censored) for d in led.downs] == [
        (0, "session ended", 0.3, False), (1, "sign-out", 0.7, False)]
    assert led.cost_by_cause == {"session ended": 3, "sign-out": 4}


def test_a_link_still_down_at_the_end_is_censored_and_unneeded_mail_in_an_outage_is_named() -> None:
    samples = [bytes([C, O, O, 0, 0])]
    led = accounting.account(samples, 1.0, [(3.5, 0)], [(0.5, 0, "outage")], outage_window_h=5)
    assert sum(led.counts.values()) == 5
    assert [e[2] for e in led.emails] == ["during_outage"]
    assert led.downs[0].censored and led.downs[0].cause == "outage"
    assert led.recall is None  # nobody had to act


def test_the_draw_is_repeatable_and_a_link_keeps_its_faults_when_links_are_added() -> None:
    a, b = faults.draw(7, 20, 168), faults.draw(7, 20, 168)
    assert a.faults == b.faults and a.ipv6 == b.ipv6
    more = faults.draw(7, 40, 168)
    mine = [f for f in a.faults if f.link == 3]
    assert mine and mine == [f for f in more.faults if f.link == 3]
    assert faults.draw(8, 20, 168).faults != a.faults
    assert all(k in faults.table_markdown() for k in faults.FAULTS)


def test_percentile_is_nearest_rank() -> None:
    assert accounting.percentile([], 0.5) is None
    assert accounting.percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert accounting.percentile(list(range(1, 101)), 0.99) == 99
