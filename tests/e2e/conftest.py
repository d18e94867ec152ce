"""Fixtures for driving the real extension in Debian's headless Chromium (and the service, fakes and
build that test_extension_firefox.py shares with them).

See the shared document on extension testing (`../shared/docs/extension-testing.md`, beside
the repository) for why the launch looks like this.

`backend` is the REAL cookiesync service (`cookiesync.app.create_app`, SQLite in
tmp_path) on a loopback port, talking to the Unipile simulator (`simulator` fixture
of tests/conftest.py) on another. In front of it sits `Recorder` (tests/support/extension.py),
a small ASGI middleware that records the extension's requests and, only when a test asks
(`fail_with`), answers syncs with an injected failure. `stop()`/`start()` restart the
service on the same port with the same settings and database, so the extension's
device token stays valid across the restart.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.support.components import need
from tests.support.extension import EXTENSION, FakeLinkedIn, Recorded, Recorder
from tests.support.servers import ServerThread, free_port
from tests.support.service import USED_SECRETS, Service
from tests.support.settings import make_settings
from tests.support.simulator import sim_get, sim_post
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "extension"
CHROMIUM = Path("/usr/bin/chromium")

# The shipped manifest asks for the backend origin at pairing time (optional host
# permission, chrome.permissions.request from the popup's click). Headless Chromium
# shows that prompt where nobody can click it, so the test build pre-grants the
# loopback backend as if the user had accepted: the popup's request then resolves
# `true` at once and every other code path is the shipped one.
TEST_GRANTED_HOSTS = ["http://127.0.0.1/*"]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium): the extension's browser tests cannot run")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        need(False, "the playwright package is not installed (pip install -e '.[test]')")
    return str(CHROMIUM)


def build_extension(work: Path, brand: Path | None = None, dev: bool = False, target: str = "chrome") -> Path:
    """extension/tools/build.mjs's zip for `target` (chrome or firefox: what ships), unpacked into
    work/: the tests load exactly the packaged files. `dev` lets a test brand name a loopback backend."""
    command = ["node", str(EXTENSION / "tools" / "build.mjs"), "--out", str(work), "--target", target]
    command += ["--brand", str(brand)] if brand else []
    command += ["--dev"] if dev else []
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (package,) = work.glob(f"*-{target}-*.zip")
    out = work / "unpacked"
    with zipfile.ZipFile(package) as zf:
        zf.extractall(out)
    return out


def pre_grant_backend(out: Path) -> Path:
    """The unpacked build `out` with the loopback backend added to its host permissions (see
    TEST_GRANTED_HOSTS)."""
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["host_permissions"] = manifest["host_permissions"] + TEST_GRANTED_HOSTS
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


@pytest.fixture(scope="session")
def extension_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generic Web Store build, unpacked, plus the pre-granted loopback backend."""
    return pre_grant_backend(build_extension(tmp_path_factory.mktemp("ext")))


@pytest.fixture
def fake_linkedin(tmp_path: Path):
    with FakeLinkedIn(tmp_path) as li:
        yield li


def _off_this_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Sync Playwright keeps an event loop on the test's thread: `asyncio.run` work runs beside it."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


class LiveBackend:
    """The real service + the Unipile simulator, behind the interface the tests use:
    `url`, `requests`, `pairing_code(user_id)`, `sync_requests(reason, since)`, `wait_for`,
    `fail_with(status, retry_after)`, `stop()`/`start()` (same port, same database);
    plus the integrator API (`accounts`, `erase_user`) and the simulator's control API
    (`script`, `sim_accounts`, `sim_calls`, `sim_status`, `deliver_webhooks_to_service`)."""

    def __init__(self, tmp_path: Path, simulator: Any, **overrides: Any) -> None:
        from cookiesync.domain.integrator.services import create_api_key
        from cookiesync.db.engine import migrate
        from cookiesync.settings import ensure_local_secrets

        self.simulator = simulator
        self.port = free_port()
        settings = make_settings(tmp_path, unipile_dsn=simulator.url, unipile_api_key=simulator.api_key,
                                 port=self.port, public_url=f"http://127.0.0.1:{self.port}", **overrides)
        self.settings = ensure_local_secrets(settings, say=lambda m: None)
        migrate(self.settings.database)
        api_key = asyncio.run(create_api_key(self.settings, "e2e"))
        self.recorder = Recorder()
        self._users: set[str] = set()
        self.service = Service(self.settings, self._serve(), api_key)

    # --- the service
    def _serve(self) -> ServerThread:
        from cookiesync.app import create_app

        return ServerThread(self.recorder.wrap(create_app(self.settings)), port=self.port).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.service.server is not None:
            self.service.server.stop()
            assert not self.service.server.thread.is_alive(), "the service did not stop"
            self.service.server = None

    def start(self) -> "LiveBackend":
        """A new app and server on the same port, settings and SQLite database (a restart)."""
        assert self.service.server is None, "already running"
        self.service.server = self._serve()
        return self

    def close(self) -> None:
        self.stop()
        self.service.http.close()

    # --- integrator API
    def pairing_code(self, user_id: str = "user-1") -> str:
        """A one-time code minted through the integrator API (the user is created first if needed)."""
        if user_id not in self._users:
            self.service.new_user(user_id, email=f"{user_id}@example.com")
            self._users.add(user_id)
        r = self.service.integrator("POST", f"/v1/users/{user_id}/pairing-codes")
        assert r.status_code == 201, r.text
        return r.json()["code"]

    def accounts(self, user_id: str = "user-1") -> list[dict]:
        return self.service.accounts(user_id)

    def link(self, plain_id: str, user_id: str = "user-1") -> dict | None:
        return next((a for a in self.accounts(user_id) if a["plain_id"] == plain_id), None)

    def erase_user(self, user_id: str = "user-1") -> dict:
        """`DELETE /v1/users/{id}`: cookies, links, devices (their tokens) gone."""
        r = self.service.integrator("DELETE", f"/v1/users/{user_id}")
        assert r.status_code == 200, r.text
        self._users.discard(user_id)
        return r.json()

    # --- the simulator (Unipile)
    def script(self, li_at: str, plain_id: str, outcomes: list[str] | None = None) -> None:
        """Tell the simulator which LinkedIn member a cookie belongs to (and the run-wide log
        check to look for that cookie)."""
        USED_SECRETS.add(li_at)
        body: dict[str, Any] = {"li_at": li_at, "plain_id": plain_id, "name": f"Member {plain_id}"}
        if outcomes:
            body["outcomes"] = outcomes
        sim_post(self.simulator, "/_sim/cookies", json=body).raise_for_status()

    def sim_accounts(self) -> list[dict]:
        return sim_get(self.simulator, "/_sim/accounts").json()["items"]

    def sim_calls(self) -> list[dict]:
        return sim_get(self.simulator, "/_sim/calls").json()["items"]

    def deliver_webhooks_to_service(self) -> None:
        """Point the simulator's account-status webhook at the service, with its secret."""
        sim_post(self.simulator, "/_sim/config", json={
            "webhook_url": f"{self.url}/v1/webhooks/unipile/account-status",
            "webhook_header": self.settings.webhook_header, "webhook_secret": self.settings.webhook_secret,
        }).raise_for_status()

    def sim_status(self, account_id: str, message: str) -> dict:
        """Unipile changes an account's status and fires its webhook(s); returns the deliveries."""
        r = sim_post(self.simulator, f"/_sim/accounts/{account_id}/status", json={"message": message})
        assert r.status_code == 200, r.text
        return r.json()

    # --- what the extension sent
    @property
    def requests(self) -> list[Recorded]:
        return self.recorder.snapshot()

    def fail_with(self, status: int | None, retry_after: str | None = None) -> None:
        self.recorder.fail_with(status, retry_after)

    def sync_requests(self, reason: str | None = None, since: float = 0.0) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/v1/extension/sync" and r.at >= since
                and (reason is None or r.reason == reason)]

    def wait_for(self, predicate: Callable[[], Any], timeout: float, pump: Callable[[float], None],
                 what: str = "condition") -> Any:
        return wait_for(predicate, timeout, sleep=pump, what=lambda _: (
            f"timed out after {timeout:.1f} s waiting for {what}; the service saw "
            f"{[(r.method, r.path, r.reason, r.status) for r in self.requests]}"))


@pytest.fixture
def backend(simulator, tmp_path: Path):
    live = _off_this_thread(LiveBackend, tmp_path, simulator)
    try:
        yield live
    finally:
        live.close()


@dataclass
class Browser:
    """One Chromium with the extension loaded, and helpers to look at it."""

    ctx: Any
    sw: Any
    ext_id: str
    console: list[str] = field(default_factory=list)

    def pump(self, seconds: float) -> None:
        """Sleep while letting Playwright deliver events (console, workers)."""
        self.ctx.pages[0].wait_for_timeout(seconds * 1000) if self.ctx.pages else time.sleep(seconds)

    def popup(self) -> Any:
        page = self.ctx.new_page()
        page.set_viewport_size({"width": 370, "height": 120})
        page.goto(f"chrome-extension://{self.ext_id}/popup.html")
        page.wait_for_selector("body[data-phase]")
        return page

    def storage(self, key: str) -> Any:
        return self.sw.evaluate(f"chrome.storage.local.get({json.dumps(key)}).then(r => r[{json.dumps(key)}] ?? null)")

    def alarm(self) -> Any:
        return self.sw.evaluate("chrome.alarms.get('cookiesync-sync').then(a => a ?? null)")

    def set_linkedin_cookies(self, li_at: str, li_a: str | None) -> None:
        cookies = [{"name": "li_at", "value": li_at, "domain": ".linkedin.com", "path": "/", "secure": True,
                    "httpOnly": True, "sameSite": "None", "expires": time.time() + 86400}]
        if li_a is not None:
            cookies.append({"name": "li_a", "value": li_a, "domain": ".linkedin.com", "path": "/", "secure": True,
                            "httpOnly": True, "sameSite": "None", "expires": time.time() + 86400})
        else:
            self.ctx.clear_cookies(name="li_a")
        self.ctx.add_cookies(cookies)

    def stop_service_worker(self) -> None:
        page = self.ctx.pages[0] if self.ctx.pages else self.ctx.new_page()
        cdp = self.ctx.new_cdp_session(page)
        cdp.send("ServiceWorker.enable")
        cdp.send("ServiceWorker.stopAllWorkers")
        cdp.detach()


@pytest.fixture
def launch(chromium_path: str, extension_build: Path, fake_linkedin: FakeLinkedIn, tmp_path: Path):
    """`launch()` → a Browser on a fresh profile; `launch(profile)` relaunches on an existing one."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    contexts: list[Any] = []

    def _launch(profile: Path | None = None, extension: Path | None = None, hosts: dict[str, int] | None = None) -> Browser:
        """`extension`: another unpacked build (default: the generic one); `hosts`: more host names to
        map to loopback ports (each site's HTTPS port, reached as that host on 443)."""
        user_data = profile or (tmp_path / "profile")
        user_data.mkdir(exist_ok=True)
        ext = str(extension or extension_build)
        rules = ", ".join([f"MAP www.linkedin.com 127.0.0.1:{fake_linkedin.port}",
                           *(f"MAP {host} 127.0.0.1:{port}" for host, port in (hosts or {}).items())])
        ctx = pw.chromium.launch_persistent_context(
            str(user_data),
            executable_path=chromium_path,
            headless=True,
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--disable-extensions-except={ext}",
                f"--load-extension={ext}",
                f"--host-resolver-rules={rules}",
                "--ignore-certificate-errors",
            ],
        )
        contexts.append(ctx)
        console: list[str] = []
        ctx.on("console", lambda msg: console.append(msg.text))
        sw = next((w for w in ctx.service_workers if w.url.startswith("chrome-extension://")), None) \
            or ctx.wait_for_event("serviceworker", predicate=lambda w: w.url.startswith("chrome-extension://"),
                                  timeout=15000)
        return Browser(ctx=ctx, sw=sw, ext_id=sw.url.split("/")[2], console=console)

    try:
        yield _launch
    finally:
        for ctx in contexts:
            try:
                ctx.close()
            except Exception:
                pass
        pw.stop()


@pytest.fixture
def popup_shot():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def _shot(page: Any, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return _shot
