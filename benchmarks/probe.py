"""The outside probe of issue #18, replayed: ``python -m benchmarks.probe``.

Starts `cookiesync serve` in local mode on a fresh data folder (SQLite, the embedded Unipile
simulator), reads the demo API key, staff password and pairing code from its banner, and tries
each step the probe tried. It prints one row a step: requests tried, the answers seen (status:
count), what the service should answer, and PASS or MISS. It is a report, not a test: the tests
under tests/ hold each behaviour; this shows the figures in one run, on a real process.

All traffic is to 127.0.0.1. The read-only step uses `chattr +i` (root on ext4); where that is
not possible the row says so instead of passing.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
TOO_BIG = 16 * 1024 * 1024


@dataclass
class Row:
    step: str
    tried: int
    answers: str
    expected: str
    ok: bool




def _env(data: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COOKIESYNC_")}
    env.update(COOKIESYNC_DATA_DIR=str(data), COOKIESYNC_PORT=str(port), COOKIESYNC_HOST="127.0.0.1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "server"), str(ROOT)]), **extra)
    return env


class Service:
    """One `cookiesync serve` process and what its banner said."""

    def __init__(self, data: Path, **env: str) -> None:
        self.data = data
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.out = tempfile.TemporaryFile(mode="w+")
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "cookiesync.cli", "serve"], env=_env(data, self.port, **env),
                                     stdout=self.out, stderr=self.err, cwd=ROOT)
        self.banner: dict[str, str] = {}

    def wait(self, timeout: float = 60) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    self.out.seek(0)
                    text = self.out.read()
                    for key, pattern in (("user", r"user id:\s+(\S+)"), ("key", r"API key:\s+(\S+)"),
                                         ("code", r"pairing code:\s+(\S+)"), ("password", r"admin@localhost\.test / (\S+)\)")):
                        if m := re.search(pattern, text):
                            self.banner[key] = m.group(1)
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        return False

    def stderr(self) -> str:
        self.err.seek(0)
        return self.err.read()

    def rss_kib(self) -> tuple[int, int]:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        get = lambda name: int(re.search(rf"^{name}:\s+(\d+)", status, re.M).group(1))  # noqa: E731
        return get("VmRSS"), get("VmHWM")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _count(statuses) -> str:
    c = collections.Counter(statuses)
    return ", ".join(f"{k}: {v}" for k, v in sorted(c.items(), key=lambda kv: str(kv[0])))


async def pairing_burst(svc: Service, n: int = 300) -> Row:
    async with httpx.AsyncClient(base_url=svc.base, limits=httpx.Limits(max_connections=n), timeout=60) as c:
        async def one(i: int) -> int:
            r = await c.post("/v1/extension/pair", json={"pairing_code": f"WRONG-{i:05d}", "extension_version": "1.0"})
            return r.status_code
        statuses = await asyncio.gather(*(one(i) for i in range(n)))
    checked = sum(1 for s in statuses if s != 429)
    return Row(f"{n} concurrent wrong pairing codes, one address", n, _count(statuses),
               "at most 10 checked, the rest 429", checked <= 10)


async def _login(c: httpx.AsyncClient, email: str, password: str) -> int:
    page = await c.get("/support/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    r = await c.post("/support/login", data={"email": email, "password": password,
                                             "csrf_token": csrf.group(1) if csrf else "", "next": "/support/"})
    return r.status_code


async def login_burst(svc: Service, n: int = 40) -> Row:
    email, password = "admin@localhost.test", svc.banner["password"]
    clients = [httpx.AsyncClient(base_url=svc.base, timeout=120) for _ in range(n + 1)]
    try:
        tries = [_login(clients[i], email, f"wrong-password-{i}") for i in range(n)]
        tries.append(_login(clients[n], email, password))
        statuses = await asyncio.gather(*tries)
    finally:
        for c in clients:
            await c.aclose()
    wrong, right = statuses[:n], statuses[n]
    checked = sum(1 for s in wrong if s != 429)
    return Row(f"{n} concurrent wrong staff passwords + the right one in the burst", n + 1,
               f"wrong: {_count(wrong)}; right: {right}",
               "at most 5 wrong checked; no session granted in the burst (right one 429)", checked <= 5 and right != 303)


async def big_headers(svc: Service, n: int = 8) -> Row:
    rss0, hwm0 = svc.rss_kib()

    async def one() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: probe\r\nX-Big: ")
            chunk = b"a" * 65536
            for _ in range(TOO_BIG // len(chunk)):
                writer.write(chunk)
                await writer.drain()
            writer.write(b"\r\n\r\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        try:
            line = await asyncio.wait_for(reader.readline(), 30)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            line = b""
        writer.close()
        parts = line.split()
        return parts[1].decode() if len(parts) > 1 else "closed"

    statuses = await asyncio.gather(*(one() for _ in range(n)))
    rss1, hwm1 = svc.rss_kib()
    grew = max(hwm1 - hwm0, rss1 - rss0) / 1024
    return Row(f"{n} parallel requests with a 16 MiB header", n,
               f"{_count(statuses)}; RSS {rss0 // 1024}->{rss1 // 1024} MiB, grew {grew:.0f} MiB",
               "431 (or closed), RSS grows < 64 MiB", all(s in ("431", "closed") for s in statuses) and grew < 64)


ID_ROUTES = ["/v1/support/outbox/{}", "/v1/support/links/{}", "/v1/support/notifications/{}",
             "/v1/support/links?link_id={}", "/v1/support/links?before={}", "/v1/support/outbox?before={}",
             "/v1/support/notifications?link_id={}", "/v1/support/notifications?before={}",
             "/support/outbox/{}", "/support/links/{}", "/support/notifications/{}",
             "/support/links?before={}", "/support/outbox?before={}", "/support/notifications?link_id={}"]
ID_ACTIONS = ["/v1/support/links/{}/actions/retry", "/v1/support/outbox/{}/resend"]


async def ids(svc: Service) -> Row:
    values = [str(2 ** 63), str(2 ** 64), "²", "١٢", "-1", "1\n"]
    statuses = []
    async with httpx.AsyncClient(base_url=svc.base, timeout=30) as c:
        code = await _login(c, "admin@localhost.test", svc.banner["password"])
        assert code == 303, f"staff sign-in failed ({code}); run this step before the login burst"
        me = (await c.get("/v1/support/me")).json()
        csrf = me.get("csrf_token", "")
        for v in values:
            for route in ID_ROUTES:
                statuses.append((await c.get(route.format(_path_part(v)))).status_code)
            for route in ID_ACTIONS:
                statuses.append((await c.post(route.format(_path_part(v)), headers={"X-CSRF-Token": csrf})).status_code)
    return Row("ids 2^63, 2^64, '²', Arabic digits, -1, '1\\n' in every id path and query", len(statuses),
               _count(statuses), "400 or 404, never 5xx", all(s < 500 for s in statuses))


def _path_part(v: str) -> str:
    from urllib.parse import quote

    return quote(v, safe="")


BAD_TEXT = {"trailing newline": "\n", "NUL": "\x00", "C1 control": "\x85", "bidi override": "\u202e"}


async def text(svc: Service) -> Row:
    statuses: dict[str, list[int]] = {k: [] for k in BAD_TEXT}
    h = {"Authorization": f"Bearer {svc.banner['key']}"}
    async with httpx.AsyncClient(base_url=svc.base, timeout=30) as c:
        r = await c.post(f"/v1/users/{svc.banner['user']}/pairing-codes", headers=h)
        code = r.json().get("pairing_code") or r.json().get("code")
        token = (await c.post("/v1/extension/pair", json={"pairing_code": code, "extension_version": "1.0"})
                 ).json()["device_token"]
        good = {"li_at": "AQEDAR" + "x" * 40, "li_a": None, "user_agent": "Mozilla/5.0 (X11; Linux x86_64) probe",
                "plain_id": "777000111", "extension_version": "1.0"}
        for name, bad in BAD_TEXT.items():
            s = statuses[name]
            s.append((await c.put(f"/v1/users/probe-user{_path_part(bad)}", headers=h, json={})).status_code)
            for field, value in (("display_name", f"Ann{bad}Lee"), ("email", f"ann{bad}@example.com"),
                                 ("display_name", f"Ann Lee{bad}"), ("email", f"ann@example.com{bad}")):
                s.append((await c.put("/v1/users/probe-user", headers=h, json={field: value})).status_code)
            for field in ("li_at", "user_agent", "plain_id", "extension_version"):
                body = dict(good, **{field: good[field] + bad})
                s.append((await c.post("/v1/extension/sync", json=body,
                                       headers={"Authorization": f"Bearer {token}"})).status_code)
    ok = all(code == 400 for codes in statuses.values() for code in codes)
    tried = sum(len(v) for v in statuses.values())
    return Row("trailing newline, NUL, C1, U+202E in user id, display_name, email, li_at, user_agent, plain_id, "
               "extension_version", tried, "; ".join(f"{k}: {_count(v)}" for k, v in statuses.items()),
               "400 for each, never 2xx or 5xx", ok)


SIM_GETS = ["config", "stats", "calls", "accounts", "hosted-links", "webhook-deliveries"]


async def simulator_control(svc: Service) -> Row:
    """The embedded simulator's control API after a real connect: asked without its token (each
    should be 401), then with the token from the local secrets file (each 200); no answer may carry
    the cookie or any local secret."""
    h = {"Authorization": f"Bearer {svc.banner['key']}"}
    cookie = "AQEDAR" + "probe" * 12
    secrets = json.loads((svc.data / "secrets.json").read_text())
    token = secrets.get("unipile_sim_control_token", "")
    async with httpx.AsyncClient(base_url=svc.base, timeout=30) as c:
        r = await c.post(f"/v1/users/{svc.banner['user']}/pairing-codes", headers=h)
        device = (await c.post("/v1/extension/pair", json={"pairing_code": r.json()["code"], "extension_version": "1.0"})
                  ).json()["device_token"]
        await c.post("/v1/extension/sync", headers={"Authorization": f"Bearer {device}"},
                     json={"li_at": cookie, "li_a": None, "user_agent": "Mozilla/5.0 (X11; Linux x86_64) probe",
                           "plain_id": "777000222", "extension_version": "1.0"})
        await asyncio.sleep(1.0)  # the connect runs after the answer

        async def ask(headers: dict[str, str]) -> list[httpx.Response]:
            answers = [await c.get(f"/unipile-sim/_sim/{name}", headers=headers) for name in SIM_GETS]
            answers.append(await c.post("/unipile-sim/_sim/config", json={}, headers=headers))
            return answers

        without = await ask({})
        with_token = await ask({"X-Sim-Token": token}) if token else []
    answers = without + with_token
    # the connect did reach the simulator: its accounts show the cookie's fingerprint
    from cookiesync.simulator.redact import fingerprint

    seen = any(fingerprint(cookie) in r.text for r in with_token)
    leaked = sorted({name for r in answers for name, value in [("cookie", cookie), *secrets.items()]
                     if isinstance(value, str) and len(value) >= 8 and value in r.text})
    return Row("the simulator's control API after a connect, without then with its token", len(answers),
               f"without: {_count(r.status_code for r in without)}; "
               f"with: {_count(r.status_code for r in with_token) if with_token else 'no token in secrets.json'}; "
               f"cookie's fingerprint shown: {'yes' if seen else 'no'}; "
               f"secrets or cookie in answers: {', '.join(leaked) or 'none'}",
               "401 without, 200 with, nothing leaked",
               all(r.status_code == 401 for r in without) and bool(with_token)
               and all(r.status_code == 200 for r in with_token) and not leaked)


async def data_folder_removed(svc: Service) -> Row:
    shutil.rmtree(svc.data)
    h = {"Authorization": f"Bearer {svc.banner['key']}"}
    async with httpx.AsyncClient(base_url=svc.base, timeout=30) as c:
        ready = (await c.get("/readyz")).status_code
        write = (await c.put("/v1/users/after-removal", headers=h, json={})).status_code
    return Row("data folder removed under the running instance", 2, f"/readyz: {ready}; PUT /v1/users: {write}",
               "/readyz 503", ready == 503)


def restart_without_secrets(tmp: Path) -> Row:
    data = tmp / "lost-secrets"
    first = Service(data)
    up = first.wait()
    first.stop()
    (data / "secrets.json").unlink()
    second = Service(data)
    started = second.wait(20)
    second.stop()
    err = second.stderr().strip().splitlines()
    return Row("restart on a data folder whose database remains but secrets.json is gone", 1,
               f"first start {'up' if up else 'failed'}; second: exit {second.proc.returncode}, "
               f"{len(err)} stderr line(s): {err[-1][:120] if err else ''!r}",
               "refused, one line naming secrets.json, exit != 0",
               up and not started and second.proc.returncode not in (0, None) and len(err) <= 2
               and "Traceback" not in second.stderr())


async def read_only(tmp: Path) -> list[Row]:
    data = tmp / "read-only"
    svc = Service(data)
    if not svc.wait():
        return [Row("read-only database", 0, "service did not start", "", False)]
    db = data / "cookiesync.db"
    if not db.exists():
        found = sorted(data.glob("*.db"))
        db = found[0] if found else db
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        svc.stop()
        return [Row("read-only database", 0, "chattr +i not possible here", "", False)]
    rows = []
    try:
        h = {"Authorization": f"Bearer {svc.banner['key']}"}
        async with httpx.AsyncClient(base_url=svc.base, timeout=30) as c:
            ready = (await c.get("/readyz")).status_code
            write = (await c.put("/v1/users/on-read-only", headers=h, json={})).status_code
        rows.append(Row("database made read-only under the running instance", 2,
                        f"/readyz: {ready}; PUT /v1/users: {write}", "/readyz 503", ready == 503))
        svc.stop()
        again = Service(data)
        started = again.wait(20)
        again.stop()
        err = again.stderr().strip().splitlines()
        rows.append(Row("start on a read-only database", 1,
                        f"exit {again.proc.returncode}, {len(err)} stderr line(s): {err[-1][:120] if err else ''!r}",
                        "one line, exit != 0, no traceback",
                        not started and again.proc.returncode not in (0, None) and "Traceback" not in again.stderr()
                        and len(err) <= 2))
    finally:
        subprocess.run(["chattr", "-i", str(db)], capture_output=True)
        svc.stop()
    return rows


def weak_secrets(tmp: Path) -> list[Row]:
    rows = []
    from cookiesync.keys import new_key_entry

    base = dict(COOKIESYNC_MODE="production", COOKIESYNC_DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/prod.db",
                COOKIESYNC_UNIPILE_DSN="http://127.0.0.1:9", COOKIESYNC_UNIPILE_API_KEY="k" * 32,
                COOKIESYNC_ENCRYPTION_KEYS=new_key_entry("k1"), COOKIESYNC_SIGNING_SECRET="s" * 43,
                COOKIESYNC_WEBHOOK_SECRET="w" * 32, COOKIESYNC_HOSTED_AUTH_SECRET="h" * 32,
                COOKIESYNC_PUBLIC_URL="https://cookiesync.example")
    for name, value in (("COOKIESYNC_SIGNING_SECRET", "s"), ("COOKIESYNC_WEBHOOK_SECRET", "w"),
                        ("COOKIESYNC_HOSTED_AUTH_SECRET", "h"), ("COOKIESYNC_ENCRYPTION_KEYS", "not-a-key")):
        svc = Service(tmp / "prod", **dict(base, **{name: value}))
        started = svc.wait(15)
        svc.stop()
        err = svc.stderr().strip().splitlines()
        rows.append(Row(f"production with {name}={value!r}", 1,
                        f"exit {svc.proc.returncode}, {len(err)} line(s): {err[-1][:100] if err else ''!r}",
                        "refused, one line naming the variable",
                        not started and name in svc.stderr() and "Traceback" not in svc.stderr() and len(err) <= 2))
    return rows


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cookiesync-probe-"))
    rows: list[Row] = []
    svc = Service(tmp / "data")
    try:
        if not svc.wait():
            print(svc.stderr(), file=sys.stderr)
            return 1
        for step in (ids, text, simulator_control, pairing_burst, login_burst, big_headers):
            print(f"… {step.__name__}", file=sys.stderr, flush=True)
            rows.append(await step(svc))
        print("… data_folder_removed", file=sys.stderr, flush=True)
        rows.append(await data_folder_removed(svc))
    finally:
        svc.stop()
    print("… restart_without_secrets, read_only, weak_secrets", file=sys.stderr, flush=True)
    rows.append(restart_without_secrets(tmp))
    rows += await read_only(tmp)
    rows += weak_secrets(tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r.step) for r in rows)
    for r in rows:
        print(f"{'PASS' if r.ok else 'MISS'}  {r.step:<{width}}  tried {r.tried:>4}  {r.answers}   (want: {r.expected})")
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=1))
    return 0 if all(r.ok for r in rows) else 2


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
