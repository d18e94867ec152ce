"""Load generators, each in its own process, on loopback only.

- ``run_wrk``: maximum throughput. wrk (Debian's) with a Lua script that cycles
  through the paired devices (token + member id + current cookie), so every
  request is a different device; a share of requests (``change``) carries a
  cookie never sent before. One wrk thread, 64 keep-alive connections.
- ``python -m benchmarks.load rate ...``: a constant-rate (open-loop) generator
  in Python asyncio over raw sockets with keep-alive connections. Requests are
  sent on a fixed schedule whatever the server does; each latency is measured
  from the request's *scheduled* time, so a stalled server is not hidden
  (no coordinated omission). New connections are opened when all are busy.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
LI_A = "AQJ2V0FfdHlwZV9wcmVtaXVtX3Rva2VuX2Zvcl9zYWxlc19uYXZpZ2F0b3JfYmVuY2htYXJr"
EXT_VERSION = "1.4.2"


def base_cookie(i: int) -> str:
    """A li_at-shaped cookie (~320 printable ASCII chars), distinct per device; the body is ~600 bytes."""
    seed = f"{i:08d}"
    return "AQEDAR" + (seed + "xYz-_Q7w") * 39


def sync_body(li_at: str, plain_id: str) -> bytes:
    return json.dumps({"li_at": li_at, "li_a": LI_A, "user_agent": USER_AGENT, "plain_id": plain_id,
                       "extension_version": EXT_VERSION}, separators=(",", ":")).encode()


def write_devices_file(path: Path, devices: list[tuple[str, str, str]]) -> None:
    """One line per device: token, plain_id, current li_at."""
    path.write_text("".join(f"{t} {p} {c}\n" for t, p, c in devices))


LUA = r"""
local devices, cur = {}, {}
local n, idx, counter = 0, 0, 0
local path, change, salt = "/", 0.0, "x"
local UA = "__UA__"
local LIA = "__LIA__"

function init(args)
  path = args[1]
  change = tonumber(args[2])
  salt = args[4]
  math.randomseed(tonumber(args[5]))
  for line in io.lines(args[3]) do
    local tok, pid, liat = line:match("^(%S+) (%S+) (%S+)$")
    if tok then
      n = n + 1
      devices[n] = {pid = pid, auth = "Bearer " .. tok}
      cur[n] = liat
    end
  end
  idx = math.random(n) - 1
end

function request()
  idx = idx % n + 1
  local d = devices[idx]
  if change >= 1 or (change > 0 and math.random() < change) then
    counter = counter + 1
    cur[idx] = "AQEDAR" .. salt .. "n" .. counter .. "-" .. string.rep("cHg-", 76)
  end
  local body = '{"li_at":"' .. cur[idx] .. '","li_a":"' .. LIA .. '","user_agent":"' .. UA ..
               '","plain_id":"' .. d.pid .. '","extension_version":"__VER__"}'
  return wrk.format("POST", path, {["Authorization"] = d.auth, ["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests":%d,"duration_us":%d,"connect_err":%d,"read_err":%d,' ..
    '"write_err":%d,"status_err":%d,"timeout_err":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
""".replace("__UA__", USER_AGENT).replace("__LIA__", LI_A).replace("__VER__", EXT_VERSION)


def wrk_path() -> str | None:
    return shutil.which("wrk")


def run_wrk(url: str, path: str, devices_file: Path, change: float, duration_s: float, workdir: Path,
            connections: int = 64, threads: int = 1, seed: int = 1) -> dict:
    script = workdir / "sync.lua"
    if not script.exists():
        script.write_text(LUA)
    salt = f"r{os.getpid()}x{time.monotonic_ns() % 10**9}"
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--timeout", "5s",
           "-s", str(script), url, "--", path, str(change), str(devices_file), salt, str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 30)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            out = json.loads(line[len("BENCHJSON "):])
            out["rps"] = out["requests"] / (out["duration_us"] / 1e6)
            out["errors"] = sum(out[k] for k in ("connect_err", "read_err", "write_err", "status_err", "timeout_err"))
            return out
    raise RuntimeError(f"wrk gave no result: {proc.stdout[-500:]} {proc.stderr[-500:]}")


# --- constant-rate generator --------------------------------------------------------
class _Conn(asyncio.Protocol):
    def __init__(self, gen: "RateGen") -> None:
        self.gen = gen
        self.transport = None
        self.buf = bytearray()
        self.sched_t = 0.0
        self.busy = False
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, raw: bytes, sched_t: float) -> None:
        self.busy = True
        self.sched_t = sched_t
        self.transport.write(raw)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buf) < end + 4 + length:
                return
            status = int(head.split(" ", 2)[1])
            del self.buf[:end + 4 + length]
            self.busy = False
            self.gen.done(self, status, time.perf_counter() - self.sched_t)

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.gen.lost(self)


class RateGen:
    def __init__(self, host: str, port: int, requests: list[bytes], rate: float, duration_s: float,
                 connections: int, max_connections: int) -> None:
        self.host, self.port = host, port
        self.requests = requests
        self.rate, self.duration = rate, duration_s
        self.n_conn, self.max_conn = connections, max_connections
        self.idle: list[_Conn] = []
        self.all: set[_Conn] = set()
        self.queue: list[tuple[bytes, float]] = []
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.opening = 0
        self.sent = 0

    async def _open(self) -> None:
        self.opening += 1
        try:
            _t, conn = await asyncio.get_running_loop().create_connection(lambda: _Conn(self), self.host, self.port)
            self.all.add(conn)
            self._give(conn)
        except OSError:
            self.errors += 1
        finally:
            self.opening -= 1

    def _give(self, conn: _Conn) -> None:
        if self.queue:
            raw, t = self.queue.pop(0)
            conn.send(raw, t)
        else:
            self.idle.append(conn)

    def done(self, conn: _Conn, status: int, latency: float) -> None:
        self.latencies.append(latency)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self._give(conn)

    def lost(self, conn: _Conn) -> None:
        self.all.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.busy:
            self.errors += 1

    def _submit(self, raw: bytes, t: float) -> None:
        self.sent += 1
        if self.idle:
            self.idle.pop().send(raw, t)
            return
        self.queue.append((raw, t))
        if len(self.all) + self.opening < self.max_conn:
            asyncio.get_running_loop().create_task(self._open())

    async def run(self) -> dict:
        await asyncio.gather(*(self._open() for _ in range(self.n_conn)))
        interval = 1.0 / self.rate
        total = int(self.rate * self.duration)
        start = time.perf_counter() + 0.05
        i = 0
        while i < total:
            now = time.perf_counter()
            while i < total and start + i * interval <= now:
                self._submit(self.requests[i % len(self.requests)], start + i * interval)
                i += 1
            if i < total:
                await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
        deadline = time.perf_counter() + 10
        while len(self.latencies) + self.errors < self.sent and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - start
        for conn in list(self.all):
            conn.transport.close()
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000 if lat else float("nan")

        return {"target_rps": self.rate, "sent": self.sent, "completed": len(lat), "errors": self.errors,
                "missing": self.sent - len(lat) - self.errors, "statuses": self.statuses,
                "achieved_rps": len(lat) / elapsed, "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
                "max_ms": lat[-1] * 1000 if lat else float("nan"), "connections_used": len(self.all)}


def build_requests(host: str, port: int, path: str, devices: list[tuple[str, str, str]], change: float,
                   count: int, seed: int) -> list[bytes]:
    """Pre-built requests in device order; a `change` share carries never-seen cookies."""
    rnd = random.Random(seed)
    cur = [c for _t, _p, c in devices]
    out = []
    salt = f"g{seed}x{time.monotonic_ns() % 10**9}"
    for i in range(count):
        k = i % len(devices)
        tok, pid, _c = devices[k]
        if change >= 1 or (change > 0 and rnd.random() < change):
            cur[k] = f"AQEDAR{salt}n{i}-" + "cHg-" * 76
        body = sync_body(cur[k], pid)
        out.append((f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {tok}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rate", help="constant-rate generator; prints one JSON line")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--path", default="/v1/extension/sync")
    r.add_argument("--devices", required=True)
    r.add_argument("--change", type=float, default=0.0)
    r.add_argument("--rate", type=float, default=1000)
    r.add_argument("--duration", type=float, default=10)
    r.add_argument("--connections", type=int, default=32)
    r.add_argument("--max-connections", type=int, default=256)
    r.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    devices = [tuple(line.split()) for line in Path(args.devices).read_text().splitlines() if line.strip()]
    total = int(args.rate * args.duration)
    reqs = build_requests("127.0.0.1", args.port, args.path, devices, args.change, total, args.seed)
    gen = RateGen("127.0.0.1", args.port, reqs, args.rate, args.duration, args.connections, args.max_connections)
    coro = asyncio.wait_for(gen.run(), timeout=args.duration + 30)
    try:
        import uvloop
        result = uvloop.run(coro)
    except ImportError:
        result = asyncio.run(coro)
    sys.stdout.write("BENCHJSON " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
