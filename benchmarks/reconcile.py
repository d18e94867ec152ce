"""Reconciliation figures (issue 15 §2): one pass over N links (1,000,000 in the full run) with
Unipile at 100 ms a call, while the sync ingest runs.

The links are made by SQL as the scale figures make theirs (`data.bulk_links`: link n is 90%
connected, 5% needs_user, 3% reconnecting, 2% disabled, by n % 100, account `bulk-acc-<n>`). The
simulator gets the same accounts in one control call (`/_sim/accounts/bulk`), each in the status
its link's state implies (needs_user and reconnecting: CREDENTIALS, the others OK), so the listing
agrees with the links but for what `seed_unipile` then changes without a webhook: 1 connected link
in 1,000 turned CREDENTIALS (a lost webhook) and 1 in 10,000 deleted. A pass must find exactly
those: each CREDENTIALS as a drift, each deleted one absent, 404 by id and disabled.

The pass runs in a process of its own (`python -m benchmarks.reconcile --settings F`: the
service's runtime and `domain/reconcile/services.reconcile`), as the prune runs beside the ingest
in benchmarks/retention.py; its CPU is that process's during the pass (user + system, all its
threads, from getrusage), its Unipile
calls the pass's own count (pages + GETs by id), checked against the simulator's.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "bulk-acc-"  # data.bulk_links's account ids
LOST_EVERY, LOST_AT = 1000, 7         # n % 1000 == 7: a connected link (n % 100 < 90) whose CREDENTIALS was lost
DELETED_EVERY, DELETED_AT = 10_000, 1003  # n % 10,000 == 1,003: a connected link whose account was deleted
# by n % 100, as data.bulk_links gives link n its state
STATUSES = ["OK"] * 90 + ["CREDENTIALS"] * 8 + ["OK"] * 2


@dataclass
class Seeded:
    lost: list[str]      # accounts turned CREDENTIALS without a webhook
    deleted: list[str]   # accounts deleted without a webhook
    accounts: int        # accounts in the simulator


async def account_range(engine) -> tuple[int, int] | None:
    """(first, last) n of the `bulk-acc-<n>` accounts of the links."""
    async with engine.connect() as conn:
        lo, hi = (await conn.execute(sa.text(
            "SELECT min(CAST(substr(unipile_account_id, 10) AS INTEGER)), "
            "max(CAST(substr(unipile_account_id, 10) AS INTEGER)) FROM links "
            f"WHERE unipile_account_id LIKE '{PREFIX}%'"))).one()
    return None if lo is None else (lo, hi)


async def other_accounts(engine) -> list[str]:
    """The accounts of links that are not bulk ones (the paired devices'), to be listed too."""
    async with engine.connect() as conn:
        return list((await conn.execute(sa.text(
            "SELECT unipile_account_id FROM links WHERE unipile_account_id IS NOT NULL "
            f"AND unipile_account_id NOT LIKE '{PREFIX}%'"))).scalars())


def _ranges(account_ids: list[str]) -> dict[str, tuple[int, int]]:
    """{prefix: (lowest, highest number)} of ids that end in a number (`bench-acc-17`)."""
    out: dict[str, tuple[int, int]] = {}
    for account_id in account_ids:
        m = re.fullmatch(r"(.*?)([0-9]+)", account_id)
        if m:
            lo, hi = out.get(m.group(1), (int(m.group(2)), int(m.group(2))))
            out[m.group(1)] = (min(lo, int(m.group(2))), max(hi, int(m.group(2))))
    return out


def seed_unipile(sim_url: str, token: str, first: int, last: int, others: list[str]) -> Seeded:
    """The simulator's accounts for the links (module docstring), then the lost webhooks. `others`:
    the accounts of the other links (the paired devices'), made OK."""
    with httpx.Client(base_url=sim_url, headers={"X-Sim-Token": token}, timeout=600) as http:
        def bulk(prefix: str, lo: int, hi: int, statuses: list[str]) -> int:
            r = http.post("/_sim/accounts/bulk", json={"id_prefix": prefix, "first": lo, "count": hi - lo + 1,
                                                        "statuses": statuses})
            r.raise_for_status()
            return r.json()["accounts"]

        accounts = bulk(PREFIX, first, last, STATUSES)
        for prefix, (lo, hi) in _ranges(others).items():
            accounts = bulk(prefix, lo, hi, ["OK"])
        lost = [f"{PREFIX}{n}" for n in range(first, last + 1) if n % LOST_EVERY == LOST_AT]
        deleted = [f"{PREFIX}{n}" for n in range(first, last + 1) if n % DELETED_EVERY == DELETED_AT]
        for account_id, message in [(a, "CREDENTIALS") for a in lost] + [(a, "DELETED") for a in deleted]:
            http.post(f"/_sim/accounts/{account_id}/status",
                      json={"message": message, "webhook": False}).raise_for_status()
    return Seeded(lost, deleted, accounts - len(deleted))


def start_pass(settings_file: Path, log) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "benchmarks.reconcile", "--settings", str(settings_file)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log)


def end_pass(proc: subprocess.Popen) -> dict:
    """The pass's result, with its process's CPU seconds (`cpu_s`, user + system, all threads)."""
    out = proc.stdout.read().decode()
    proc.wait()
    for line in out.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[10:])
    raise RuntimeError(f"reconciliation pass process ended with {proc.returncode} and no result")


def verdict(result: dict, seeded: Seeded) -> tuple[bool, str]:
    """Whether the pass found exactly what was changed without a webhook, and nothing else."""
    want = {k: v for k, v in (("CREDENTIALS", len(seeded.lost)), ("DELETED", len(seeded.deleted))) if v}
    ok = (result["outcome"] == "complete" and result["drifts"] == want and result["missing"] == len(seeded.deleted)
          and result["accounts"] == seeded.accounts and result["confirm_failed"] == 0)
    return ok, f"drifts {result['drifts']} (want {want}), absent {result['missing']}, outcome {result['outcome']}"


def pass_during_ingest(ctx, svc, kind: str, n: int, mixes, wrk_run, paths, row_cls) -> list:
    """`n` links (bulk-inserted up to it), their accounts in the simulator, then the ingest's
    sync/bare req/s per mix in alternating runs while one pass runs beside it."""
    from benchmarks import data
    from benchmarks.run import STUB_CONTROL_TOKEN, set_unipile_latency
    from cookiesync.domain.reconcile.services import CONFIRMS_AT_ONCE

    cfg = ctx.cfg
    have = svc.db(data.count_links)
    if have < n:
        svc.db(data.bulk_links, have + 1, n - have)
    t = time.monotonic()
    first, last = svc.db(account_range)
    set_unipile_latency(svc, 0)
    seeded = seed_unipile(svc.stub_url, STUB_CONTROL_TOKEN, first, last, svc.db(other_accounts))
    set_unipile_latency(svc, int(cfg.latency_ms))
    pages = -(-seeded.accounts // 250)
    ctx.say(f"{kind}: reconciliation: {svc.db(data.count_links):,} links, {seeded.accounts:,} Unipile accounts, "
            f"{len(seeded.lost)} lost CREDENTIALS and {len(seeded.deleted)} deleted without a webhook "
            f"({time.monotonic() - t:.1f}s)")
    calls0 = svc.http.get(svc.stub_url + "/_sim/stats", headers={"X-Sim-Token": STUB_CONTROL_TOKEN}).json()

    def rounds(tag: str, go_on) -> dict[str, list[float]]:
        """sync/bare per round, the mixes in turn, while `go_on(round)`; a round counts when both
        of its runs ran while it held."""
        out: dict[str, list[float]] = {label: [] for label, _ in mixes}
        r = 0
        while go_on(r):
            label, change = mixes[r % len(mixes)]
            pair = {}
            for ep in (("bare", "sync") if r % 2 == 0 else ("sync", "bare")):
                pair[ep] = wrk_run(ctx, svc, paths[ep], change, cfg.run_s, seed=700 + r * 2 + (ep == "sync"))
            if go_on(r):
                out[label].append(pair["sync"]["rps"] / pair["bare"]["rps"])
                ctx.say(f"  {tag} {label:<13} sync/bare {out[label][-1]:.2f} "
                        f"({pair['sync']['rps']:,.0f} / {pair['bare']['rps']:,.0f} req/s)")
            r += 1
        return out

    without = rounds("without the pass", lambda r: r < max(1, cfg.rounds) * len(mixes))
    proc = start_pass(svc.workdir / "settings.json", svc.log)
    runs = rounds("during the pass ", lambda r: proc.poll() is None)
    result = end_pass(proc)
    ctx.say(f"{kind}: reconciliation pass: {json.dumps(result)}")
    calls1 = svc.http.get(svc.stub_url + "/_sim/stats", headers={"X-Sim-Token": STUB_CONTROL_TOKEN}).json()
    unipile_calls = calls1["calls_total"] - calls0["calls_total"]
    ok, found = verdict(result, seeded)
    # one page after the other (a cursor), then the absent accounts by id, CONFIRMS_AT_ONCE at a time
    ideal = (pages + -(-len(seeded.deleted) // CONFIRMS_AT_ONCE)) * cfg.latency_ms / 1000
    ctx.raw.setdefault(kind, {})["reconciliation pass"] = dict(result=result, ingest=runs, without=without,
                                                               unipile_calls=unipile_calls,
                                                               lost=len(seeded.lost), deleted=len(seeded.deleted))
    calls_ok = unipile_calls == result["pages"] + len(seeded.deleted) and result["pages"] == pages
    rows = [row_cls(kind, f"reconciliation pass over {n:,} links, Unipile {cfg.latency_ms:.0f} ms a call, beside the "
                          f"sync ingest",
                    f"{result['wall_s']:.0f} s wall (ideal {ideal:.0f} s: {pages:,} pages of 250 × "
                    f"{cfg.latency_ms:.0f} ms one after the other, then the absent by id); {unipile_calls:,} Unipile calls ({result['pages']:,} "
                    f"pages + {len(seeded.deleted)} by id); CPU {result['cpu_s']:.1f} s "
                    f"({result['cpu_s'] / n * 1e6:.1f} µs a link, the pass's process); {found}",
                    "every lost status found, nothing else; ≤ 1.5 × ideal; calls = pages + absent",
                    ok and calls_ok and result["wall_s"] <= 1.5 * ideal)]
    goals = {"unchanged": 0.80, "100% changed": 0.60}
    for label, _change in mixes:
        ratios = runs[label]
        med = statistics.median(ratios) if ratios else 0.0
        goal = goals.get(label, 0.60)
        base = statistics.median(without[label]) if without[label] else 0.0
        rows.append(row_cls(kind, f"ingest {label} during the reconciliation pass: sync/bare req/s",
                            f"{med:.2f} (median of {len(ratios)} rounds beside the pass"
                            + (f", lowest {min(ratios):.2f}" if ratios else "")
                            + f"; without the pass, just before: {base:.2f} over {len(without[label])})",
                            f"≥ {goal:.2f} (the ingest row's)", bool(ratios) and med >= goal))
    return rows


async def _one_pass(settings) -> dict:
    from cookiesync.domain.reconcile.services import reconcile
    from cookiesync.runtime import open_runtime

    async with open_runtime(settings, start_background=False) as rt:
        t0, c0 = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
        result = await reconcile(rt)
        c1 = resource.getrusage(resource.RUSAGE_SELF)
        return result.as_dict() | {"wall_s": time.monotonic() - t0,
                                   "cpu_s": c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime}


def main() -> None:
    import msgspec

    from cookiesync.settings import Settings

    p = argparse.ArgumentParser(description="one reconciliation pass with the service's settings")
    p.add_argument("--settings", required=True)
    args = p.parse_args()
    with open(args.settings, "rb") as fh:
        settings = msgspec.json.decode(fh.read(), type=Settings)
    # the pass alone: new cookies are the server's to write, not this process's
    settings = msgspec.structs.replace(settings, writer_process="off", scheduler="off")
    print("BENCHJSON " + json.dumps(asyncio.run(_one_pass(settings))), flush=True)


if __name__ == "__main__":
    main()
