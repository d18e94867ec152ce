"""The extension's Firefox package, end to end, in Debian's headless firefox-esr, against the REAL
service and the Unipile simulator.

extension/tools/build.mjs's Firefox zip (MV3, `background.scripts`, the `browser.*` namespace
through platform.js) is unpacked, given the loopback backend's host permission as the Chromium
build is (conftest.TEST_GRANTED_HOSTS), and installed as a temporary add-on over Marionette
(tests/support/firefox.py). Its moz-extension:// UUID is fixed by a pref, so the test opens its popup
as a page, types the backend's address and a pairing code minted through the integrator API, and
presses Pair as a user would. `www.linkedin.com` is the FakeLinkedIn, reached through a CONNECT
tunnel that is the browser's proxy. The cookies are set in the browser over WebDriver, on the fake
LinkedIn's page. The backend then shows the device and its first sync, with those cookies and
Firefox's user agent, and the simulator the account connected with them.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from cookiesync.db.schema import devices, links
from cookiesync.security import cookie_fingerprint, hash_token

from tests.e2e.conftest import ARTIFACTS, build_extension, pre_grant_backend
from tests.support.components import need
from tests.support.extension import EXTENSION
from tests.support.firefox import FIREFOX, Firefox, LinkedInTunnel, user_prefs
from tests.support.simulator import fingerprint

pytestmark = pytest.mark.firefox

VERSION = json.loads((EXTENSION / "manifest.json").read_text())["version"]
ADDON_ID = json.loads((EXTENSION / "brand.json").read_text())["firefox_id"]
MEMBER = "100200300"
LI_AT, LI_A = "AQEDAR-firefox-li-at-0001", "AQJ2-firefox-li-a-0001"


@pytest.fixture
def firefox_build(tmp_path: Path) -> Path:
    """The Firefox package, unpacked, plus the pre-granted loopback backend."""
    out = pre_grant_backend(build_extension(tmp_path / "ext", target="firefox"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["background"] == {"scripts": ["background.js"], "type": "module"}  # not a service worker
    assert manifest["browser_specific_settings"]["gecko"]["id"] == ADDON_ID
    return out


@pytest.fixture
def firefox(fake_linkedin, tmp_path: Path):
    """Headless firefox-esr on a fresh profile, its proxy the LinkedIn tunnel; `firefox.addon` is the
    add-on's moz-extension:// base URL once installed (its UUID fixed by the profile's prefs)."""
    need(FIREFOX.exists(), f"{FIREFOX} is missing (apt-get install firefox-esr): the Firefox test cannot run")
    addon_uuid = str(uuid.uuid4())
    with LinkedInTunnel(fake_linkedin.port) as tunnel:
        browser = Firefox(tmp_path / "profile", user_prefs(tunnel.port, {ADDON_ID: addon_uuid}),
                          tmp_path / "firefox.log")
        browser.addon = f"moz-extension://{addon_uuid}"
        try:
            yield browser
        finally:
            browser.close()


def device_and_link(backend, plain_id: str) -> tuple[list[dict], dict]:
    """The user's device rows and the member's link row, read from the service's database."""
    async def q(conn):
        rows = (await conn.execute(sa.select(devices).where(devices.c.user_id == "user-1"))).all()
        link = (await conn.execute(sa.select(links).where(links.c.plain_id == plain_id))).one()
        return [dict(r._mapping) for r in rows], dict(link._mapping)

    return backend.service.db(q)


def test_firefox_pairs_from_the_popup_and_syncs_the_browsers_cookie(firefox, firefox_build, backend, fake_linkedin):
    backend.script(LI_AT, MEMBER)
    fake_linkedin.member = MEMBER
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    # The user is signed in to LinkedIn in this browser (the cookies set on its page over WebDriver) …
    firefox("WebDriver:Navigate", url="https://www.linkedin.com/login")
    assert firefox("WebDriver:GetTitle") == "LinkedIn Login"
    for name, value in (("li_at", LI_AT), ("li_a", LI_A)):
        firefox("WebDriver:AddCookie", cookie={"name": name, "value": value, "domain": ".linkedin.com", "path": "/",
                                               "secure": True, "httpOnly": True, "sameSite": "None",
                                               "expiry": int(time.time()) + 86400})
    # … and then installs the add-on: the Firefox package, as a temporary add-on.
    assert firefox.install_temporary(firefox_build) == ADDON_ID

    # Its popup, opened as a page of the add-on: not paired; the user types the address and a code.
    firefox("WebDriver:SetWindowRect", width=400, height=420)
    firefox("WebDriver:Navigate", url=f"{firefox.addon}/popup.html")
    firefox.wait_text("body[data-phase] #headline", lambda text: text == "Not paired", 10, "the unpaired popup")
    firefox.screenshot(ARTIFACTS / "firefox-popup-unpaired.png")
    t0 = time.time()
    firefox.type("#backend-url", backend.url)
    firefox.type("#pairing-code", backend.pairing_code())
    firefox.click("#pair-button")
    firefox.wait_text("#plain-id", lambda text: MEMBER in text, 15, "the popup to show the member after pairing")

    # The backend paired the device for the integrator's user …
    (pair,) = [r for r in backend.requests if r.path == "/v1/extension/pair"]
    assert pair.status == 201 and pair.answer["user_id"] == "user-1"
    assert set(pair.body) == {"pairing_code", "extension_version"} and pair.body["extension_version"] == VERSION
    token = pair.answer["device_token"]
    # … and recorded one sync, the pairing's: exactly the cookies set in the browser, Firefox's user
    # agent, and the member read from the (fake) LinkedIn feed page fetched with those cookies.
    syncs = backend.sync_requests(since=t0)
    sync = syncs[0]
    user_agent = firefox.script("return navigator.userAgent;")
    assert "Firefox/" in user_agent
    assert sync.body == {"li_at": LI_AT, "li_a": LI_A, "user_agent": user_agent, "plain_id": MEMBER,
                         "extension_version": VERSION}
    assert sync.status == 200 and sync.reason == "manual" and sync.token == token and not sync.injected
    assert [r.reason for r in syncs].count("manual") == 1
    assert all(r.body == sync.body for r in syncs), "a later sync sent other values"
    assert f"li_at={LI_AT}" in fake_linkedin.feed_requests()[-1]["cookie"]

    # The service's database: one device (its token hashed), and the member's link with that cookie.
    (device,), link = device_and_link(backend, MEMBER)
    assert device["token_hash"] == hash_token(token) and device["extension_version"] == VERSION
    assert device["revoked_at"] is None and device["last_ip"] == "127.0.0.1"
    assert link["user_id"] == "user-1" and link["user_agent"] == user_agent
    assert link["cookie_fingerprint"] == cookie_fingerprint(backend.settings.signing_secret, LI_AT, LI_A, user_agent)
    assert LI_AT.encode() not in link["cookie_ciphertext"]

    # The service connected the member's Unipile account with exactly those cookies.
    def connected():
        account = backend.link(MEMBER)
        return account if account and account["status"] == "connected" else None

    account = backend.wait_for(connected, 10, time.sleep, "the link to be connected")
    (unipile,) = backend.sim_accounts()
    assert (unipile["li_at_fingerprint"], unipile["li_a_fingerprint"], unipile["user_agent"], unipile["plain_id"]) \
        == (fingerprint(LI_AT), fingerprint(LI_A), user_agent, MEMBER)
    assert account["unipile_account_id"] == unipile["id"]

    # The popup learns it with Sync now.
    firefox.click("#sync-now")
    firefox.wait_text("#link-status", lambda text: text == "connected", 10, "the popup to say connected")
    assert firefox.text("#headline") == "Paired and synced"
    firefox.screenshot(ARTIFACTS / "firefox-popup-paired-synced.png")

    # No secret reached Firefox's console, where the add-on's own lines are.
    output = firefox.output()
    assert "[cookiesync]" in output and "sync (manual): HTTP 200" in output
    for secret in (LI_AT, LI_A, token):
        assert secret not in output, "a secret reached Firefox's console"
