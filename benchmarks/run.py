"""cookiesync benchmarks: ``python -m benchmarks.run [--quick] [--backends sqlite,postgres]``.

Every figure is a ratio against a limit measured in the same run, on the same
server process, or a latency/memory figure with its goal. See README
("Benchmarks") for what each row means. All traffic is to 127.0.0.1.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec

from benchmarks import data, load, procfs
from benchmarks.processes import free_port, stop_processes
from benchmarks.report import Row, print_table

ROOT = Path(__file__).resolve().parent.parent
SYNC = "/v1/extension/sync"
BARE = "/_bench/bare"
BARE_LANE = "/_bench/bare-lane"
PATHS = {"bare": BARE, "lane": BARE_LANE, "sync": SYNC}
STUB_KEY = "bench-unipile-key"
STUB_CONTROL_TOKEN = "bench-unipile-control-token"  # the simulator's X-Sim-Token (its /_sim control API)


@dataclass
class Config:
    name: str
    devices: int          # paired through the real API, hammered by the load
    run_s: int            # one wrk run
    rounds: int           # alternating bare/sync pairs per mix
    scale_rounds: int     # the same per step of the scale figures (1k, then each size in `scale`)
    warm_s: int           # warm-up per endpoint before a mix (0: none)
    rate: int             # constant-rate figure: requests/s ...
    rate_s: float         # ... for this long, per mix
    scale: list[int]      # total links for the scale figures
    sweeps: tuple   # ((N links, concurrency C), ...)
    latency_ms: float = 100.0
    budget_s: float = 1200.0
    mixes: tuple = (("unchanged", 0.0), ("10% changed", 0.1), ("100% changed", 1.0))
    cold: bool = True     # also the unchanged mix with the caches off (information)
    rate_mixes: tuple | None = None  # mixes for the steady-rate figure (None: all)
    prune_events: int = 10_000_000   # old history rows the prune deletes while the ingest runs (0: no row)
    steady_links: int = 1_000_000    # links of the retention steady-state figure (0: not run)
    steady_days: int = 30
    reconcile_links: int = 1_000_000  # links of the reconciliation pass beside the ingest (0: no row)


FULL = Config("full", devices=1000, run_s=5, rounds=3, scale_rounds=5, warm_s=1, rate=1000, rate_s=10,
              scale=[10_000, 1_000_000], sweeps=((1_000, 8), (10_000, 32)), budget_s=2700)
QUICK = Config("quick", devices=50, run_s=1, rounds=1, scale_rounds=1, warm_s=0, rate=1000, rate_s=1.5,
               scale=[10_000], sweeps=((200, 20),), budget_s=90, mixes=(("unchanged", 0.0), ("100% changed", 1.0)),
               cold=False, rate_mixes=(("unchanged", 0.0),), prune_events=100_000, steady_links=10_000,
               reconcile_links=10_000)


@dataclass
class Ctx:
    cfg: Config
    started: float = field(default_factory=time.monotonic)
    rows: list[Row] = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    def left(self) -> float:
        return self.cfg.budget_s - (time.monotonic() - self.started)

    def say(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {msg}", flush=True)




def set_unipile_latency(svc, latency_ms: int) -> None:
    """The simulator's (or stand-in's) latency per call, through its control API."""
    httpx.post(svc.stub_url + "/_sim/config", json={"latency_ms": latency_ms},
               headers={"X-Sim-Token": STUB_CONTROL_TOKEN}, timeout=5).raise_for_status()


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class PgCpuSampler:
    """CPU of the PostgreSQL backends serving our database. Backends come and go (the
    pool opens and closes overflow connections), so their CPU is sampled every 0.1 s
    and each backend's last reading is kept after it exits."""

    def __init__(self, dbname: str) -> None:
        import threading

        self.dbname, self.seen, self.running = dbname, {}, True
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._loop()), daemon=True)
        self.thread.start()

    async def _loop(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(data.PG_ADMIN_URL, timeout=5)
        try:
            while self.running:
                pids = [r["pid"] for r in await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.dbname)]
                self._read(pids)
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    def _read(self, pids) -> None:
        with self.lock:
            for pid in list(self.seen) + [p for p in pids if p not in self.seen]:
                try:
                    self.seen[pid] = procfs.user_system_seconds(pid)
                except (FileNotFoundError, ProcessLookupError):
                    pass

    def user_system(self) -> tuple[float, float]:
        with self.lock:
            pids = list(self.seen)
        self._read(pids)
        with self.lock:
            return sum(u for u, _s in self.seen.values()), sum(s for _u, s in self.seen.values())

    def total(self) -> float:
        return sum(self.user_system())

    def stop(self) -> None:
        self.running = False
        self.thread.join(timeout=2)


class Service:
    """One cookiesync (bench app) process on a database of one kind, plus its Unipile stand-in."""

    server_module = "benchmarks.app"
    server = "uvicorn"  # or "granian": the same app under the other ASGI server

    def __init__(self, kind: str, cfg: Config, workdir: Path, **overrides) -> None:
        self.kind, self.cfg, self.workdir = kind, cfg, workdir
        self.overrides = overrides
        self.procs: list[subprocess.Popen] = []
        self.pg_name: str | None = None
        self.engine = None

    def start(self) -> None:
        from cookiesync.domain.integrator.services import create_api_key
        from cookiesync.db.engine import migrate
        from cookiesync.settings import Settings, ensure_local_secrets

        if self.kind == "postgres":
            self.pg_name, url = data.pg_create_database()
        else:
            url = f"sqlite+aiosqlite:///{self.workdir / 'data' / 'cookiesync.db'}"
        self.stub_port, self.port = free_port(), free_port()
        self.stub_url = f"http://127.0.0.1:{self.stub_port}"
        self.url = f"http://127.0.0.1:{self.port}"
        settings = Settings(mode="local", data_dir=str(self.workdir / "data"), database_url=url, port=self.port,
                            public_url=self.url, unipile_dsn=self.stub_url, unipile_api_key=STUB_KEY,
                            scheduler="off", log_level="INFO")
        settings = msgspec.structs.replace(settings, **self.overrides)
        self.settings = ensure_local_secrets(settings, say=lambda m: None)
        migrate(url)
        self.api_key = asyncio.run(create_api_key(self.settings, "bench"))
        (self.workdir / "settings.json").write_bytes(msgspec.json.encode(self.settings))
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.log = open(self.workdir / "server.log", "ab")
        self.stub = subprocess.Popen([sys.executable, "-m", "benchmarks.unipile_stub", "--port", str(self.stub_port),
                                      "--api-key", STUB_KEY, "--control-token", STUB_CONTROL_TOKEN], cwd=ROOT, env=env, stdout=self.log, stderr=self.log)
        self.procs.append(self.stub)
        self.server = subprocess.Popen([sys.executable, "-m", self.server_module, "--settings",
                                        str(self.workdir / "settings.json"), "--port", str(self.port),
                                        "--server", self.server],
                                       cwd=ROOT, env=env, stdout=self.log, stderr=self.log)
        self.procs.append(self.server)
        wait_http(self.stub_url + "/_sim/stats", self.stub)
        wait_http(self.url + "/healthz", self.server)
        self.pid = self.server.pid
        if self.server_kind_has_workers():
            # granian serves from a worker process: measure that one's CPU
            kids = procfs.children(self.pid)
            if kids:
                self.pid = kids[0]
        self.http = httpx.Client(base_url=self.url, timeout=600)
        if self.pg_name:
            self.pg_sampler = PgCpuSampler(self.pg_name)

    def server_kind_has_workers(self) -> bool:
        return self.server == "granian"

    def stop(self) -> None:
        if getattr(self, "pg_sampler", None):
            self.pg_sampler.stop()
        stop_processes(self.procs, timeout=10)
        if self.pg_name:
            try:
                data.pg_drop_database(self.pg_name)
            except Exception as exc:  # pragma: no cover
                print(f"could not drop {self.pg_name}: {exc}", file=sys.stderr)

    # --- helpers ---
    def stats(self) -> dict:
        return self.http.get("/_bench/stats").json()

    def db(self, fn, *args):
        """Run `fn(engine, *args)` on a short-lived engine of our own."""
        from cookiesync.db.engine import make_engine

        async def go():
            engine = make_engine(self.settings.database)
            try:
                return await fn(engine, *args)
            finally:
                await engine.dispose()

        return asyncio.run(go())

    def cpu(self) -> tuple[float, float]:
        """(this server's CPU s, its cookie writer's included; its PostgreSQL backends' CPU s so far)."""
        split = self.cpu_split()
        return sum(split["server"]) + sum(split["child"]), sum(split["pg"])

    def cpu_split(self) -> dict[str, tuple[float, float]]:
        """(user, system) CPU s so far of the server process, its cookie writer child and its
        PostgreSQL backends."""
        return {"server": procfs.user_system_many([self.pid]),
                "child": procfs.user_system_many(procfs.children(self.pid)),
                "pg": self.pg_sampler.user_system() if self.pg_name else (0.0, 0.0)}


# --- measurements ---------------------------------------------------------------------
def measured(svc: Service, fn):
    """Run fn() and return (its result, server CPU s, pg CPU s, sync outcome counts); the counts
    also hold "split": (user, system) CPU s of the server, its writer child and PostgreSQL."""
    s0 = svc.stats()
    c0 = svc.cpu_split()
    out = fn()
    time.sleep(0.2)  # let the last group commit land inside the window
    c1 = svc.cpu_split()
    s1 = svc.stats()
    split = {k: (c1[k][0] - c0[k][0], c1[k][1] - c0[k][1]) for k in c0}
    cpu = sum(split["server"]) + sum(split["child"])
    return out, cpu, sum(split["pg"]), {"changed": s1["changed"] - s0["changed"],
                                        "unchanged": s1["unchanged"] - s0["unchanged"], "split": split}


def wrk_run(ctx: Ctx, svc: Service, path: str, change: float, seconds: int, seed: int) -> dict:
    res, cpu, pg, counts = measured(svc, lambda: load.run_wrk(svc.url, path, svc.devices_file, change, seconds,
                                                             svc.workdir, seed=seed))
    per = 1e6 / max(1, res["requests"])
    res["cpu_us"] = cpu * per
    res["pg_us"] = pg * per
    # µs per request of user and system time, by process: where the changed path's CPU goes
    res["split_us"] = {k: [u * per, s * per] for k, (u, s) in counts.pop("split").items()}
    res.update(counts)
    if path == SYNC and change > 0:
        bad = asyncio.run(data.resend_cookies(svc.url, svc.devices))
        if bad:
            ctx.say(f"  warning: {bad} non-200 while resending base cookies")
    return res


def ratio_series(ctx: Ctx, svc: Service, change: float, label: str, endpoints: tuple = tuple(PATHS),
                 rounds: int | None = None) -> dict:
    """`rounds` rounds (default: the config's) of one run per endpoint, each endpoint first in
    turn; medians per endpoint, and every run in "runs" (round k is runs[ep][k])."""
    cfg = ctx.cfg
    if cfg.warm_s:
        wrk_run(ctx, svc, BARE, change, cfg.warm_s, seed=99)
        wrk_run(ctx, svc, SYNC, change, cfg.warm_s, seed=98)
    runs: dict[str, list[dict]] = {ep: [] for ep in endpoints}
    for r in range(cfg.rounds if rounds is None else rounds):
        turn = r % len(endpoints)
        for k, ep in enumerate(endpoints[turn:] + endpoints[:turn]):  # each endpoint first in turn
            res = wrk_run(ctx, svc, PATHS[ep], change, cfg.run_s, seed=r * len(endpoints) + k)
            runs[ep].append(res)
            ctx.say(f"  {label:<28} {ep:<4} {res['rps']:8.0f} req/s  p50 {res['p50_us'] / 1000:5.2f} ms  "
                    f"p99 {res['p99_us'] / 1000:6.2f} ms  cpu {res['cpu_us']:6.1f} µs/req"
                    + (f" (+pg {res['pg_us']:.0f})" if svc.pg_name else "")
                    + (f"  non-2xx/err {res['errors']}" if res["errors"] else "")
                    + (f"  changed {res['changed'] / max(1, res['changed'] + res['unchanged']):.0%}"
                       if ep == "sync" else ""))

    def med(ep: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[ep])

    out = {k: {key: med(k, key) for key in ("rps", "p50_us", "p99_us", "cpu_us", "pg_us")} for k in runs}
    for k in runs:
        out[k]["split_us"] = {part: [statistics.median(x["split_us"][part][i] for x in runs[k]) for i in (0, 1)]
                              for part in runs[k][0]["split_us"]}
    sync_total = sum(x["changed"] + x["unchanged"] for x in runs["sync"])
    out["changed_share"] = sum(x["changed"] for x in runs["sync"]) / max(1, sync_total)
    out["errors"] = sum(x["errors"] for k in runs for x in runs[k])
    out["ratio"] = out["sync"]["rps"] / out["bare"]["rps"]
    if "lane" in runs:
        out["ratio_lane"] = out["sync"]["rps"] / out["lane"]["rps"]
    out["runs"] = runs
    return out


def rate_run(ctx: Ctx, svc: Service, change: float) -> dict:
    cfg = ctx.cfg
    cmd = [sys.executable, "-m", "benchmarks.load", "rate", "--port", str(svc.port), "--devices",
           str(svc.devices_file), "--change", str(change), "--rate", str(cfg.rate), "--duration", str(cfg.rate_s)]
    # a steady state, not the start-up: 2 s at the same rate first (not measured), so the caches
    # hold what this traffic keeps in them (after the cold-cache figure they start empty)
    subprocess.run(cmd[:-1] + ["2"], cwd=ROOT, capture_output=True, timeout=60)
    drain(svc)

    def go():
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=cfg.rate_s + 60)
        for line in proc.stdout.splitlines():
            if line.startswith("BENCHJSON "):
                return json.loads(line[10:])
        raise RuntimeError(f"rate generator failed: {proc.stderr[-800:]}")

    svc.http.post("/_bench/stalls")
    res, cpu, pg, counts = measured(svc, go)
    res["stalls"] = svc.http.post("/_bench/stalls").json()
    drain(svc)
    res["cpu_us"] = cpu / max(1, res["completed"]) * 1e6
    res["pg_us"] = pg / max(1, res["completed"]) * 1e6
    counts.pop("split")
    res.update(counts)
    if change > 0:
        asyncio.run(data.resend_cookies(svc.url, svc.devices))
    return res


def drain(svc: Service, timeout_s: float = 30) -> None:
    """Wait until the server has finished requests a load generator left behind."""
    last, deadline = None, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = svc.stats()
        now = (st["changed"], st["unchanged"])
        if now == last:
            return
        last = now
        time.sleep(0.5)


def fmt_ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def cpu_ratios(r: dict) -> list[float]:
    """Sync CPU per request over the bare endpoint's, one figure per round of a ratio series.
    The two runs of a round are seconds apart, so a slower machine meanwhile (another tenant, a
    frequency step) weighs on both alike; the bare endpoint reads no table."""
    return [s["cpu_us"] / b["cpu_us"] for s, b in zip(r["runs"]["sync"], r["runs"]["bare"])]


def scale_row(kind: str, total: int, base_links: int, r: dict, base: dict) -> Row:
    """Sync CPU per request at `total` links against `base_links`, each as a share of the bare
    endpoint's CPU: the median of the per-round shares at each size. A ratio of the two
    endpoints' medians over three rounds moved with the bare endpoint's own drift between
    steps; a median of shares each taken seconds apart cancels the drift and drops an odd round."""
    now, then = statistics.median(cpu_ratios(r)), statistics.median(cpu_ratios(base))
    growth = now / then - 1
    return Row(kind, f"sync CPU/req at {total:,} vs {base_links:,} links, relative to bare",
               f"{growth:+.1%} (sync/bare CPU {now:.3f} vs {then:.3f}, medians of {len(cpu_ratios(r))} and "
               f"{len(cpu_ratios(base))} rounds; sync {r['sync']['cpu_us']:.0f} vs {base['sync']['cpu_us']:.0f} µs, "
               f"bare {r['bare']['cpu_us']:.0f} vs {base['bare']['cpu_us']:.0f} µs)", "≤ +10%", growth <= 0.10)


def split_text(split: dict) -> str:
    """The sync's CPU by process, user + system µs per request: "server 90+25, child 40+10, pg 0+0"."""
    return ", ".join(f"{part} {u:.0f}+{s:.0f}" for part, (u, s) in split.items() if u + s >= 0.5)


def ingest_rows(kind: str, label: str, r: dict, goal: float | None, extra: str = "") -> list[Row]:
    value = (f"{r['ratio']:.2f} ({r['sync']['rps']:,.0f} / {r['bare']['rps']:,.0f} req/s; "
             f"p50 {fmt_ms(r['sync']['p50_us'])}/{fmt_ms(r['bare']['p50_us'])} ms, "
             f"p99 {fmt_ms(r['sync']['p99_us'])}/{fmt_ms(r['bare']['p99_us'])} ms; "
             f"CPU {r['sync']['cpu_us']:.0f}/{r['bare']['cpu_us']:.0f} µs/req"
             + (f" +pg {r['sync']['pg_us']:.0f}" if r['sync']['pg_us'] else "")
             + f" ({split_text(r['sync']['split_us'])})"
             + f"; {r['changed_share']:.0%} changed{extra}; "
             f"against the fast-lane decode-and-204 limit: {r['ratio_lane']:.2f} of {r['lane']['rps']:,.0f} req/s, "
             f"CPU {r['lane']['cpu_us']:.0f} µs/req)")
    if r["errors"]:
        value += f" [{r['errors']} errors]"
    ok = None if goal is None else (r["ratio"] >= goal and not r["errors"])
    return [Row(kind, f"ingest {label}: sync/bare req/s", value, f"≥ {goal:.2f}" if goal else "—", ok)]


def bench_backend(ctx: Ctx, kind: str) -> None:
    cfg = ctx.cfg
    workdir = Path(tempfile.mkdtemp(prefix=f"cs-bench-{kind}-"))
    # started with the largest sweep concurrency, as a deployment configured for it would be
    # (it sizes the Unipile client's keep-alive pool); each sweep then sets its own C
    svc = Service(kind, cfg, workdir, unipile_concurrency=max([c for _n, c in cfg.sweeps], default=8))
    ctx.say(f"== {kind}: starting service ({workdir})")
    try:
        svc.start()
        t = time.monotonic()
        svc.devices = asyncio.run(data.pair_devices(svc.url, svc.api_key, cfg.devices, concurrency=4))
        n = svc.db(data.mark_connected)
        svc.devices_file = workdir / "devices.txt"
        load.write_devices_file(svc.devices_file, svc.devices)
        ctx.say(f"{kind}: {len(svc.devices)} devices paired through the API, {n} links set connected "
                f"({time.monotonic() - t:.1f}s)")

        # 1. sync ingest, three mixes, alternating with the bare endpoint
        for label, change in cfg.mixes:
            r = ratio_series(ctx, svc, change, label)
            ctx.raw.setdefault(kind, {})[f"ingest {label}"] = r
            goal = {"unchanged": 0.80, "100% changed": 0.60}.get(label)
            ctx.rows += ingest_rows(kind, f"{label} ({len(svc.devices)} links)", r, goal)

        # 1a. the same, every request a cache miss (information: what production sees, where a
        # device syncs every sync_interval_s, far longer than the caches' TTL)
        if cfg.cold:
            svc.http.post("/_bench/cache-ttl", json={"ttl_s": 0}).raise_for_status()
            r = ratio_series(ctx, svc, 0.0, "unchanged, caches off")
            svc.http.post("/_bench/cache-ttl", json={}).raise_for_status()  # each cache back to its default
            ctx.raw.setdefault(kind, {})["ingest unchanged, caches off"] = r
            ctx.rows += ingest_rows(kind, "unchanged, every request a cache miss", r, None)

        # 1b. p99 at a steady rate
        for label, change in (cfg.mixes if cfg.rate_mixes is None else cfg.rate_mixes):
            r = rate_run(ctx, svc, change)
            ctx.raw.setdefault(kind, {})[f"rate {label}"] = r
            ctx.say(f"  {cfg.rate} req/s {label:<14} p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} max "
                    f"{r['max_ms']:.1f} ms  achieved {r['achieved_rps']:.0f}/s  statuses {r['statuses']} "
                    f"errors {r['errors']}  cpu {r['cpu_us']:.0f} µs/req  server stalls {r['stalls']}")
            ok = r["p99_ms"] < 25 and r["errors"] == 0 and r["missing"] == 0 and set(r["statuses"]) == {"200"}
            ctx.rows.append(Row(kind, f"p99 at steady {cfg.rate} req/s, {label}",
                                f"{r['p99_ms']:.1f} ms (p50 {r['p50_ms']:.1f}, max {r['max_ms']:.0f} ms; "
                                f"{r['achieved_rps']:.0f} req/s done; CPU {r['cpu_us']:.0f} µs/req)"
                                + ("" if set(r["statuses"]) == {"200"} else f" statuses {r['statuses']}"),
                                "< 25 ms", ok))

        # 1c. the retention prune of many old rows beside the ingest (benchmarks/retention.py)
        if cfg.prune_events:
            from benchmarks import retention

            ctx.rows += retention.prune_during_ingest(ctx, svc, kind, cfg.prune_events, "100% changed", 1.0, 0.60,
                                                      wrk_run, PATHS, Row)

        # 2. scale of the data: unchanged mix with more links in the table. Every step, the 1k-link
        # one included, has scale_rounds rounds, so each scale row compares medians of as many
        # per-round sync/bare CPU shares; the 1k step is measured here, just before the inserts,
        # not taken from the ingest mixes minutes earlier.
        base = None
        for total in cfg.scale:
            if ctx.left() < 120 and cfg.name == "full":
                ctx.rows.append(Row(kind, f"ingest unchanged at {total:,} links", "skipped: time budget", "≥ 0.80",
                                    False))
                continue
            if base is None:
                base = ratio_series(ctx, svc, 0.0, f"unchanged @{len(svc.devices):,}", endpoints=("bare", "sync"),
                                    rounds=cfg.scale_rounds)
                ctx.raw.setdefault(kind, {})[f"scale base @{len(svc.devices)}"] = base
            have = svc.db(data.count_links)
            t = time.monotonic()
            svc.db(data.bulk_links, have + 1, total - have)
            ctx.say(f"{kind}: bulk-inserted {total - have:,} links ({time.monotonic() - t:.1f}s); now "
                    f"{svc.db(data.count_links):,}")
            r = ratio_series(ctx, svc, 0.0, f"unchanged @{total:,}", rounds=cfg.scale_rounds)
            ctx.raw.setdefault(kind, {})[f"ingest unchanged @{total}"] = r
            ctx.rows += ingest_rows(kind, f"unchanged ({total:,} links)", r, 0.80)
            ctx.rows.append(scale_row(kind, total, len(svc.devices), r, base))

        # 2b. one reconciliation pass over every link, beside the ingest (benchmarks/reconcile.py)
        if cfg.reconcile_links:
            from benchmarks import reconcile

            try:
                ctx.rows += reconcile.pass_during_ingest(ctx, svc, kind, cfg.reconcile_links,
                                                         (("unchanged", 0.0), ("100% changed", 1.0)), wrk_run, PATHS,
                                                         Row)
            except Exception as exc:
                ctx.say(f"{kind}: reconciliation FAILED: {type(exc).__name__}: {exc}")
                ctx.rows.append(Row(kind, "reconciliation pass", f"failed: {type(exc).__name__}: {str(exc)[:120]}",
                                    "completes", False))

        # 3. reconnect sweep
        done = 0
        for n_links, conc in cfg.sweeps:
            if ctx.left() < 60 and cfg.name == "full":
                ctx.rows.append(Row(kind, f"sweep N={n_links:,} C={conc}", "skipped: time budget", "≥ 0.90", False))
                continue
            t = time.monotonic()
            set_unipile_latency(svc, 0)
            accounts = asyncio.run(data.create_unipile_accounts(
                svc.stub_url, STUB_KEY, [data.sweep_cookie(done + i) for i in range(n_links)]))
            svc.db(lambda engine: data.insert_sweep_links(engine, _keyring(svc), svc.settings.signing_secret,
                                                          n_links, accounts, start=done))
            done += n_links
            ctx.say(f"{kind}: {n_links:,} Unipile accounts and links in due incidents created "
                    f"({time.monotonic() - t:.1f}s)")
            set_unipile_latency(svc, int(cfg.latency_ms))
            res, cpu, pg, _ = measured(svc, lambda: svc.http.post("/_bench/sweep", json={"concurrency": conc}).json())
            outcome = svc.db(data.sweep_outcome)
            ideal = n_links * cfg.latency_ms / 1000 / conc
            eff = ideal / res["wall_s"]
            ctx.raw.setdefault(kind, {})[f"sweep N={n_links} C={conc}"] = dict(res, outcome=outcome, ideal_s=ideal,
                                                               proc_cpu_s=cpu, pg_cpu_s=pg)
            per = res["cpu_s"] / max(1, res["attempts"]) * 1e3
            ctx.say(f"  sweep N={n_links} C={conc}: {res['attempts']} attempts in {res['wall_s']:.1f}s "
                    f"(ideal {ideal:.1f}s) -> {eff:.2f}; cpu {per:.2f} ms/attempt; outcome {outcome}")
            all_ok = res["attempts"] == n_links and outcome.get("connected", 0) == done
            ctx.rows.append(Row(kind, f"sweep: ideal/wall, N={n_links:,}, C={conc}, Unipile 100 ms",
                                f"{eff:.2f} ({res['wall_s']:.1f} s vs ideal {ideal:.1f} s; "
                                f"{res['attempts']:,} attempts" + ("" if all_ok else f"; outcome {outcome}") + ")",
                                "≥ 0.90", eff >= 0.90 and all_ok))
            ctx.rows.append(Row(kind, f"sweep: CPU per attempt (C={conc})", f"{per:.2f} ms"
                                + (f" (+pg {pg / max(1, res['attempts']) * 1e3:.2f} ms)" if svc.pg_name else "")))

        # 4. memory after the sweep
        links_now = svc.db(data.count_links)
        mem = procfs.service_memory_kb(svc.pid)  # the cookie writer's included
        ctx.raw.setdefault(kind, {})["memory_kb"] = dict(mem, links=links_now)
        ctx.rows.append(Row(kind, f"service RSS after the sweep, {links_now:,} links",
                            f"{mem['VmRSS'] / 1024:.0f} MiB (peak {mem['VmHWM'] / 1024:.0f} MiB)"))
    except Exception as exc:
        ctx.say(f"{kind}: FAILED: {type(exc).__name__}: {exc}")
        ctx.rows.append(Row(kind, "benchmark run", f"failed: {type(exc).__name__}: {str(exc)[:120]}", "completes",
                            False))
        log = workdir / "server.log"
        if log.exists():
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
    finally:
        svc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _keyring(svc: Service):
    from cookiesync.security import KeyRing

    return KeyRing(svc.settings.encryption_keys)


def bench_servers(ctx: Ctx) -> None:
    """uvicorn vs granian serving the same app: sync (unchanged mix) and the bare endpoint."""
    try:
        import granian  # noqa: F401
    except ImportError:
        ctx.rows.append(Row("server", "uvicorn vs granian", "skipped: granian not installed", "measured", False))
        return
    results = {}
    for server in ("uvicorn", "granian"):
        workdir = Path(tempfile.mkdtemp(prefix=f"cs-bench-{server}-"))
        svc = Service("sqlite", ctx.cfg, workdir)
        svc.server = server
        ctx.say(f"== server comparison: {server} ({workdir})")
        try:
            svc.start()
            svc.devices = asyncio.run(data.pair_devices(svc.url, svc.api_key, ctx.cfg.devices, concurrency=4))
            svc.db(data.mark_connected)
            svc.devices_file = workdir / "devices.txt"
            load.write_devices_file(svc.devices_file, svc.devices)
            results[server] = ratio_series(ctx, svc, 0.0, f"unchanged under {server}", endpoints=("bare", "sync"))
        finally:
            svc.stop()
    u, g = results["uvicorn"], results["granian"]
    for ep in ("sync", "bare"):
        ctx.rows.append(Row("server", f"{ep}: granian/uvicorn req/s (sqlite, unchanged)",
                            f"{g[ep]['rps'] / u[ep]['rps']:.2f} ({g[ep]['rps']:,.0f} / {u[ep]['rps']:,.0f} req/s; "
                            f"CPU {g[ep]['cpu_us']:.0f}/{u[ep]['cpu_us']:.0f} µs/req; "
                            f"p99 {g[ep]['p99_us'] / 1000:.1f}/{u[ep]['p99_us'] / 1000:.1f} ms)", "—", None))
    ctx.raw["servers"] = {k: {ep: v[ep] for ep in ("sync", "bare")} for k, v in results.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="short smoke run (< 60 s)")
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--json", help="also write every measurement to this file")
    p.add_argument("--only", default="", help="comma-separated parts to run: ingest,cold,rate,prune,scale,reconcile,sweep,retention,servers,"
                        "console,week")
    p.add_argument("--mixes", default="", help="only the ingest mixes with these changed shares, e.g. 1.0 or 0,0.1")
    p.add_argument("--servers", action=argparse.BooleanOptionalAction, default=True,
                   help="compare uvicorn and granian (needs granian: pip install -e '.[bench]')")
    p.add_argument("--prune-events", type=int, default=0,
                   help="old rows of the prune-during-ingest figure (default: 10,000,000; --quick 100,000)")
    p.add_argument("--steady-links", type=int, default=0,
                   help="links of the retention steady state (default: 1,000,000; --quick 10,000)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-ups (servers, databases)
    cfg = QUICK if args.quick else FULL
    if args.only:
        parts = {x.strip() for x in args.only.split(",")}
        cfg = dataclasses.replace(cfg, mixes=cfg.mixes if "ingest" in parts else (),
                                  cold=cfg.cold and "cold" in parts,
                                  rate_mixes=(cfg.rate_mixes or cfg.mixes) if "rate" in parts else (),
                                  scale=cfg.scale if "scale" in parts else [],
                                  sweeps=cfg.sweeps if "sweep" in parts else (),
                                  prune_events=cfg.prune_events if "prune" in parts else 0,
                                  steady_links=cfg.steady_links if "retention" in parts else 0,
                                  reconcile_links=cfg.reconcile_links if "reconcile" in parts else 0)
        args.servers = args.servers and "servers" in parts
        args.console = "console" in parts
        args.week = "week" in parts
        backend_parts = parts - {"week", "console", "servers"}
    else:
        args.console = args.week = True
        backend_parts = {"ingest"}
        if not args.quick:
            # The retention figures at full size (10M old rows pruned beside the ingest, 1M links over
            # 30 days) take longer than the rest together: run them with --only prune,retention
            # (make bench-retention), so this run's time budget keeps every row it had.
            cfg = dataclasses.replace(cfg, prune_events=0, steady_links=0)
    if args.prune_events and cfg.prune_events:
        cfg = dataclasses.replace(cfg, prune_events=args.prune_events)
    if args.steady_links and cfg.steady_links:
        cfg = dataclasses.replace(cfg, steady_links=args.steady_links)
    if args.mixes:
        shares = {float(x) for x in args.mixes.split(",")}
        cfg = dataclasses.replace(cfg, mixes=tuple(m for m in cfg.mixes if m[1] in shares),
                                  rate_mixes=tuple(m for m in (cfg.rate_mixes or cfg.mixes) if m[1] in shares))
    if not load.wrk_path() and backend_parts | ({"servers"} if args.servers else set()):
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    ctx = Ctx(cfg)
    ctx.say(f"cookiesync benchmarks ({cfg.name}); server and load share {os.cpu_count()} cores; "
            f"Unipile: {'simulator' if _sim() else 'stand-in stub (benchmarks/unipile_stub.py)'}")
    for kind in [b.strip() for b in args.backends.split(",") if b.strip()] if backend_parts else []:
        if kind == "postgres":
            try:
                asyncio.run(data._pg_admin("SELECT 1"))
            except Exception as exc:
                ctx.rows.append(Row(kind, "benchmark run", f"PostgreSQL not reachable: {type(exc).__name__}",
                                    "completes", False))
                continue
        if ctx.left() < 30:
            ctx.rows.append(Row(kind, "benchmark run", "skipped: time budget", "completes", False))
            continue
        bench_backend(ctx, kind)
    # 4a. retention's steady state, on each backend, in databases of its own (benchmarks/retention.py)
    if cfg.steady_links:
        from benchmarks import retention

        for kind in [b.strip() for b in args.backends.split(",") if b.strip()]:
            ctx.say(f"== {kind}: retention steady state, {cfg.steady_links:,} links over {cfg.steady_days} days")
            try:
                ctx.rows += retention.steady_state(kind, cfg.steady_links, cfg.steady_days, ctx.say, Row)
            except Exception as exc:
                ctx.rows.append(Row(kind, "retention steady state", f"failed: {type(exc).__name__}: {str(exc)[:120]}",
                                    "completes", False))
    # 5. the production server: the same app under uvicorn and under granian, unchanged mix, SQLite
    if args.servers and ctx.left() > 60:
        bench_servers(ctx)
    # 6. the support console's pages over HTTP at 100k links (full run: also 1M), on each backend;
    # its own time budget (benchmarks/console.py)
    if args.console:
        from benchmarks import console

        ctx.say("== support console: page loads over HTTP (benchmarks/console.py)")
        results = console.run([b.strip() for b in args.backends.split(",") if b.strip()], quick=args.quick)
        ctx.rows += [Row(*r) for r in console.rows(results)]
        ctx.raw["console"] = console.raw(results)
    # 7. what a team buys: connected account-hours over a simulated week of faults, against the
    # plain recipe (benchmarks/week; its own time budget: --quick under a minute, full about 7 min)
    if args.week:
        from benchmarks import week

        ctx.say("== week: connected account-hours over a simulated week of faults (benchmarks/week)")
        ctx.rows += week.run_rows(args.quick, say=ctx.say)
    table = print_table(ctx.rows)
    print(f"\n## cookiesync benchmarks ({cfg.name} run, {time.monotonic() - ctx.started:.0f} s)\n")
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": [r.__dict__ for r in ctx.rows], "raw": ctx.raw},
                                              default=str, indent=1))
    misses = sum(r.ok is False for r in ctx.rows)
    print(f"\n{sum(r.ok is True for r in ctx.rows)} PASS, {misses} MISS")
    return 0


def _sim() -> bool:
    from benchmarks.unipile_stub import simulator_available

    return simulator_available()


if __name__ == "__main__":
    sys.exit(main())
