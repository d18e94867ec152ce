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


def test_a_simulator_that_cannot_start_says_why_without_the_arms_secrets(tmp_path) -> None:
    """Its port already taken, the arm's simulator exits: the error carries the end of its log (the
    work folder holding it is removed after a run), with the arm's key, token and secret fingerprinted."""
    import asyncio
    import socket

    import pytest

    from benchmarks.week import faults

    sc = harness.Scale("tiny", links=1, hours=1, hour_s=0.3, seed=5)
    arm = harness.Plain(sc, faults.draw(sc.seed, sc.links, sc.hours, start_h=0.5), tmp_path, lambda m: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", arm.sim_port))
        taken.listen()

        async def go():
            try:
                arm.start_sim("http://127.0.0.1:9/hook")
                await arm.wait_http(arm.sim_url + "/_sim/stats", timeout=30)
            finally:
                arm.stop()
                await arm.ctl.aclose()

        with pytest.raises(RuntimeError, match="a process exited") as failed:
            asyncio.run(go())
    text = str(failed.value)
    assert "address already in use" in text.lower() or "errno 98" in text.lower(), text
    log = (tmp_path / "plain.log").read_text(errors="replace")
    for secret in (arm.sim_key, arm.sim_token, arm.secret):
        assert secret not in text
    assert arm.sim_key in log  # the simulator's banner does name it: the redaction is what kept it out


def test_a_simulator_token_that_begins_with_a_dash_starts(tmp_path) -> None:
    """secrets.token_urlsafe may begin with "-": the arm still starts its simulator with it."""
    import asyncio

    from benchmarks.week import faults

    sc = harness.Scale("tiny", links=1, hours=1, hour_s=0.3, seed=5)
    arm = harness.Plain(sc, faults.draw(sc.seed, sc.links, sc.hours, start_h=0.5), tmp_path, lambda m: None)
    arm.sim_key, arm.sim_token = "-key" + arm.sim_key, "-token" + arm.sim_token
    arm.ctl.headers[harness.CONTROL] = arm.sim_token

    async def go() -> int:
        try:
            arm.start_sim("http://127.0.0.1:9/hook")
            await arm.wait_http(arm.sim_url + "/_sim/stats", {harness.CONTROL: arm.sim_token}, timeout=30)
            return (await arm.ctl.get("/_sim/stats")).status_code
        finally:
            arm.stop()
            await arm.ctl.aclose()

    assert asyncio.run(go()) == 200  # the control token it was given, not a default
