"""A white-label build (extension/tools/build.mjs with a test brand), paired in one click from the
integrator's web page, in Debian's headless Chromium, against the REAL service and the Unipile simulator.

The integrator's app is a fake HTTPS site (tests/support/extension.py `FakeIntegrator`) reached as
https://app.integrator.test through --host-resolver-rules; its "Connect LinkedIn" page runs the
snippet of extension/README.md. The same server also answers as https://other.integrator.test, an
origin the build does not list. Nothing in the build is patched: the test brand bakes in the
loopback backend (a --dev build; a store build refuses loopback) and the integrator's origin.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import build_extension
from tests.support.extension import FakeIntegrator

pytestmark = pytest.mark.chromium

APP = "app.integrator.test"
OTHER = "other.integrator.test"
MEMBER = "100200300"
LI_AT, LI_A = "AQEDAR-branded-li-at-0001", "AQJ2-branded-li-a-0001"


@pytest.fixture
def integrator(backend, tmp_path: Path):
    with FakeIntegrator(tmp_path, APP, mint=lambda: backend.pairing_code("user-1")) as site:
        yield site


def branded_build(tmp_path: Path, backend, target: str = "chrome") -> Path:
    brand = {
        "name": "Acme Outreach — LinkedIn connector",
        "short_name": "Acme",
        "description": "Keeps your LinkedIn account connected to Acme Outreach.",
        "icons": None,
        "backend_url": backend.url,
        "pairing_origins": [f"https://{APP}"],
        "connect_url": f"https://{APP}/connect",
        "firefox_id": "linkedin-connector@acme.example",
    }
    path = tmp_path / "brand.json"
    path.write_text(json.dumps(brand))
    (tmp_path / "build").mkdir()
    return build_extension(tmp_path / "build", path, dev=True, target=target)


def test_connect_button_on_the_integrators_page_pairs_and_syncs(launch, backend, fake_linkedin, integrator,
                                                                tmp_path, popup_shot):
    backend.script(LI_AT, MEMBER)
    fake_linkedin.member = MEMBER
    build = branded_build(tmp_path, backend)
    manifest = json.loads((build / "manifest.json").read_text())
    assert manifest["externally_connectable"] == {"matches": [f"https://{APP}/*"], "ids": []}
    assert "http://127.0.0.1/*" in manifest["host_permissions"] and "optional_host_permissions" not in manifest
    browser = launch(extension=build, hosts={APP: integrator.port, OTHER: integrator.port})
    integrator.extension_id = browser.ext_id
    browser.set_linkedin_cookies(LI_AT, LI_A)

    # The popup of a branded build asks for nothing: no address, no code, a link to the app.
    popup = browser.popup()
    assert popup.text_content("#title") == "Acme"
    assert popup.is_visible("#connect-box") and popup.is_hidden("#pair-form")
    assert popup.get_attribute("#connect-link", "href") == f"https://{APP}/connect"
    popup_shot(popup, "branded-popup-unpaired")

    # A page on an origin the build does not list: Chrome gives it no way to reach the extension,
    # so the snippet says "not installed" and offers the store; nothing reaches the service.
    other = browser.ctx.new_page()
    other.goto(f"https://{OTHER}/connect")
    assert other.evaluate("typeof (window.chrome && chrome.runtime && chrome.runtime.sendMessage)") == "undefined"
    other.click("#connect-linkedin")
    other.wait_for_selector("#connect-result[data-state=not-installed]")
    assert other.is_visible("#install-extension")
    assert integrator.code_requests == [] and backend.requests == []
    assert browser.storage("device") is None

    # The integrator's page: one click pairs the extension with the baked-in backend, no typing.
    page = browser.ctx.new_page()
    page.goto(f"https://{APP}/connect")
    before = page.evaluate(f"new Promise(r => chrome.runtime.sendMessage({json.dumps(browser.ext_id)}, {{type: 'status'}}, r))")
    assert before == {"ok": True, "installed": True, "version": manifest["version"], "paired": False,
                      "needsPairing": True, "linkStatus": None}
    t0 = time.time()
    page.click("#connect-linkedin")
    page.wait_for_selector("#connect-result[data-state=paired]", timeout=15000)
    assert integrator.code_requests == [APP]
    (pair_req,) = [r for r in backend.requests if r.path == "/v1/extension/pair"]
    assert pair_req.status == 201 and pair_req.answer["user_id"] == "user-1"
    assert set(pair_req.body) == {"pairing_code", "extension_version"}

    # The first sync ran at once, with the browser's cookies, and the service shows the device.
    first = backend.wait_for(lambda: [r for r in backend.sync_requests(since=t0) if r.status == 200], 10,
                             browser.pump, "the first sync")[0]
    assert first.reason == "manual" and first.body["li_at"] == LI_AT and first.body["plain_id"] == MEMBER
    assert first.token == pair_req.answer["device_token"]
    export = backend.service.integrator("GET", "/v1/users/user-1/export").json()
    (device,) = export["devices"]
    assert device["extension_version"] == manifest["version"] and device["revoked_at"] is None
    assert device["last_seen_at"] is not None
    assert [c["used_at"] is not None for c in export["pairing_codes"]] == [True]
    assert backend.link(MEMBER)["plain_id"] == MEMBER

    # {type: "status"} now says paired, with the link status, and nothing secret.
    status = page.evaluate(f"new Promise(r => chrome.runtime.sendMessage({json.dumps(browser.ext_id)}, {{type: 'status'}}, r))")
    assert status["paired"] is True and status["linkStatus"] in ("pending", "connected")
    assert set(status) == {"ok", "installed", "version", "paired", "needsPairing", "linkStatus"}
    assert pair_req.answer["device_token"] not in json.dumps(status)
    popup_shot(page, "branded-integrator-page")

    popup.reload()
    popup.wait_for_selector("body[data-phase=paired]")
    popup.wait_for_selector(f"#plain-id:has-text('{MEMBER}')")
    assert popup.text_content("#backend") == backend.url
    popup_shot(popup, "branded-popup-paired")

    # Clicking again (a second code) replaces the pairing: the old token is revoked, one device stays live.
    old_token = first.token
    page.evaluate("document.querySelector('#connect-result').dataset.state = ''")
    page.click("#connect-linkedin")
    page.wait_for_selector("#connect-result[data-state=paired]", timeout=15000)
    backend.wait_for(lambda: len([r for r in backend.requests if r.path == "/v1/extension/pair"]) == 2, 10,
                     browser.pump, "the second pairing")
    backend.wait_for(lambda: [r for r in backend.requests if r.method == "DELETE" and r.token == old_token], 10,
                     browser.pump, "the old token to be revoked")
    assert browser.storage("device")["token"] != old_token
    assert backend.service.sync(old_token, plain_id=MEMBER).status_code == 401
    devices = backend.service.integrator("GET", "/v1/users/user-1/export").json()["devices"]
    assert sorted(d["revoked_at"] is None for d in devices) == [False, True]
