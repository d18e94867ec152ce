"""The extension's Firefox package, end to end, in Debian's headless firefox-esr, against the REAL
service and the Unipile simulator.

extension/tools/build.mjs's Firefox zip (MV3, `background.scripts`, the `browser.*` namespace
through platform.js) is installed as a temporary add-on over Marionette (tests/support/firefox.py).
Its moz-extension:// UUID is fixed by a pref, so the test knows its pages' URLs. `www.linkedin.com`
(and the integrator's hosts) are the fakes of tests/support/extension.py, reached through a CONNECT
tunnel that is the browser's proxy; the cookies are set in the browser over WebDriver, on the fake
LinkedIn's page, before the add-on is installed.

* The generic build, given the loopback backend's host permission as the Chromium build is
  (conftest.TEST_GRANTED_HOSTS): its popup, opened as a page, pairs with the address and a code
  minted through the integrator API; the service then holds the device and the link with the
  browser's cookies and Firefox's user agent, and the simulator the account connected with them.
* The white-label build (backend and the integrator's origin baked in): the integrator's page runs
  the README's snippet, which in Firefox goes through bridge.js; a page on another origin gets no
  bridge.
"""
from __future__ import annotations

import json
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa

from cookiesync.db.schema import devices, links
from cookiesync.security import cookie_fingerprint, hash_token

from tests.e2e.conftest import ARTIFACTS, build_extension, pre_grant_backend
from tests.e2e.test_extension_branded_chromium import APP, OTHER, branded_build, integrator  # noqa: F401 (fixture)
from tests.support.components import need
from tests.support.extension import EXTENSION
from tests.support.firefox import FIREFOX, Firefox, HostTunnel, user_prefs
from tests.support.simulator import fingerprint

pytestmark = pytest.mark.firefox

VERSION = json.loads((EXTENSION / "manifest.json").read_text())["version"]
ADDON_ID = json.loads((EXTENSION / "brand.json").read_text())["firefox_id"]
MEMBER = "100200300"
LI_AT, LI_A = "AQEDAR-firefox-li-at-0001", "AQJ2-firefox-li-a-0001"
LI_AT_2 = "AQEDAR-firefox-li-at-0002"


@pytest.fixture
def firefox_build(tmp_path: Path) -> Path:
    """The Firefox package, unpacked, plus the pre-granted loopback backend."""
    out = pre_grant_backend(build_extension(tmp_path / "ext", target="firefox"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["background"] == {"scripts": ["background.js"], "type": "module"}  # not a service worker
    assert manifest["browser_specific_settings"]["gecko"]["id"] == ADDON_ID
    return out


@pytest.fixture
def launch_firefox(fake_linkedin, tmp_path: Path):
    """`launch_firefox(addon_id, hosts)` → a headless firefox-esr on a fresh profile, its proxy a tunnel
    from www.linkedin.com (and `hosts`: name → loopback port) to the fakes; `browser.addon` is the
    add-on's moz-extension:// base URL once installed (its UUID fixed by the profile's prefs)."""
    need(FIREFOX.exists(), f"{FIREFOX} is missing (apt-get install firefox-esr): the Firefox test cannot run")
    with ExitStack() as stack:
        def launch(addon_id: str, hosts: dict[str, int] | None = None) -> Firefox:
            tunnel = stack.enter_context(HostTunnel({"www.linkedin.com": fake_linkedin.port, **(hosts or {})}))
            addon_uuid = str(uuid.uuid4())
            browser = Firefox(tmp_path / "profile", user_prefs(tunnel.port, {addon_id: addon_uuid}),
                              tmp_path / "firefox.log")
            stack.callback(browser.close)
            browser.addon = f"moz-extension://{addon_uuid}"
            return browser

        yield launch


def sign_in_to_linkedin(firefox: Firefox, li_at: str = LI_AT, li_a: str = LI_A) -> None:
    """The user is signed in to LinkedIn in this browser: the cookies set on its page over WebDriver."""
    firefox("WebDriver:Navigate", url="https://www.linkedin.com/login")
    assert firefox("WebDriver:GetTitle") == "LinkedIn Login"
    for name, value in (("li_at", li_at), ("li_a", li_a)):
        firefox("WebDriver:AddCookie", cookie={"name": name, "value": value, "domain": ".linkedin.com", "path": "/",
                                               "secure": True, "httpOnly": True, "sameSite": "None",
                                               "expiry": int(time.time()) + 86400})


def device_and_link(backend, plain_id: str) -> tuple[list[dict], dict]:
    """The user's device rows and the member's link row, read from the service's database."""
    async def q(conn):
        rows = (await conn.execute(sa.select(devices).where(devices.c.user_id == "user-1"))).all()
        link = (await conn.execute(sa.select(links).where(links.c.plain_id == plain_id))).one()
        return [dict(r._mapping) for r in rows], dict(link._mapping)

    return backend.service.db(q)


def test_firefox_pairs_from_the_popup_and_syncs_the_browsers_cookie(launch_firefox, firefox_build, backend,
                                                                    fake_linkedin):
    backend.script(LI_AT, MEMBER)
    fake_linkedin.member = MEMBER
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    firefox = launch_firefox(ADDON_ID)

    # The user is signed in to LinkedIn in this browser, and then installs the add-on: the Firefox
    # package, as a temporary add-on.
    sign_in_to_linkedin(firefox)
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

    # LinkedIn renews li_at in the browser: Firefox's cookies.onChanged wakes the background page and
    # its debounced cookie-change sync carries the new cookie.
    backend.script(LI_AT_2, MEMBER)
    t1 = time.time()
    sign_in_to_linkedin(firefox, LI_AT_2)
    changed = backend.wait_for(lambda: [r for r in backend.sync_requests("cookie-change", since=t1) if r.status == 200],
                               10, time.sleep, "a cookie-change sync")
    assert changed[0].body == {**sync.body, "li_at": LI_AT_2} and changed[0].token == token
    assert changed[0].answer["link_status"] == "connected"

    # No secret reached Firefox's console, where the add-on's own lines are.
    output = firefox.output()
    assert "[cookiesync]" in output and "sync (manual): HTTP 200" in output
    for secret in (LI_AT, LI_A, LI_AT_2, token):
        assert secret not in output, "a secret reached Firefox's console"


def test_firefox_connect_button_on_the_integrators_page_pairs_through_the_bridge(launch_firefox, backend,
                                                                               fake_linkedin, integrator, tmp_path):
    """The white-label Firefox build: no externally_connectable there, so the integrator's page reaches
    the add-on through bridge.js (a content script on the brand's pairing origins only)."""
    backend.script(LI_AT, MEMBER)
    fake_linkedin.member = MEMBER
    build = branded_build(tmp_path, backend, target="firefox")
    manifest = json.loads((build / "manifest.json").read_text())
    addon_id = manifest["browser_specific_settings"]["gecko"]["id"]
    assert [c["matches"] for c in manifest["content_scripts"]] == [[f"https://{APP}/*"]]
    firefox = launch_firefox(addon_id, hosts={APP: integrator.port, OTHER: integrator.port})
    firefox("WebDriver:SetWindowRect", width=640, height=300)
    sign_in_to_linkedin(firefox)
    assert firefox.install_temporary(build) == addon_id
    integrator.extension_id = addon_id

    # A page on an origin the build does not list gets no bridge: "not installed", nothing sent.
    firefox("WebDriver:Navigate", url=f"https://{OTHER}/connect")
    assert firefox.script("return document.documentElement.dataset.cookiesync ?? null;") is None
    firefox.click("#connect-linkedin")
    firefox.wait_text("#connect-result", lambda text: "not installed" in text, 10, "the page to say not installed")
    assert integrator.code_requests == [] and backend.requests == []

    # The integrator's page: the bridge marks it, and one click pairs with the baked-in backend.
    firefox("WebDriver:Navigate", url=f"https://{APP}/connect")
    assert firefox.wait_script("return document.documentElement.dataset.cookiesync;", 10,
                               "bridge.js to mark the page") == "ready"
    t0 = time.time()
    firefox.click("#connect-linkedin")
    firefox.wait_text("#connect-result", lambda text: "connected" in text, 15, "the page to say connected")
    assert firefox.script("return document.querySelector('#connect-result').dataset.state;") == "paired"
    assert integrator.code_requests == [APP]
    (pair,) = [r for r in backend.requests if r.path == "/v1/extension/pair"]
    assert pair.status == 201 and pair.answer["user_id"] == "user-1"
    sync = backend.sync_requests(since=t0)[0]
    assert sync.status == 200 and sync.reason == "manual" and sync.token == pair.answer["device_token"]
    assert (sync.body["li_at"], sync.body["li_a"], sync.body["plain_id"]) == (LI_AT, LI_A, MEMBER)

    # {type: "status"} through the bridge: paired, and nothing secret in the answer.
    status = firefox.script("""
        return new Promise((resolve) => {
          addEventListener('message', (e) => {
            if (e.data && e.data.cookiesync === 'answer' && e.data.id === 's1') resolve(e.data.answer);
          });
          postMessage({cookiesync: 'request', id: 's1', message: {type: 'status'}}, location.origin);
        });""")
    assert status["paired"] is True and status["linkStatus"] in ("pending", "connected")
    assert set(status) == {"ok", "installed", "version", "paired", "needsPairing", "linkStatus"}
    assert pair.answer["device_token"] not in json.dumps(status)
    firefox.screenshot(ARTIFACTS / "firefox-branded-integrator-page.png")
