"""Profile the service under load: ``python -m benchmarks.profile --backend sqlite --change 0``.

Starts the benchmark service (``benchmarks.app``), pairs devices through the API,
then runs wrk against the sync endpoint while py-spy samples the server process
(``pip install py-spy``). Prints the functions with the most samples, inclusive
and self, and keeps the raw collapsed stacks (for a flame graph) in --out.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import data, load, procfs
from benchmarks.run import QUICK, SYNC, Service

SPY = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def summarize(raw: Path, top: int, focus: str) -> str:
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    out = [f"{total} samples"]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        out.append(f"--- {title} ---")
        shown = 0
        for frame, n in counter.most_common():
            if focus and focus not in frame and title == "inclusive":
                continue
            out.append(f"{n / max(1, total):6.1%}  {frame}")
            shown += 1
            if shown >= top:
                break
    return "\n".join(out)


def _due_links(svc: Service, n: int) -> None:
    """n links in due incidents, each with an account the Unipile simulator knows (as run.py does)."""
    from benchmarks.run import STUB_KEY, _keyring, set_unipile_latency

    accounts = asyncio.run(data.create_unipile_accounts(svc.stub_url, STUB_KEY,
                                                        [data.sweep_cookie(i) for i in range(n)]))
    svc.db(lambda engine: data.insert_sweep_links(engine, _keyring(svc), svc.settings.signing_secret, n, accounts))
    set_unipile_latency(svc, 100)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    p.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
    p.add_argument("--change", type=float, default=0.0, help="share of syncs carrying a new cookie")
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--rate", type=int, default=0, help="constant rate instead of wrk's maximum (req/s)")
    p.add_argument("--top", type=int, default=45)
    p.add_argument("--focus", default="", help="only frames containing this text in the inclusive list")
    p.add_argument("--out", default="profile.txt", help="raw collapsed stacks")
    p.add_argument("--sweep", type=int, default=0, metavar="N",
                   help="profile one reconnect sweep over N due links instead of sync load")
    p.add_argument("--concurrency", type=int, default=32, help="the sweep's Unipile concurrency")
    p.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL (py-spy --gil)")
    args = p.parse_args()
    if not SPY:
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="cs-profile-"))
    svc = Service(args.backend, QUICK, workdir, unipile_concurrency=args.concurrency)
    try:
        svc.start()
        svc.devices = asyncio.run(data.pair_devices(svc.url, svc.api_key, args.devices, concurrency=4))
        svc.db(data.mark_connected)
        svc.devices_file = workdir / "devices.txt"
        load.write_devices_file(svc.devices_file, svc.devices)
        if args.sweep:
            _due_links(svc, args.sweep)
        else:
            load.run_wrk(svc.url, SYNC, svc.devices_file, args.change, 2, workdir)  # warm the caches
        spy = subprocess.Popen([SPY, "record", "-p", str(svc.pid), "-d", str(args.seconds), "-r", "200",
                                "-f", "raw", "-o", args.out, "--nonblocking", "--threads"]
                               + (["--gil"] if args.gil else []),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        c0 = svc.cpu()[0]
        if args.sweep:
            stub0, threads0 = procfs.cpu_seconds(svc.stub.pid), procfs.service_thread_cpu_seconds(svc.pid)
            r = svc.http.post("/_bench/sweep", json={"concurrency": args.concurrency}, timeout=600).json()
            per = 1e3 / max(1, r["attempts"])
            threads1 = procfs.service_thread_cpu_seconds(svc.pid)
            print("server threads, CPU ms/attempt:", {k: round((v - threads0.get(k, 0.0)) * per, 2)
                                                      for k, v in threads1.items() if v - threads0.get(k, 0.0) > 0})
            res, n = f"sweep: {r['attempts']} attempts in {r['wall_s']:.1f} s", None
            print(f"server CPU {r['cpu_s'] * per:.2f} ms/attempt, Unipile simulator CPU "
                  f"{(procfs.cpu_seconds(svc.stub.pid) - stub0) * per:.2f} ms/attempt")
        elif args.rate:
            cmd = [sys.executable, "-m", "benchmarks.load", "rate", "--port", str(svc.port), "--devices",
                   str(svc.devices_file), "--change", str(args.change), "--rate", str(args.rate),
                   "--duration", str(args.seconds - 2)]
            res = subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            n = None
        else:
            threads0, kids0 = procfs.service_thread_cpu_seconds(svc.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
            r = load.run_wrk(svc.url, SYNC, svc.devices_file, args.change, args.seconds - 2, workdir)
            res, n = f"{r['rps']:.0f} req/s p50 {r['p50_us'] / 1000:.2f} ms p99 {r['p99_us'] / 1000:.2f} ms", \
                r["requests"]
            per, kids1 = 1e6 / max(1, n), resource.getrusage(resource.RUSAGE_CHILDREN)
            print("server threads, CPU µs/req:", {k: round((v - threads0.get(k, 0.0)) * per, 1)
                                                  for k, v in procfs.service_thread_cpu_seconds(svc.pid).items()
                                                  if v - threads0.get(k, 0.0) > 0})
            print(f"wrk CPU µs/req: {(kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime) * per:.1f}")
        cpu = svc.cpu()[0] - c0
        spy.wait(timeout=args.seconds + 30)
        print(res)
        if n:
            print(f"server CPU {cpu / n * 1e6:.0f} µs/req")
        print(summarize(Path(args.out), args.top, args.focus))
    finally:
        svc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda a: None
    sys.exit(main())
