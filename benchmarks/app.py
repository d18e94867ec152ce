"""The service under test: the real app from ``create_app(settings)`` plus a few
``/_bench`` routes, served by uvicorn in its own process.

- ``POST /_bench/bare``: the limit the sync endpoint is measured against. Litestar
  decodes the same body into the same msgspec Struct (``SyncIn``) and answers 204;
  no auth, no database. Mounted in the same app, so both see the same
  middleware, settings, event loop and server.
- ``POST /_bench/bare-lane``: a second limit: the same decode and 204, answered from a
  route middleware the way the sync route's fast lane answers (no request object, no
  dependency resolution, no response object). What the sync adds over this is our code.
- ``GET /_bench/stats``: sync outcome counters (to check each mix's real share
  of changed cookies), attempt counters, cache sizes.
- ``POST /_bench/sweep``: runs one real ``scheduler.sweep.sweep(rt)`` pass and
  answers its wall time and this process's CPU time.

The only change to the real path: the per-device sync rate limiter (120/min,
an abuse guard for one browser) is replaced by the same class with a limit the
benchmark never reaches; ``check()`` still runs on every request.

Run: ``python -m benchmarks.app --settings settings.json --port P``.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time

import msgspec
from litestar import Litestar, get, post

from cookiesync.app import create_app
from cookiesync.domain.sync.schemas import SyncIn
from cookiesync.serving import uvicorn_options
from cookiesync.settings import Settings


@post("/_bench/bare", status_code=204, include_in_schema=False)
async def bare(data: SyncIn) -> None:
    return None


def _decode_and_204(app):
    """The least a sync can cost in the sync route's fast lane: read the body the same way,
    decode it into ``SyncIn``, answer 204. A second limit, beside the bare handler."""
    from cookiesync.http import read_body

    decode = msgspec.json.Decoder(SyncIn).decode

    async def lane(scope, receive, send):
        decode(await read_body(receive, [], 1 << 20))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return lane


@post("/_bench/bare-lane", status_code=204, include_in_schema=False, middleware=[_decode_and_204])
async def bare_lane(data: SyncIn) -> None:
    raise AssertionError("answered by its middleware")


def _read_rss_kb() -> dict:
    out = {}
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


class Stalls:
    """Where the event loop stalls come from: loop lag (a 5 ms ticker that overslept)
    and garbage-collector pauses, both as the longest and the count over 20 ms."""

    def __init__(self) -> None:
        self.lag_max_ms = 0.0
        self.lags_over_20ms = 0
        self.gc_max_ms = {0: 0.0, 1: 0.0, 2: 0.0}
        self.gc_over_20ms = 0
        self._gc_t0 = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
            return
        ms = (time.perf_counter() - self._gc_t0) * 1000
        gen = info.get("generation", 2)
        self.gc_max_ms[gen] = max(self.gc_max_ms[gen], ms)
        self.gc_over_20ms += ms > 20

    async def tick(self) -> None:

        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lag = (time.perf_counter() - t - 0.005) * 1000
            self.lag_max_ms = max(self.lag_max_ms, lag)
            self.lags_over_20ms += lag > 20

    def take(self) -> dict:
        out = {"lag_max_ms": round(self.lag_max_ms, 1), "lags_over_20ms": self.lags_over_20ms,
               "gc_max_ms": {k: round(v, 1) for k, v in self.gc_max_ms.items()}, "gc_over_20ms": self.gc_over_20ms}
        self.lag_max_ms, self.lags_over_20ms, self.gc_over_20ms = 0.0, 0, 0
        self.gc_max_ms = {0: 0.0, 1: 0.0, 2: 0.0}
        return out


def build(settings: Settings) -> Litestar:
    app = create_app(settings)
    rt_holder: dict = {}
    stalls = Stalls()

    async def raise_rate_limit(app_: Litestar) -> None:
        from cookiesync.caches import RateLimiter

        rt = app_.state.rt
        rt.sync_limiter = RateLimiter(limit=10**12, window_s=60)
        rt_holder["rt"] = rt
        rt.spawn(stalls.tick())

    app.on_startup.append(raise_rate_limit)

    @get("/_bench/stats", include_in_schema=False, sync_to_thread=False)
    def stats() -> dict:
        rt = rt_holder["rt"]
        reg = rt.metrics.registry

        def val(name: str, labels: dict) -> float:
            return reg.get_sample_value(name, labels) or 0.0

        attempts = {}
        for metric in rt.metrics.attempts.collect():
            for s in metric.samples:
                if s.name.endswith("_total"):
                    attempts[f"{s.labels['kind']}:{s.labels['outcome']}"] = s.value
        return {
            "pid": os.getpid(),
            "unchanged": val("cookiesync_syncs_total", {"outcome": "unchanged"}),
            "changed": val("cookiesync_syncs_total", {"outcome": "changed"}),
            "attempts": attempts,
            "attempts_made": rt.runner.attempts_made,
            "inflight": len(rt.runner.inflight),
            "caches": rt.memory(),
            "rss_kb": _read_rss_kb(),
        }

    @post("/_bench/stalls", status_code=200, include_in_schema=False, sync_to_thread=False)
    def take_stalls() -> dict:
        """Loop lag and GC pauses since the last call (and reset)."""
        return stalls.take()

    @post("/_bench/sweep", status_code=200, include_in_schema=False)
    async def run_sweep(data: dict) -> dict:
        """One real sweep pass; ``{"concurrency": C}`` first sets unipile_concurrency (as the
        setting would at start-up: the runner's semaphore and its claim window)."""
        import asyncio

        from cookiesync.scheduler.sweep import sweep

        rt = rt_holder["rt"]
        if data.get("concurrency"):
            rt.settings.unipile_concurrency = int(data["concurrency"])
            rt.runner.sem = asyncio.Semaphore(rt.settings.unipile_concurrency)
        made0 = rt.runner.attempts_made
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = await sweep(rt)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        return {"wall_s": wall, "cpu_s": cpu, "attempts": rt.runner.attempts_made - made0, "result": result}

    @post("/_bench/cache-ttl", status_code=200, include_in_schema=False, sync_to_thread=False)
    def cache_ttl(data: dict) -> dict:
        """Set the TTL of the device-token and link caches (clearing them); for the
        cold-cache figure, where every request misses as in production (one sync per
        device every ``sync_interval_s``, far longer than the TTL)."""
        rt = rt_holder["rt"]
        caches = (rt.device_cache, rt.link_cache)
        defaults = rt_holder.setdefault("default_ttls", [c.ttl for c in caches])
        for cache, default in zip(caches, defaults):
            # without ttl_s: back to each cache's own default (the figures after this one use them)
            cache.ttl = float(data["ttl_s"]) if "ttl_s" in data else default
            cache.data.clear()
        return {"ttl_s": [c.ttl for c in caches]}

    @post("/_bench/gc", status_code=200, include_in_schema=False, sync_to_thread=False)
    def collect() -> dict:
        gc.collect()
        return _read_rss_kb()

    for handler in (bare, bare_lane, stats, run_sweep, cache_ttl, collect, take_stalls):
        app.register(handler)
    return app


def app_from_settings_file():
    """For granian (it imports an app by name): settings from COOKIESYNC_BENCH_SETTINGS."""
    with open(os.environ["COOKIESYNC_BENCH_SETTINGS"], "rb") as fh:
        return build(msgspec.json.decode(fh.read(), type=Settings))


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser()
    p.add_argument("--settings", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    args = p.parse_args()
    if args.server == "granian":
        os.environ["COOKIESYNC_BENCH_SETTINGS"] = args.settings
        os.execvp(sys.executable, [sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop",
                                   "--host", "127.0.0.1", "--port", str(args.port), "--workers", "1",
                                   "--factory", "--log-level", "warning", "--no-ws",
                                   "benchmarks.app:app_from_settings_file"])
    with open(args.settings, "rb") as fh:
        settings = msgspec.json.decode(fh.read(), type=Settings)
    # Same server set-up as `cookiesync serve` (cookiesync.serving): uvicorn, one worker,
    # uvloop + httptools with head and body in one write, access log off (log_level=warning).
    # COOKIESYNC_BENCH_PLAIN_UVICORN=1: uvicorn's own protocol, for comparison.
    options = uvicorn_options(settings)
    if os.environ.get("COOKIESYNC_BENCH_PLAIN_UVICORN"):
        options.pop("http", None)
    uvicorn.run(build(settings), host="127.0.0.1", port=args.port, timeout_graceful_shutdown=5, **options)


if __name__ == "__main__":
    main()
