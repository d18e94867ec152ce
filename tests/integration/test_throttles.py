"""Attempt throttles under concurrency, over real sockets, on SQLite and PostgreSQL: a burst of
guesses gets at most the limit checked (the rest 429 with Retry-After), on one instance or two
sharing the database; a staff guesser is slowed per (account, address) without locking the
owner out elsewhere or the address's other staff; `cookiesync staff unlock` clears it; old
throttle rows go on write.

Client addresses come from X-Forwarded-For (the console service trusts 127.0.0.1)."""
from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import httpx
import msgspec
import pytest
import sqlalchemy as sa

from cookiesync.db.engine import make_engine
from cookiesync.db.schema import throttles
from cookiesync.domain.throttle.policy import Backoff
from tests.support.console import PASSWORD, start_console, stop
from tests.support.service import start_service

_ips = itertools.count(1)
LIMIT_PAIR = 10
FREE_LOGINS = 5


def fresh_ip() -> str:
    n = next(_ips)
    return f"203.0.{n // 250}.{n % 250 + 1}"


@pytest.fixture
def svc(tmp_path, database_url):
    service = start_console(tmp_path, database_url=database_url)
    yield service
    stop(service)


@pytest.fixture
def long_delay(monkeypatch):
    """The delay after the free sign-ins made 10 minutes (2 s by default), so that what a test
    sends after a burst is inside the delay however slow the machine is."""
    from cookiesync.domain.support import staff

    monkeypatch.setattr(staff.POLICY, "per_account_address",
                        Backoff(free=FREE_LOGINS, first_delay=timedelta(minutes=10)))


def second_instance(svc):
    return start_service(msgspec.structs.replace(svc.settings, port=0, public_url=""))


def pairing_code(svc, user_id: str) -> str:
    svc.new_user(user_id)
    return svc.integrator("POST", f"/v1/users/{user_id}/pairing-codes").json()["code"]


def pair(base: str, code: str, ip: str) -> httpx.Response:
    return httpx.post(base + "/v1/extension/pair", json={"pairing_code": code, "extension_version": "1"},
                      headers={"X-Forwarded-For": ip}, timeout=30)


async def _pair_burst(bases: list[str], ip: str, n: int) -> list[httpx.Response]:
    clients = [httpx.AsyncClient(base_url=b, headers={"X-Forwarded-For": ip}, timeout=120,
                                 limits=httpx.Limits(max_connections=n)) for b in bases]
    try:
        return await asyncio.gather(*(clients[i % len(clients)].post(
            "/v1/extension/pair", json={"pairing_code": f"WRONG-{i:05d}", "extension_version": "1"})
            for i in range(n)))
    finally:
        for c in clients:
            await c.aclose()


class Browser:
    """One sign-in form: its own cookie jar (the pre-login cookie) and CSRF token."""

    def __init__(self, base: str, ip: str) -> None:
        self.http = httpx.AsyncClient(base_url=base, headers={"X-Forwarded-For": ip}, timeout=120)

    async def open(self) -> "Browser":
        page = await self.http.get("/support/login")
        self.token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        return self

    async def submit(self, email: str, password: str) -> httpx.Response:
        try:
            return await self.http.post("/support/login", data={"email": email, "password": password,
                                                                 "csrf_token": self.token, "next": "/support/"})
        finally:
            await self.http.aclose()


def login(base: str, ip: str, email: str, password: str = PASSWORD) -> httpx.Response:
    async def once():
        return await (await Browser(base, ip).open()).submit(email, password)

    return asyncio.run(once())


async def _attempts(database: str, key: str) -> int:
    engine = make_engine(database)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(sa.select(throttles.c.attempts).where(throttles.c.key == key))).scalar() or 0
    finally:
        await engine.dispose()


async def _login_burst(svc, bases: list[str], ip: str, n: int, right_password: bool):
    """n wrong passwords for op@example.com from `ip`, all at once (forms opened first); with
    `right_password`, the right one too, sent once the free attempts are reserved and while the
    wrong ones are still being answered."""
    forms = await asyncio.gather(*(Browser(bases[i % len(bases)], ip).open() for i in range(n + 1)))
    wrong = [asyncio.ensure_future(f.submit("op@example.com", f"wrong-password-{i}")) for i, f in enumerate(forms[:n])]
    right = None
    if right_password:
        key = f"login:op@example.com|{ip}"
        for _ in range(600):
            if await _attempts(svc.settings.database, key) >= FREE_LOGINS or all(w.done() for w in wrong):
                break
            await asyncio.sleep(0.05)
        right = await forms[n].submit("op@example.com", PASSWORD)
    else:
        await forms[n].http.aclose()
    return await asyncio.gather(*wrong), right


def _checked(responses) -> list[httpx.Response]:
    refused = [r for r in responses if r.status_code == 429]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    return [r for r in responses if r.status_code != 429]


# --- pairing ------------------------------------------------------------------------------------------------
def test_concurrent_wrong_pairing_codes_at_most_the_limit_checked(svc) -> None:
    ip = fresh_ip()
    answers = asyncio.run(_pair_burst([svc.url], ip, 100))
    checked = _checked(answers)
    assert 0 < len(checked) <= LIMIT_PAIR, f"{len(checked)} of 100 checked"
    assert {r.status_code for r in checked} <= {400}
    # the address is refused even with a good code; another address pairs
    code = pairing_code(svc, "thr-pair-1")
    assert pair(svc.url, code, ip).status_code == 429
    assert pair(svc.url, code, fresh_ip()).status_code == 201


def test_a_successful_pairing_gives_its_slot_back(svc) -> None:
    ip = fresh_ip()
    for i in range(LIMIT_PAIR - 1):
        assert pair(svc.url, f"WRONG-{i:05d}", ip).status_code == 400
    for i in range(3):  # successes do not count towards the limit
        assert pair(svc.url, pairing_code(svc, f"thr-ok-{i}"), ip).status_code == 201
    assert pair(svc.url, "WRONG-77777", ip).status_code == 400  # the 10th failure
    assert pair(svc.url, pairing_code(svc, "thr-ok-late"), ip).status_code == 429


# --- staff sign-in ------------------------------------------------------------------------------------------
def test_concurrent_wrong_passwords_then_the_right_one_in_the_burst(svc, long_delay) -> None:
    ip = fresh_ip()
    wrong, right = asyncio.run(_login_burst(svc, [svc.url], ip, 40, right_password=True))
    checked = _checked(wrong)
    assert 0 < len(checked) <= FREE_LOGINS, f"{len(checked)} of 40 checked"
    assert {r.status_code for r in checked} <= {401}
    # the right password during the delay: refused, no session
    assert right.status_code == 429 and "too many failed sign-ins" in right.text
    assert not any(c.startswith("cookiesync_staff=") for c in right.headers.get_list("set-cookie"))
    # not a lock-out: the owner from another address, and other staff from this one, sign in
    assert login(svc.url, fresh_ip(), "op@example.com").status_code == 303
    assert login(svc.url, ip, "viewer@example.com").status_code == 303
    assert login(svc.url, ip, "op@example.com").status_code == 429  # this pair still waits


def test_staff_unlock_clears_the_accounts_delays(svc, long_delay) -> None:
    ips = [fresh_ip(), fresh_ip()]
    for ip in ips:
        for i in range(FREE_LOGINS):
            assert login(svc.url, ip, "op@example.com", f"wrong-{i}").status_code == 401
        assert login(svc.url, ip, "op@example.com").status_code == 429
    env = dict(os.environ) | {"COOKIESYNC_DATA_DIR": svc.settings.data_dir,
                              "COOKIESYNC_DATABASE_URL": svc.settings.database}
    done = subprocess.run([sys.executable, "-m", "cookiesync.cli", "staff", "unlock", "OP@example.com"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "from 2 address(es)" in done.stdout
    for ip in ips:
        assert login(svc.url, ip, "op@example.com").status_code == 303


def test_two_instances_share_the_limits(svc, long_delay) -> None:
    other = second_instance(svc)
    try:
        bases = [svc.url, other.url]
        answers = asyncio.run(_pair_burst(bases, fresh_ip(), 60))
        assert 0 < len(_checked(answers)) <= LIMIT_PAIR
        wrong, _ = asyncio.run(_login_burst(svc, bases, fresh_ip(), 20, right_password=False))
        assert 0 < len(_checked(wrong)) <= FREE_LOGINS
    finally:
        stop(other)


# --- old rows -----------------------------------------------------------------------------------------------
def test_expired_throttle_rows_are_dropped_on_write(svc) -> None:
    now = datetime.now(timezone.utc)
    old, live = now - timedelta(hours=1), now + timedelta(hours=1)

    async def seed(conn):
        await conn.execute(throttles.insert(), [
            {"key": f"pair:old-{i}", "attempts": 3, "window_start": old, "expires_at": old, "version": 1}
            for i in range(150)] + [
            {"key": "pair:live", "attempts": 3, "window_start": now, "expires_at": live, "version": 1}])

    async def left(conn):
        rows = (await conn.execute(sa.select(throttles.c.key, throttles.c.expires_at))).all()
        return sum(1 for r in rows if r.expires_at < now), {r.key for r in rows}

    svc.db(seed)
    assert pair(svc.url, "WRONG-00001", fresh_ip()).status_code == 400  # a new key: drops at most 100
    assert svc.db(left)[0] == 50
    assert pair(svc.url, "WRONG-00002", fresh_ip()).status_code == 400
    expired, keys = svc.db(left)
    assert expired == 0 and "pair:live" in keys
