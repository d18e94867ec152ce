"""What a team buys: connected account-hours over a simulated week of real-world faults, for the
product and for the plain recipe over the same seeded faults (`python -m benchmarks.run --only week
[--quick]`, or `python -m benchmarks.week [--quick] [--seed N]`).

- `faults`: the fault table (rates and their sources) and the seeded draw of a run's faults;
- `accounting`: pure; each simulated slot of each link and each email classified, the figures;
- `plain`: the plain recipe, written only to be measured against;
- `harness`: the processes, the browsers, the clock and the sampling.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks.report import Row, print_table
from benchmarks.week import accounting, faults, harness

BACKEND = "week"
LOST = ("session ended, webhook lost", "misplaced session ended, webhook lost")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def _num(x: float | None, unit: str = "") -> str:
    return "n/a" if x is None else f"{x:.2f}{unit}"


def figures(arm: harness.Arm, led: accounting.Ledger) -> dict:
    """The compared figures of one arm; for each, higher or lower is better (see BETTER)."""
    lost = [d.hours for d in led.downs if d.cause in LOST]
    calls = arm.calls[-1] if arm.calls else 0
    per_slot = [b - a for a, b in zip([0] + arm.calls, arm.calls)]
    peak = max(per_slot, default=0) / (arm.sc.slot_h * arm.sc.hour_s)
    return {"share_recoverable": led.share_recoverable, "share_all": led.share_all,
            "precision": led.precision, "recall": led.recall,
            "outage_emails": led.email_count("during_outage"),
            "lost_p99_h": accounting.percentile(lost, 0.99),
            "calls_per_incident": calls / max(1, len(led.downs)), "peak_calls_s": peak,
            "calls": calls, "incidents": len(led.downs), "lost_n": len(lost)}


BETTER = {"share_recoverable": "higher", "share_all": "higher", "precision": "higher", "recall": "higher",
          "outage_emails": "lower", "lost_p99_h": "lower", "calls_per_incident": "lower", "peak_calls_s": "lower"}


def _beats(a, b, how: str) -> bool:
    if a is None or b is None:
        return a is None or b is not None  # no figure (nothing to measure) loses only to a real one
    return a >= b if how == "higher" else a <= b


def rows(sc: harness.Scale, arms: dict, say=print) -> list[Row]:
    led = {name: arm.ledger() for name, arm in arms.items()}
    fig = {name: figures(arms[name], led[name]) for name in arms}
    p, q = fig["product"], fig["plain"]
    lp = led["product"]
    out: list[Row] = []
    total = sum(lp.counts.values())
    out.append(Row(BACKEND, f"scale: {sc.links} links × {sc.hours:g} simulated h, 1 h = {sc.hour_s:g} s real, "
                   f"seed {sc.seed}",
                   f"{lp.total_h:,.0f} account-hours, {total:,} slots of {sc.slot_h:g} h (each counted once: "
                   f"{'yes' if total == lp.links * lp.slots else 'NO'}); {len(arms['product'].week.faults)} faults"))
    out.append(Row(BACKEND, "connected share of recoverable account-hours",
                   f"{_pct(p['share_recoverable'])} (plain {_pct(q['share_recoverable'])})", "≥ 99.5%",
                   p["share_recoverable"] >= 0.995))
    out.append(Row(BACKEND, "connected share of all account-hours",
                   f"{_pct(p['share_all'])} (plain {_pct(q['share_all'])})"))
    for name in ("product", "plain"):
        c = led[name].counts
        out.append(Row(BACKEND, f"{name}: account-hours by class",
                       ", ".join(f"{k} {c[k] * sc.slot_h:,.1f}" for k in accounting.CLASSES)))
    causes = sorted(set(led["product"].reconnect_times()) | set(led["plain"].reconnect_times()))
    for cause in causes:
        cells = []
        for name in ("product", "plain"):
            ts = led[name].reconnect_times().get(cause, [])
            open_ = sum(1 for d in led[name].downs if d.cause == cause and d.censored)
            cells.append(f"{name} p50 {_num(accounting.percentile(ts, 0.5), ' h')} p99 "
                         f"{_num(accounting.percentile(ts, 0.99), ' h')} (n {len(ts)}, {open_} still down)")
        out.append(Row(BACKEND, f"time to reconnect: {cause}", "; ".join(cells)))
    out.append(Row(BACKEND, "email precision (needed / all)",
                   f"{_num(p['precision'])} ({lp.email_count('needed')}/{len(lp.emails)}; plain "
                   f"{_num(q['precision'])}, {led['plain'].email_count('needed')}/{len(led['plain'].emails)})",
                   "≥ 0.95", p["precision"] is None or p["precision"] >= 0.95))
    out.append(Row(BACKEND, "email recall (users who had to act ≥ 4 h and were emailed)",
                   f"{_num(p['recall'])} ({lp.episodes_emailed}/{lp.episodes}; plain {_num(q['recall'])}, "
                   f"{led['plain'].episodes_emailed}/{led['plain'].episodes})",
                   "≥ 0.95", p["recall"] is None or p["recall"] >= 0.95))
    out.append(Row(BACKEND, "emails during an outage", f"{p['outage_emails']} (plain {q['outage_emails']})", "0",
                   p["outage_emails"] == 0))
    limit = 2 * harness.reconcile_interval_h()
    out.append(Row(BACKEND, "lost-webhook incidents: time back, p99",
                   f"{_num(p['lost_p99_h'], ' h')} (n {p['lost_n']}; plain {_num(q['lost_p99_h'], ' h')})",
                   f"≤ {limit:g} h (2 reconciliation intervals)",
                   p["lost_p99_h"] is None or p["lost_p99_h"] <= limit))
    out.append(Row(BACKEND, "Unipile calls per incident",
                   f"{p['calls_per_incident']:.1f} ({p['calls']} calls / {p['incidents']}; plain "
                   f"{q['calls_per_incident']:.1f}, {q['calls']} / {q['incidents']})"))
    out.append(Row(BACKEND, "peak Unipile call rate (per real s, over one slot)",
                   f"{p['peak_calls_s']:.1f}/s (plain {q['peak_calls_s']:.1f}/s)"))
    lost_to = [k for k, how in BETTER.items() if not _beats(p[k], q[k], how)]
    out.append(Row(BACKEND, "product beats the plain recipe on every figure",
                   "yes" if not lost_to else "not on: " + ", ".join(lost_to), "all", not lost_to))
    if any(r.ok is False for r in out):
        cost = lp.cost_by_cause.most_common(4)
        out.append(Row(BACKEND, "faults costing the most recoverable account-hours (product)",
                       "; ".join(f"{c} {n * sc.slot_h:,.1f} h" for c, n in cost) or "none"))
    return out


def run_rows(quick: bool, say=print, seed: int | None = None) -> list[Row]:
    sc = harness.QUICK if quick else harness.FULL
    if seed is not None:
        sc = harness.Scale(sc.name, sc.links, sc.hours, sc.hour_s, sc.slot_h, seed)
    started = time.monotonic()
    try:
        arms = harness.run(sc, say)
    except Exception as exc:
        return [Row(BACKEND, "week run", f"failed: {type(exc).__name__}: {str(exc)[:160]}", "completes", False)]
    say(f"week ({sc.name}): ran in {time.monotonic() - started:.0f} s")
    return rows(sc, arms, say)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.week", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--faults", action="store_true", help="print the fault table (Markdown) and stop")
    args = ap.parse_args(argv)
    if args.faults:
        print(faults.table_markdown())
        return 0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=harness.ROOT).stdout.strip()
    out = run_rows(args.quick, seed=args.seed)
    print(f"\n## week benchmark (commit {commit})\n")
    print(print_table(out))
    print(f"\n{sum(r.ok is True for r in out)} PASS, {sum(r.ok is False for r in out)} MISS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
