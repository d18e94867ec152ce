"""The week itself: a real `cookiesync serve` (SQLite) and, beside it, the plain recipe, each with a
Unipile simulator of its own (`cookiesync simulate`, separate processes), and one scripted browser
per link syncing into each as the extension does. Both arms run at once over the same seeded
faults (`faults.draw`); every `slot_h` simulated hours each arm's simulator is asked for its
accounts and calls, and each link's slot is written down for `accounting.account`.

Time is compressed: one simulated hour is `hour_s` real seconds, and the service's durations
are scaled to match (`product_env`).
"""
from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.processes import free_port, stop_processes
from benchmarks.week import accounting, faults
from benchmarks.week.plain import PlainRecipe
from cookiesync.logs import redact
from cookiesync.simulator.redact import fingerprint

ROOT = Path(__file__).resolve().parents[2]
CONTROL = "X-Sim-Token"
UA = "Mozilla/5.0 (X11; Linux x86_64) WeekBench/1.0"


@dataclass(frozen=True)
class Scale:
    name: str
    links: int
    hours: float
    hour_s: float          # real seconds per simulated hour
    slot_h: float = 0.1    # sampling step, simulated hours
    seed: int = 19


FULL = Scale("full", links=200, hours=168, hour_s=2.0)
QUICK = Scale("quick", links=30, hours=24, hour_s=0.75)




def product_env(sc: Scale, data: Path, port: int, sim_url: str, sim_key: str, secret: str) -> dict[str, str]:
    """`cookiesync serve`'s settings, every duration a real hour long scaled to `hour_s`. Settings a
    branch not yet merged reads (the reconciliation's interval) are set too: local mode warns about
    a variable that names no setting and goes on."""
    h = sc.hour_s
    env = {
        "COOKIESYNC_MODE": "local", "COOKIESYNC_DATA_DIR": str(data),
        "COOKIESYNC_DATABASE_URL": f"sqlite+aiosqlite:///{data / 'cookiesync.db'}",
        "COOKIESYNC_PORT": str(port), "COOKIESYNC_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "COOKIESYNC_UNIPILE_DSN": sim_url, "COOKIESYNC_UNIPILE_API_KEY": sim_key,
        "COOKIESYNC_WEBHOOK_SECRET": secret, "COOKIESYNC_PRODUCT_NAME": "Week bench",
        "COOKIESYNC_TRUSTED_PROXIES": "127.0.0.1", "COOKIESYNC_LOG_LEVEL": "WARNING",
        "COOKIESYNC_RETRY_INTERVAL_S": f"{h:g}",                       # 3600 s
        "COOKIESYNC_MAX_INCIDENT_AGE_S": f"{24 * h:g}",                # 86400 s
        "COOKIESYNC_STALE_COOKIE_S": f"{24 * h:g}",                    # 86400 s
        "COOKIESYNC_COOKIE_REPEAT_WINDOW_S": f"{h:g}",                 # 3600 s
        "COOKIESYNC_SWEEP_INTERVAL_S": f"{max(0.05, 30 / 3600 * h):g}",  # 30 s (at least 50 ms real)
        "COOKIESYNC_RECONCILE_INTERVAL_S": f"{900 / 3600 * h:g}",      # 900 s, once it is a setting
        "COOKIESYNC_SYNC_INTERVAL_S": str(max(1, round(900 / 3600 * h))),  # 900 s; an int, at least 1 s
        "COOKIESYNC_UNIPILE_TIMEOUT_S": "5", "COOKIESYNC_ATTEMPT_LEASE_S": "10",  # crash leases: not scaled
    }
    return env


def reconcile_interval_h() -> float:
    return 900 / 3600


@dataclass
class LinkState:
    ip: str
    gen: int = 0
    dead: set = field(default_factory=set)
    signed_in: bool = True
    installed: bool = True
    sent_gen: int | None = None     # the newest cookie the arm's service has received
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    emails_seen: int = 0

    def cookie(self, seed: int, link: int, gen: int | None = None) -> str:
        return f"AQEDAR-week-{seed}-{link}-{self.gen if gen is None else gen:04d}"


class Arm:
    """One side of the comparison: its simulator, its service, its browsers and what it saw."""

    name = ""

    def __init__(self, sc: Scale, week: faults.Week, workdir: Path, say) -> None:
        self.sc, self.week, self.workdir, self.say = sc, week, workdir, say
        self.procs: list[subprocess.Popen] = []
        self.sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.sim_key, self.sim_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        self.secret = secrets.token_urlsafe(16)
        # public addresses of one French ISP's blocks (the registries place both in FR), so that the
        # service's location lookup has a country to find, as it would for a real home network;
        # never contacted: they only travel in X-Forwarded-For
        self.links = [LinkState(ip=(f"2a01:e0a:{i // 250:x}::{i % 250 + 1:x}" if week.ipv6[i]
                                    else f"81.56.{i // 250}.{i % 250 + 1}")) for i in range(week.links)]
        self.samples = [bytearray() for _ in range(week.links)]
        self.emails: list[tuple[float, int]] = []
        self.causes: list[tuple[float, int | None, str]] = []
        self.calls: list[int] = []
        self.seen_at: list[float] = []   # simulated hour each slot's sample was taken
        self.accounts: dict[str, list[dict]] = {}   # plain_id -> the simulator's accounts of that member
        self.outage = False
        self.lag_h = 0.0   # the most the harness applied a fault after its time (a loaded machine)
        self.t0 = 0.0
        self.log = open(workdir / f"{self.name}.log", "ab")
        self.env = dict(os.environ, PYTHONPATH=f"{ROOT / 'server'}{os.pathsep}{ROOT}")
        self.ctl = httpx.AsyncClient(base_url=self.sim_url, headers={CONTROL: self.sim_token}, timeout=30)
        self.tasks: list[asyncio.Task] = []

    # --- clock ------------------------------------------------------------------------------
    def now_h(self) -> float:
        return (time.monotonic() - self.t0) / self.sc.hour_s

    async def at(self, t_h: float) -> None:
        await asyncio.sleep(max(0.0, self.t0 + t_h * self.sc.hour_s - time.monotonic()))

    # --- processes ----------------------------------------------------------------------------
    def spawn(self, args: list[str], env: dict | None = None) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "cookiesync.cli", *args], cwd=self.workdir,
                             env=env or self.env, stdout=self.log, stderr=self.log)
        self.procs.append(p)
        return p

    def start_sim(self, webhook_url: str) -> None:
        # `--name=value`: a token_urlsafe value may begin with "-", which argparse takes for an option
        # (1/64 a value, four values a week run: its simulator exited at start about one run in 16)
        self.spawn(["simulate", "--port", str(self.sim_port), f"--api-key={self.sim_key}",
                    f"--control-token={self.sim_token}", f"--webhook-url={webhook_url}"],
                   env=dict(self.env, COOKIESYNC_WEBHOOK_SECRET=self.secret))

    def log_tail(self, size: int = 1500) -> str:
        """The end of the arm's log, fit for a console: the simulator's start-up line names its API key
        and control token, so the arm's own secrets become fingerprints and cookies are redacted."""
        self.log.flush()
        tail = Path(self.log.name).read_bytes()[-size:].decode(errors="replace")
        for secret in (self.sim_key, self.sim_token, self.secret):
            tail = tail.replace(secret, fingerprint(secret))
        return redact(tail)

    async def wait_http(self, url: str, headers: dict | None = None, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as c:
            while time.monotonic() < deadline:
                if any(p.poll() is not None for p in self.procs):  # its log goes with the work folder: say why here
                    raise RuntimeError(f"{self.name}: a process exited; the end of {self.log.name}:\n{self.log_tail()}")
                try:
                    await c.get(url, headers=headers)
                    return
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
        raise TimeoutError(f"{url} did not answer within {timeout}s")

    def stop(self) -> None:
        stop_processes(self.procs, timeout=15)

    # --- what differs between the arms ------------------------------------------------------
    async def start(self) -> None:
        raise NotImplementedError

    async def send(self, link: int, li_at: str, ip: str) -> float:
        """One sync as the extension makes it; returns the seconds until the next heartbeat."""
        raise NotImplementedError

    def new_emails(self) -> list[tuple[float, int]]:
        raise NotImplementedError

    async def close(self) -> None:
        await self.ctl.aclose()

    # --- the browsers -------------------------------------------------------------------------
    async def register(self, link: int, gen: int | None = None) -> str:
        """A new cookie for the link's member: told to the simulator first, so it knows whose it is."""
        st = self.links[link]
        li_at = st.cookie(self.week.seed, link, gen)
        r = await self.ctl.post("/_sim/cookies", json={"li_at": li_at, "plain_id": self.plain_id(link),
                                                        "name": f"Member {link}"})
        r.raise_for_status()
        return li_at

    def plain_id(self, link: int) -> str:
        return str(700_000_000 + link)

    async def browser(self, link: int) -> None:
        st = self.links[link]
        wait = 0.0
        while True:
            try:
                await asyncio.wait_for(st.changed.wait(), timeout=wait) if wait else None
            except TimeoutError:
                pass
            st.changed.clear()
            if not (st.installed and st.signed_in):
                wait = self.sc.hour_s
                continue
            gen = st.gen
            try:
                wait = await self.send(link, st.cookie(self.week.seed, link), st.ip)
                st.sent_gen = gen
            except httpx.HTTPError:
                wait = 1.0

    # --- faults -------------------------------------------------------------------------------
    async def refresh_accounts(self) -> None:
        items = (await self.ctl.get("/_sim/accounts")).json()["items"]
        found: dict[str, list[dict]] = {}
        for a in items:
            found.setdefault(a["plain_id"], []).append(a)
        self.accounts = found

    def account_of(self, link: int, status: str | None = "OK") -> dict | None:
        accs = [a for a in self.accounts.get(self.plain_id(link), []) if status is None or a["status"] == status]
        return accs[-1] if accs else None

    async def drop(self, link: int, lost: bool, cause: str, t_h: float) -> bool:
        """Unipile's account of the link turns CREDENTIALS (its webhook lost or not); the cause is
        written down at the fault's own time, however late the harness got to it."""
        acc = self.account_of(link)
        if acc is None:
            return False
        self.causes.append((t_h, link, cause))
        r = await self.ctl.post(f"/_sim/accounts/{acc['id']}/status", json={"message": "CREDENTIALS",
                                                                            "webhook": not lost})
        r.raise_for_status()
        return True

    async def kill_cookie(self, link: int, gen: int) -> None:
        st = self.links[link]
        st.dead.add(gen)
        r = await self.ctl.post("/_sim/cookies", json={"li_at": st.cookie(self.week.seed, link, gen),
                                                        "plain_id": self.plain_id(link),
                                                        "outcomes": ["sticky:expired_credentials"]})
        r.raise_for_status()

    async def sign_in(self, link: int) -> None:
        st = self.links[link]
        if st.signed_in:
            return
        await self.register(link, st.gen + 1)
        st.gen += 1
        st.signed_in = True
        st.changed.set()

    async def later(self, hours: float, fn, *args) -> None:
        await asyncio.sleep(hours * self.sc.hour_s)
        await fn(*args)

    def soon(self, hours: float, fn, *args) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(self.later(hours, fn, *args)))

    async def apply(self, f: faults.Fault) -> None:
        await self.refresh_accounts()
        st = self.links[f.link] if f.link is not None else None
        match f.kind:
            case "session_end":
                acc = self.account_of(f.link)
                if acc and f.checkpoint:
                    await self.ctl.post("/_sim/outcomes", json={"account_id": acc["id"],
                                                                "outcomes": ["checkpoint:IN_APP_VALIDATION"]})
                cause = "checkpoint" if f.checkpoint else ("session ended, webhook lost" if f.lost
                                                           else "session ended")
                await self.drop(f.link, f.lost, cause, f.t_h)
            case "misplaced_end":
                acc = self.account_of(f.link)
                if acc and not acc.get("ip") and not acc.get("country"):
                    cause = "misplaced session ended" + (", webhook lost" if f.lost else "")
                    await self.drop(f.link, f.lost, cause, f.t_h)
            case "signout":
                if not st.signed_in:
                    return
                st.signed_in = False
                await self.kill_cookie(f.link, st.gen)
                await self.drop(f.link, f.lost, "sign-out" + (", webhook lost" if f.lost else ""), f.t_h)
                self.soon(f.hours, self.sign_in, f.link)
            case "rotate":
                if not st.signed_in:
                    return
                old = st.gen
                await self.register(f.link, old + 1)
                st.gen += 1
                await self.kill_cookie(f.link, old)
                st.changed.set()
            case "uninstall":
                st.installed = False
            case "outage" | "burst_429":
                code = "503" if f.kind == "outage" else "429"
                if f.kind == "outage":
                    self.outage = True
                await self.ctl.post("/_sim/outcomes", json={"outcomes": [f"sticky:{code}"], "replace": True})
                for link in f.drops:
                    await self.drop(link, False, "outage", f.t_h)
                self.soon(f.hours, self.end_window, f.kind)

    async def end_window(self, kind: str) -> None:
        await self.ctl.post("/_sim/outcomes", json={"outcomes": [], "replace": True})
        if kind == "outage":
            self.outage = False

    async def respond(self, link: int) -> None:
        """The user acts on an email: signs in again if signed out, and reconnects through Unipile's
        hosted page (done here through the control API: the account turns OK and its RECONNECTED
        webhook goes out, as the page's completion does)."""
        await self.refresh_accounts()
        if self.account_of(link) is not None:
            return
        await self.sign_in(link)
        acc = self.account_of(link, status=None)
        if acc is not None:
            await self.ctl.post(f"/_sim/accounts/{acc['id']}/status", json={"message": "RECONNECTED"})

    async def faults_loop(self) -> None:
        for f in self.week.faults:
            await self.at(f.t_h)
            try:
                await self.apply(f)
            except httpx.HTTPError as exc:
                self.say(f"{self.name}: fault {f.kind} at {f.t_h:.1f} h failed: {type(exc).__name__}")
            self.lag_h = max(self.lag_h, self.now_h() - f.t_h)

    # --- sampling -----------------------------------------------------------------------------
    async def sample_loop(self, slots: int) -> None:
        for i in range(slots):
            await self.at((i + 1) * self.sc.slot_h)
            try:
                await self.refresh_accounts()
                self.seen_at.append(self.now_h())
                self.calls.append((await self.ctl.get("/_sim/stats")).json()["calls_total"])
            except httpx.HTTPError:
                self.seen_at += [self.now_h()] * (len(self.calls) + 1 - len(self.seen_at))
                self.calls.append(self.calls[-1] if self.calls else 0)
            for t, link in self.new_emails():
                self.emails.append((t, link))
                st = self.links[link]
                delay = self.week.respond_after_h[link][st.emails_seen % len(self.week.respond_after_h[link])]
                st.emails_seen += 1
                self.soon(delay, self.respond, link)
            for link, st in enumerate(self.links):
                connected = self.account_of(link) is not None
                bits = accounting.CONNECTED if connected else 0
                checkpoint = any(a.get("checkpoint") for a in self.accounts.get(self.plain_id(link), []))
                service_cookie_dead = st.sent_gen is None or st.sent_gen in st.dead
                if not connected and (not st.signed_in or checkpoint or (not st.installed and service_cookie_dead)):
                    bits |= accounting.NEED_USER
                if self.outage:
                    bits |= accounting.OUTAGE
                self.samples[link].append(bits)

    async def run(self) -> None:
        await self.start()
        for link in range(self.week.links):
            await self.register(link)
        self.tasks += [asyncio.create_task(self.browser(link)) for link in range(self.week.links)]
        # warm-up: every browser syncs once, then its link has a simulated hour (3 s real at least)
        # to connect; one that does not (refused by Unipile) starts the week down
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(st.sent_gen is None for st in self.links):
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + max(3.0, self.sc.hour_s)
        while time.monotonic() < deadline:
            await self.refresh_accounts()
            if all(self.account_of(k) for k in range(self.week.links)):
                break
            await asyncio.sleep(0.2)
        self.t0 = time.monotonic()
        # a link down from the start never connected: its cause names the browser's address family
        self.causes += [(-1.0, k, f"first connect ({'IPv6' if self.week.ipv6[k] else 'IPv4'} browser)")
                        for k in range(self.week.links) if self.account_of(k) is None]
        slots = round(self.week.hours / self.sc.slot_h)
        base = (await self.ctl.get("/_sim/stats")).json()["calls_total"]
        runner = asyncio.create_task(self.faults_loop())
        await self.sample_loop(slots)
        runner.cancel()
        for t in self.tasks:
            t.cancel()
        self.calls = [c - base for c in self.calls]

    def ledger(self) -> accounting.Ledger:
        causes = sorted(self.causes, key=lambda c: c[0])
        return accounting.account([bytes(s) for s in self.samples], self.sc.slot_h, self.emails, causes,
                                  act_after_h=4.0, seen_at=self.seen_at)


class Product(Arm):
    name = "product"

    async def start(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data = self.workdir / "product-data"
        self.db_path = data / "cookiesync.db"
        self.start_sim(f"{self.url}/v1/webhooks/unipile/account-status")
        env = dict(self.env, **product_env(self.sc, data, self.port, self.sim_url, self.sim_key, self.secret))
        subprocess.run([sys.executable, "-m", "cookiesync.cli", "migrate"], env=env, cwd=self.workdir, check=True,
                       stdout=self.log, stderr=self.log)
        out = subprocess.run([sys.executable, "-m", "cookiesync.cli", "apikey", "create", "--name", "week"], env=env,
                             cwd=self.workdir, check=True, capture_output=True, text=True).stdout
        self.api_key = out.strip().splitlines()[-1]
        self.spawn(["serve"], env=env)
        await self.wait_http(self.sim_url + "/_sim/stats", {CONTROL: self.sim_token})
        await self.wait_http(self.url + "/healthz")
        await self.ctl.post("/_sim/config", json={"checkpoint_ttl_s": 1e9})
        self.http = httpx.AsyncClient(base_url=self.url, timeout=30,
                                      limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        auth = {"Authorization": f"Bearer {self.api_key}"}
        self.tokens = []
        for link in range(self.week.links):
            user = f"u{link}"
            (await self.http.put(f"/v1/users/{user}", headers=auth,
                                 json={"email": f"{user}@example.test", "display_name": f"User {link}"})).raise_for_status()
            code = (await self.http.post(f"/v1/users/{user}/pairing-codes", headers=auth)).json()["code"]
            r = await self.http.post("/v1/extension/pair", json={"pairing_code": code, "extension_version": "1.0.0"})
            r.raise_for_status()
            self.tokens.append(r.json()["device_token"])
        self.seen_email = 0

    async def send(self, link: int, li_at: str, ip: str) -> float:
        r = await self.http.post("/v1/extension/sync", headers={"Authorization": f"Bearer {self.tokens[link]}",
                                                                "X-Forwarded-For": ip},
                                 json={"li_at": li_at, "li_a": None, "user_agent": UA, "plain_id": self.plain_id(link),
                                       "extension_version": "1.0.0"})
        if r.status_code == 429:
            return float(r.headers.get("retry-after", 1))
        return float(r.json().get("next_sync_in_s", 1)) if r.status_code == 200 else 1.0

    def new_emails(self) -> list[tuple[float, int]]:
        """Emails kept in the outbox (no SMTP configured), read from the service's SQLite file."""
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5) as db:
            rows = db.execute("SELECT id, user_id FROM outbox WHERE id > ? ORDER BY id", (self.seen_email,)).fetchall()
        if rows:
            self.seen_email = rows[-1][0]
        t = self.now_h()
        return [(t, int(user.removeprefix("u"))) for _id, user in rows]

    async def close(self) -> None:
        await self.http.aclose()
        await super().close()


class Plain(Arm):
    name = "plain"

    async def start(self) -> None:
        self.port = free_port()
        self.recipe = PlainRecipe(self.sim_url, self.sim_key, self.secret, self.sc.hour_s, 4, self.now_h)
        self.server_task = asyncio.create_task(self.recipe.serve(self.port))
        self.start_sim(f"http://127.0.0.1:{self.port}/hook")
        await self.wait_http(self.sim_url + "/_sim/stats", {CONTROL: self.sim_token})
        await self.ctl.post("/_sim/config", json={"checkpoint_ttl_s": 1e9})
        self.seen_email = 0

    async def send(self, link: int, li_at: str, ip: str) -> float:
        await self.recipe.sync(link, li_at, UA)
        return float(max(1, round(900 / 3600 * self.sc.hour_s)))

    def new_emails(self) -> list[tuple[float, int]]:
        fresh = self.recipe.emails[self.seen_email:]
        self.seen_email += len(fresh)
        return list(fresh)

    async def close(self) -> None:
        await self.recipe.close()
        self.server_task.cancel()
        await super().close()


async def _run(sc: Scale, say) -> dict[str, Arm]:
    week = faults.draw(sc.seed, sc.links, sc.hours, start_h=0.5)
    workdir = Path(tempfile.mkdtemp(prefix="cs-week-"))
    arms = {a.name: a for a in (Product(sc, week, workdir, say), Plain(sc, week, workdir, say))}
    try:
        say(f"week ({sc.name}): {sc.links} links, {sc.hours:g} simulated hours, 1 h = {sc.hour_s:g} s real, "
            f"seed {sc.seed}, {len(week.faults)} faults; {workdir}")
        await asyncio.gather(*(a.run() for a in arms.values()))
        return arms
    finally:
        for a in arms.values():
            try:
                await a.close()
            except Exception:  # pragma: no cover - clean-up goes on
                pass
            a.stop()
        if os.environ.get("COOKIESYNC_WEEK_KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


def run(sc: Scale, say=print) -> dict[str, Arm]:
    return asyncio.run(_run(sc, say))
