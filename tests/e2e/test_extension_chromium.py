"""The browser extension, end to end, in Debian's headless Chromium.

The real extension (extension/) is loaded unpacked; it talks to a fake
https://www.linkedin.com on loopback and to the `backend` fixture (a fake of the
extension API for now, see conftest.py). Popup screenshots land in
artifacts/extension/.
"""
from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import EXTENSION

pytestmark = pytest.mark.chromium

VERSION = json.loads((EXTENSION / "manifest.json").read_text())["version"]
MEMBER_A, MEMBER_B = "100200300", "987654321"
A_LI_AT, A_LI_A = "AQEDAR-member-a-li-at-0001", "AQJ2-member-a-li-a-0001"


def pair_via_popup(browser, backend, user_id: str = "user-1"):
    """Type the backend URL and a pairing code in the popup and press Pair."""
    page = browser.popup()
    page.fill("#backend-url", backend.url)
    page.fill("#pairing-code", backend.pairing_code(user_id))
    page.click("#pair-button")
    page.wait_for_selector("body[data-phase=paired]", timeout=10000)
    return page


def assert_no_secrets_logged(browser, *secrets: str) -> None:
    lines = [line for line in browser.console if "[cookiesync]" in line]
    assert lines, "the service worker's [cookiesync] log lines did not reach the test"
    for secret in secrets:
        assert not [line for line in browser.console if secret in line], "a secret value reached the console"


def test_pair_first_sync_cookie_change_member_switch_and_unpair(launch, backend, fake_linkedin, popup_shot):
    browser = launch()
    page = browser.popup()
    assert page.text_content("#headline") == "Not paired"
    popup_shot(page, "popup-unpaired")
    page.close()

    browser.set_linkedin_cookies(A_LI_AT, A_LI_A)
    fake_linkedin.member = MEMBER_A
    t0 = time.time()
    page = pair_via_popup(browser, backend)

    # Pairing: exactly the documented body.
    pair_req = next(r for r in backend.requests if r.path == "/v1/extension/pair")
    assert set(pair_req.body) == {"pairing_code", "extension_version"}
    assert pair_req.body["extension_version"] == VERSION

    # First sync: exactly the browser's cookies, user agent and member id.
    first = backend.wait_for(lambda: backend.sync_requests(since=t0), 10, browser.pump, "the first sync")[0]
    user_agent = browser.sw.evaluate("navigator.userAgent")
    assert first.body == {"li_at": A_LI_AT, "li_a": A_LI_A, "user_agent": user_agent,
                          "plain_id": MEMBER_A, "extension_version": VERSION}
    assert list(first.body) == ["li_at", "li_a", "user_agent", "plain_id", "extension_version"]
    assert first.reason == "manual"
    assert first.token
    assert first.headers["content-type"].startswith("application/json")
    assert first.status == 200
    # The feed page was fetched with the LinkedIn cookies.
    assert f"li_at={A_LI_AT}" in fake_linkedin.feed_requests()[-1]["cookie"]

    page.wait_for_selector("#plain-id:has-text('100200300')")
    assert page.text_content("#headline") == "Paired and synced"
    assert "connected" in page.text_content("#link-status")
    assert page.is_hidden("#error-box")
    assert "never" not in page.text_content("#last-sync")
    popup_shot(page, "popup-paired-synced")

    # The token is stored; the alarm follows the server's next_sync_in_s (900 s = 15 min).
    device = browser.storage("device")
    assert device["token"] == first.token and device["baseUrl"] == backend.url
    assert browser.alarm()["periodInMinutes"] == 15

    # Changing li_at in the browser → a cookie-change sync within a few seconds.
    t1 = time.time()
    browser.set_linkedin_cookies("AQEDAR-member-a-li-at-0002", A_LI_A)
    changed = backend.wait_for(lambda: backend.sync_requests("cookie-change", since=t1), 6, browser.pump,
                               "a cookie-change sync")
    browser.pump(2.0)  # debounced: one sync for the burst of cookie events
    assert len(backend.sync_requests("cookie-change", since=t1)) == 1
    assert changed[0].body["li_at"] == "AQEDAR-member-a-li-at-0002"
    assert changed[0].body["li_a"] == A_LI_A and changed[0].body["plain_id"] == MEMBER_A
    assert changed[0].at - t1 < 5

    # The user switches LinkedIn accounts: other member, other cookies, no li_a.
    t2 = time.time()
    fake_linkedin.member = MEMBER_B
    browser.set_linkedin_cookies("AQEDAR-member-b-li-at-0001", None)
    switched = backend.wait_for(
        lambda: [r for r in backend.sync_requests("cookie-change", since=t2) if r.body["plain_id"] == MEMBER_B],
        8, browser.pump, "a sync for the other member")
    assert switched[-1].body == {"li_at": "AQEDAR-member-b-li-at-0001", "li_a": None, "user_agent": user_agent,
                                 "plain_id": MEMBER_B, "extension_version": VERSION}
    page.wait_for_selector(f"#plain-id:has-text('{MEMBER_B}')")

    # The options page tells the same story, in more detail.
    options = browser.ctx.new_page()
    options.goto(f"chrome-extension://{browser.ext_id}/options.html")
    options.wait_for_selector(f"#details dd:has-text('{MEMBER_B}')")
    details = options.text_content("#details")
    assert VERSION in details and backend.url in details and "user-1" in details and "cookie-change" in details
    popup_shot(options, "options")
    options.close()

    # Unpair: DELETE /v1/extension/device with the token, and the token is gone here.
    token = device["token"]
    page.click("#unpair")
    page.wait_for_selector("body[data-phase=unpaired]")
    delete = [r for r in backend.requests if r.method == "DELETE"]
    assert [(r.path, r.token, r.status) for r in delete] == [("/v1/extension/device", token, 204)]
    assert browser.storage("device") is None
    assert browser.alarm() is None
    n = len(backend.sync_requests())
    assert browser.sw.evaluate("syncNow('manual')")["outcome"] == "not_paired"
    assert len(backend.sync_requests()) == n

    assert_no_secrets_logged(browser, A_LI_AT, A_LI_A, "AQEDAR-member-a-li-at-0002",
                             "AQEDAR-member-b-li-at-0001", token)


def test_not_signed_in_or_no_member_id_sends_nothing(launch, backend, fake_linkedin, popup_shot):
    browser = launch()
    page = pair_via_popup(browser, backend)  # no LinkedIn cookies at all
    page.wait_for_selector("#error-box:visible")
    assert "not signed in to LinkedIn" in page.text_content("#last-error")
    assert page.text_content("#headline") == "Paired — nothing sent"
    assert backend.sync_requests() == []
    popup_shot(page, "popup-not-signed-in")

    # Signed in, but LinkedIn's page carries no member id: still nothing sent, and said so.
    fake_linkedin.mode = "no_plain_id"
    browser.set_linkedin_cookies(A_LI_AT, A_LI_A)
    page.wait_for_selector("#last-error:has-text('member id')", timeout=8000)
    assert backend.sync_requests() == []

    # LinkedIn sends the browser to its sign-in page (expired session).
    fake_linkedin.mode = "signed_out"
    result = browser.sw.evaluate("syncNow('manual')")
    assert result["outcome"] == "linkedin_signed_out" and not result["ok"]
    page.wait_for_selector("#last-error:has-text('sign-in page')")
    assert backend.sync_requests() == []

    fake_linkedin.mode = "feed"
    result = browser.sw.evaluate("syncNow('manual')")
    assert result["ok"] and result["plainId"] == fake_linkedin.member
    assert len(backend.sync_requests()) == 1
    page.wait_for_selector("#error-box", state="hidden")


def test_backend_errors_back_off_and_recover_by_themselves(launch, backend, fake_linkedin, popup_shot):
    browser = launch()
    browser.set_linkedin_cookies(A_LI_AT, A_LI_A)
    page = pair_via_popup(browser, backend)
    backend.wait_for(lambda: backend.sync_requests(), 5, browser.pump, "the first sync")

    period_min = 0.03  # 1.8 s heartbeat → backoff base 1.8 s, cap 7.2 s
    browser.sw.evaluate(f"setAlarmPeriod({period_min})")
    base = period_min * 60

    # 5xx: retried by alarm with growing, jittered delays.
    t0 = time.time()
    backend.fail_with(503)
    failed = backend.wait_for(lambda: (lambda f: f if len(f) >= 3 else None)(
        [r for r in backend.sync_requests(since=t0) if r.status == 503]), 20, browser.pump, "three 503 answers")
    gaps = [b.at - a.at for a, b in zip(failed, failed[1:])]
    assert base / 2 - 0.3 <= gaps[0] <= base + 1.2, gaps        # after failure 1: 0.9–1.8 s
    assert base - 0.3 <= gaps[1] <= 2 * base + 1.2, gaps        # after failure 2: 1.8–3.6 s
    assert all(r.reason == "alarm" for r in failed[1:])
    page.wait_for_selector("#last-error:has-text('HTTP 503')")
    assert page.text_content("#headline") == "Paired — last sync failed"
    assert page.is_visible("#next-try")
    status = browser.storage("status")
    assert status["failures"] >= 2 and status["gate"] == "backoff"
    assert status["nextAllowedAt"] > status["lastAttemptAt"]
    assert abs(browser.alarm()["scheduledTime"] - status["nextAllowedAt"]) < 1500
    popup_shot(page, "popup-error")

    # Backend down entirely: "could not reach", still backing off.
    backend.fail_with(None)
    backend.stop()
    result = browser.sw.evaluate("syncNow('manual')")
    assert result["outcome"] == "network" and not result["ok"]
    page.wait_for_selector("#last-error:has-text('Could not reach the sync server')")
    down = browser.storage("status")
    assert down["failures"] >= 3
    assert down["nextAllowedAt"] - down["lastAttemptAt"] <= 4 * base * 1000 + 200  # capped
    # An alarm inside the backoff window does not hammer the server.
    deferred = browser.sw.evaluate("syncNow('alarm')")
    assert deferred["outcome"] == "deferred" and deferred["gate"] == "backoff"

    # Backend back on the same port: the alarm path recovers without any click.
    t1 = time.time()
    backend.start()
    recovered = backend.wait_for(
        lambda: [r for r in backend.sync_requests("alarm", since=t1) if r.status == 200],
        4 * base + 6, browser.pump, "the extension to recover")
    assert recovered[0].body["li_at"] == A_LI_AT
    page.wait_for_selector("#error-box", state="hidden")
    assert page.text_content("#headline") == "Paired and synced"
    status = browser.storage("status")
    assert status["failures"] == 0 and status["nextAllowedAt"] is None


def test_429_honours_retry_after(launch, backend, fake_linkedin):
    browser = launch()
    browser.set_linkedin_cookies(A_LI_AT, A_LI_A)
    pair_via_popup(browser, backend)
    backend.wait_for(lambda: backend.sync_requests(), 5, browser.pump, "the first sync")

    backend.fail_with(429, "2")
    t0 = time.time()
    limited = browser.sw.evaluate("syncNow('manual')")
    assert limited["outcome"] == "rate_limited"
    assert 1500 <= limited["retryAt"] - t0 * 1000 <= 3000
    n = len(backend.sync_requests())
    # Even a manual sync waits for Retry-After.
    assert browser.sw.evaluate("syncNow('manual')")["outcome"] == "deferred"
    assert len(backend.sync_requests()) == n

    backend.fail_with(None)
    after = backend.wait_for(lambda: [r for r in backend.sync_requests("alarm", since=t0) if r.status == 200],
                             8, browser.pump, "the sync after Retry-After")
    assert after[0].at - t0 >= 1.9


def test_401_asks_to_pair_again(launch, backend, fake_linkedin, popup_shot):
    browser = launch()
    browser.set_linkedin_cookies(A_LI_AT, A_LI_A)
    page = pair_via_popup(browser, backend)
    backend.wait_for(lambda: backend.sync_requests(), 5, browser.pump, "the first sync")

    backend.revoke_all_tokens()
    result = browser.sw.evaluate("syncNow('manual')")
    assert result["outcome"] == "unauthorized" and result["phase"] == "pair_again"
    page.wait_for_selector("body[data-phase=pair_again]")
    assert page.text_content("#headline") == "Pair again"
    assert "Pair again" in page.text_content("#pair-again-notice")
    assert page.input_value("#backend-url") == backend.url  # prefilled for the new code
    popup_shot(page, "popup-pair-again")

    # Syncing has stopped: no token, no alarm, nothing sent.
    assert browser.storage("device") is None
    assert browser.alarm() is None
    n = len(backend.sync_requests())
    assert browser.sw.evaluate("syncNow('alarm')")["outcome"] == "pair_again"
    assert len(backend.sync_requests()) == n

    # A new code pairs it again.
    page.fill("#pairing-code", backend.pairing_code())
    page.click("#pair-button")
    page.wait_for_selector("body[data-phase=paired]")
    backend.wait_for(lambda: backend.sync_requests()[-1].status == 200 and len(backend.sync_requests()) > n,
                     5, browser.pump, "a sync after pairing again")


def test_survives_service_worker_stop_and_syncs_at_startup_once(launch, backend, fake_linkedin, tmp_path):
    browser = launch()
    browser.set_linkedin_cookies(A_LI_AT, A_LI_A)
    pair_via_popup(browser, backend)
    backend.wait_for(lambda: backend.sync_requests(), 5, browser.pump, "the first sync")
    browser.sw.evaluate("self.__marker = 1")
    browser.sw.evaluate("setAlarmPeriod(0.03)")  # fires about every 1.8 s

    t0 = time.time()
    browser.stop_service_worker()
    browser.pump(0.3)
    alarm_syncs = backend.wait_for(lambda: [r for r in backend.sync_requests("alarm", since=t0) if r.status == 200],
                                   10, browser.pump, "an alarm sync after the worker was stopped")
    assert alarm_syncs[0].body["plain_id"] == fake_linkedin.member
    # It really was a new worker (globals gone), and it did not redo the startup sync.
    assert browser.sw.evaluate("typeof self.__marker") == "undefined"
    assert backend.sync_requests("startup") == []

    # A browser restart is a new session: exactly one startup sync.
    browser.sw.evaluate("setAlarmPeriod(null)")
    browser.ctx.close()
    t1 = time.time()
    again = launch(tmp_path / "profile")
    startup = backend.wait_for(lambda: backend.sync_requests("startup", since=t1), 10, again.pump, "the startup sync")
    assert startup[0].body["li_at"] == A_LI_AT and startup[0].status == 200
    # Waking the worker again (a click in the popup) is not a new session either.
    again.stop_service_worker()
    again.pump(0.3)
    n = len(backend.sync_requests(since=t1))
    page = again.popup()
    page.click("#sync-now")
    backend.wait_for(lambda: len(backend.sync_requests(since=t1)) > n, 5, again.pump, "the manual sync")
    assert [r.reason for r in backend.sync_requests(since=t1)] == ["startup", "manual"]
