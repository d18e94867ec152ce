"""Fixtures for driving the real extension in Debian's headless Chromium.

See /work/shared/docs/extension-testing.md for why the launch looks like this.

`backend` is the only fixture that knows what sits behind the extension's API;
swap it for the real service (same interface as `fakes.FakeBackend`) and the
tests stay as they are.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.e2e.fakes import FakeBackend, FakeLinkedIn

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "extension"
ARTIFACTS = ROOT / "artifacts" / "extension"
CHROMIUM = Path("/usr/bin/chromium")
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# The shipped manifest asks for the backend origin at pairing time (optional host
# permission, chrome.permissions.request from the popup's click). Headless Chromium
# shows that prompt where nobody can click it, so the test build pre-grants the
# loopback backend as if the user had accepted: the popup's request then resolves
# `true` at once and every other code path is the shipped one.
TEST_GRANTED_HOSTS = ["http://127.0.0.1/*"]


def _need(condition: bool, reason: str) -> None:
    """Skip on a laptop that lacks a component; fail under CI=true, where it must be there."""
    if not condition:
        if CI:
            pytest.fail(f"required under CI=true: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    _need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium): the extension's browser tests cannot run")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _need(False, "the playwright package is not installed (pip install -e '.[test]')")
    return str(CHROMIUM)


@pytest.fixture(scope="session")
def extension_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Web Store zip made by extension/package.sh, unpacked, plus the pre-granted loopback backend:
    the tests run exactly the files that ship."""
    work = tmp_path_factory.mktemp("ext")
    done = subprocess.run(["sh", str(EXTENSION / "package.sh"), str(work)], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    (package,) = work.glob("cookiesync-extension-*.zip")
    out = work / "cookiesync"
    with zipfile.ZipFile(package) as zf:
        zf.extractall(out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["host_permissions"] = manifest["host_permissions"] + TEST_GRANTED_HOSTS
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


@pytest.fixture
def fake_linkedin(tmp_path: Path):
    with FakeLinkedIn(tmp_path) as li:
        yield li


@pytest.fixture
def backend():
    fake = FakeBackend().start()
    try:
        yield fake
    finally:
        fake.stop()


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

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
            self.pump(0.05)

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

    def _launch(profile: Path | None = None) -> Browser:
        user_data = profile or (tmp_path / "profile")
        user_data.mkdir(exist_ok=True)
        ext = str(extension_build)
        ctx = pw.chromium.launch_persistent_context(
            str(user_data),
            executable_path=chromium_path,
            headless=True,
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--disable-extensions-except={ext}",
                f"--load-extension={ext}",
                f"--host-resolver-rules=MAP www.linkedin.com 127.0.0.1:{fake_linkedin.port}",
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
