"""The browser extension, end to end, in Debian's headless Chromium, against the REAL
service and the Unipile simulator.

The real extension (extension/, packaged by package.sh) is loaded unpacked; it talks to
a fake https://www.linkedin.com on loopback and to the real cookiesync service
(`backend` fixture, conftest.py: SQLite in tmp_path), which connects accounts in the
Unipile simulator. What reached Unipile is asserted on the simulator's control API
(`/_sim/accounts`, `/_sim/calls`), what the service made of it on the integrator API
(`/v1/users/{id}/accounts`). Only the 5xx burst and the 429 are injected (by the
recording middleware in front of the service). Popup screenshots land in
artifacts/extension/.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from tests.support.extension import EXTENSION
from tests.support.simulator import fingerprint

pytestmark = pytest.mark.chromium

VERSION = json.loads((EXTENSION / "manifest.json").read_text())["version"]
MEMBER_A, MEMBER_B = "100200300", "987654321"
A_LI_AT, A_LI_A = "AQEDAR-member-a-li-at-0001", "AQJ2-member-a-li-a-0001"
A_LI_AT_2 = "AQEDAR-member-a-li-at-0002"
B_LI_AT = "AQEDAR-member-b-li-at-0001"


def pair_via_popup(browser, backend, user_id: str = "user-1"):
    """Type the backend URL and a pairing code (minted through the integrator API) in the popup and press Pair."""
    page = browser.popup()
    page.fill("#backend-url", backend.url)
    page.fill("#pairing-code", backend.pairing_code(user_id))
    page.click("#pair-button")
    page.wait_for_selector("body[data-phase=paired]", timeout=10000)
    return page


def answered(requests, status: int = 200):
    return [r for r in requests if r.status == status]


def when(iso: str) -> datetime:
    at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def connected_link(backend, browser, plain_id: str, user_id: str = "user-1", timeout: float = 10.0) -> dict:
    def check():
        link = backend.link(plain_id, user_id)
        return link if link and link["status"] == "connected" else None

    return backend.wait_for(check, timeout, browser.pump, f"member {plain_id}'s link to be connected")


def extension_settled(backend, browser, timeout: float = 20.0) -> dict:
    """The extension itself has heard the link is no longer being connected: its follow-up syncs
    (lib/attention.js) have stopped, so an injected failure meets the sync the test makes."""
    def check():
        status = browser.storage("status")
        return status if status and status.get("linkStatus") not in (None, "pending", "reconnecting") else None

    return backend.wait_for(check, timeout, browser.pump, "the extension to hear the link settled")


def assert_no_secrets_logged(browser, *secrets: str) -> None:
    lines = [line for line in browser.console if "[cookiesync]" in line]
    assert lines, "the service worker's [cookiesync] log lines did not reach the test"
    for secret in secrets:
        assert not [line for line in browser.console if secret in line], "a secret value reached the console"


def test_pair_connect_cookie_change_member_switch_and_unpair(launch, backend, fake_linkedin, popup_shot):
    backend.script(A_LI_AT, MEMBER_A)
    backend.script(A_LI_AT_2, MEMBER_A)
    backend.script(B_LI_AT, MEMBER_B)
    browser = launch()
    page = browser.popup()
    assert page.text_content("#headline") == "Not paired"
    popup_shot(page, "popup-unpaired")
    page.close()

    browser.set_linkedin_cookies(A_LI_AT, A_LI_A)
    fake_linkedin.member = MEMBER_A
    t0 = time.time()
    page = pair_via_popup(browser, backend)

    # Pairing: exactly the documented body, answered by the service for the integrator's user.
    (pair_req,) = [r for r in backend.requests if r.path == "/v1/extension/pair"]
    assert set(pair_req.body) == {"pairing_code", "extension_version"}
    assert pair_req.body["extension_version"] == VERSION
    assert pair_req.status == 201 and pair_req.answer["user_id"] == "user-1"

    # First sync: exactly the browser's cookies, user agent and member id.
    first = backend.wait_for(lambda: answered(backend.sync_requests(since=t0)), 10, browser.pump, "the first sync")[0]
    user_agent = browser.sw.evaluate("navigator.userAgent")
    assert first.body == {"li_at": A_LI_AT, "li_a": A_LI_A, "user_agent": user_agent,
                          "plain_id": MEMBER_A, "extension_version": VERSION}
    assert list(first.body) == ["li_at", "li_a", "user_agent", "plain_id", "extension_version"]
    assert first.reason == "manual"
    assert first.token and first.token == pair_req.answer["device_token"]
    assert first.headers["content-type"].startswith("application/json")
    assert not first.injected
    # The service answers before it talks to Unipile: the first connect runs right after.
    # pending: the server asks the extension back within a minute to learn the outcome
    assert first.answer["link_status"] == "pending" and first.answer["next_sync_in_s"] == 60
    # The feed page was fetched with the LinkedIn cookies.
    assert f"li_at={A_LI_AT}" in fake_linkedin.feed_requests()[-1]["cookie"]

    # The service connected the account in Unipile with exactly the browser's cookies and user agent.
    link_a = connected_link(backend, browser, MEMBER_A)
    (account_a,) = backend.sim_accounts()
    assert (account_a["li_at_fingerprint"], account_a["li_a_fingerprint"], account_a["user_agent"],
            account_a["plain_id"], account_a["ip"], account_a["country"]) \
        == (fingerprint(A_LI_AT), fingerprint(A_LI_A), user_agent, MEMBER_A, None, None)  # loopback: no location
    assert account_a["status"] == "OK"
    assert link_a["unipile_account_id"] == account_a["id"] and link_a["auto_connect"]

    page.wait_for_selector(f"#plain-id:has-text('{MEMBER_A}')")
    assert page.text_content("#headline") == "Paired and synced"
    assert page.text_content("#link-status") in ("being connected", "connected")  # as the last answer said
    # "Sync now": the service now answers with the connected link and its Unipile account.
    page.click("#sync-now")
    try:
        page.wait_for_selector("#link-status:text-is('connected')", timeout=8000)
    except Exception:
        raise AssertionError((page.text_content("#link-status"), browser.storage("status"),
                              [line for line in browser.console if "[cookiesync]" in line]))
    assert page.is_hidden("#error-box")
    assert "never" not in page.text_content("#last-sync")
    assert browser.storage("status")["unipileAccountId"] == account_a["id"]
    popup_shot(page, "popup-paired-synced")

    # The token is stored; the alarm follows the server's next_sync_in_s (900 s = 15 min).
    device = browser.storage("device")
    assert device["token"] == first.token and device["baseUrl"] == backend.url and device["userId"] == "user-1"
    assert browser.alarm()["periodInMinutes"] == 15

    # Changing li_at in the browser → a cookie-change sync within a few seconds …
    browser.pump(0.3)  # let the service's batched "last seen" write land before reading it
    cookie_before = when(backend.link(MEMBER_A)["date_last_cookie"])
    t1 = time.time()
    browser.set_linkedin_cookies(A_LI_AT_2, A_LI_A)
    changed = backend.wait_for(lambda: answered(backend.sync_requests("cookie-change", since=t1)), 6, browser.pump,
                               "a cookie-change sync")
    browser.pump(2.0)  # debounced: one sync for the burst of cookie events
    assert len(backend.sync_requests("cookie-change", since=t1)) == 1
    assert changed[0].body["li_at"] == A_LI_AT_2
    assert changed[0].body["li_a"] == A_LI_A and changed[0].body["plain_id"] == MEMBER_A
    assert changed[0].at - t1 < 5
    assert changed[0].answer["link_status"] == "connected"
    # … which the service keeps as the link's newest cookie (the link stays connected: the
    # new cookie is kept for the next reconnect, Unipile is not bothered while all is well).
    link_a = backend.link(MEMBER_A)
    assert when(link_a["date_last_cookie"]) > cookie_before
    assert link_a["status"] == "connected" and link_a["unipile_account_id"] == account_a["id"]
    # Unipile then reports the account disconnected: the service reconnects it with the NEW cookie.
    backend.deliver_webhooks_to_service()
    deliveries = backend.sim_status(account_a["id"], "CREDENTIALS")["deliveries"]
    assert [d["status"] for d in deliveries] == [200]

    def reconnected():
        acct = next(a for a in backend.sim_accounts() if a["id"] == account_a["id"])
        return acct if acct["status"] == "OK" and acct["li_at_fingerprint"] == fingerprint(A_LI_AT_2) else None

    account_a = backend.wait_for(reconnected, 10, browser.pump, "Unipile to be reconnected with the new cookie")
    assert account_a["reconnects"] == 1 and account_a["li_a_fingerprint"] == fingerprint(A_LI_A) and account_a["user_agent"] == user_agent
    connected_link(backend, browser, MEMBER_A)

    # The user switches LinkedIn accounts: other member, other cookies, no li_a.
    t2 = time.time()
    calls_before = len(backend.sim_calls())
    fake_linkedin.member = MEMBER_B
    browser.set_linkedin_cookies(B_LI_AT, None)
    switched = backend.wait_for(
        lambda: [r for r in answered(backend.sync_requests("cookie-change", since=t2))
                 if r.body["plain_id"] == MEMBER_B],
        8, browser.pump, "a sync for the other member")
    assert switched[-1].body == {"li_at": B_LI_AT, "li_a": None, "user_agent": user_agent,
                                 "plain_id": MEMBER_B, "extension_version": VERSION}
    assert switched[-1].answer["link_status"] == "pending" and switched[-1].answer["unipile_account_id"] is None
    assert not [r for r in backend.sync_requests() if r.body["li_at"] == B_LI_AT and r.body["plain_id"] != MEMBER_B], \
        "the other member's cookie was sent under another member's id"
    page.wait_for_selector(f"#plain-id:has-text('{MEMBER_B}')")
    browser.pump(1.0)  # room for the service to (wrongly) act on it
    # The service holds member B's link (one LinkedIn account per user) …
    links = {item["plain_id"]: item for item in backend.accounts()}
    assert set(links) == {MEMBER_A, MEMBER_B}
    assert links[MEMBER_B]["auto_connect"] is False and links[MEMBER_B]["hold_reason"]
    assert links[MEMBER_B]["unipile_account_id"] is None and links[MEMBER_B]["status"] == "pending"
    assert links[MEMBER_A]["status"] == "connected" and links[MEMBER_A]["unipile_account_id"] == account_a["id"]
    # … and member B's cookie NEVER reached member A's Unipile account (nor Unipile at all).
    accounts = backend.sim_accounts()
    assert [a["id"] for a in accounts] == [account_a["id"]]
    assert (accounts[0]["li_at_fingerprint"], accounts[0]["plain_id"]) == (fingerprint(A_LI_AT_2), MEMBER_A)
    calls = backend.sim_calls()
    assert not [c for c in calls if fingerprint(B_LI_AT) in json.dumps(c.get("body"))]
    assert not [c for c in calls[calls_before:] if c.get("account_id") == account_a["id"]]

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
    # … and in the service: the token is revoked.
    assert backend.service.sync(token, plain_id=MEMBER_A).status_code == 401

    assert_no_secrets_logged(browser, A_LI_AT, A_LI_A, A_LI_AT_2, B_LI_AT, token)


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
    assert backend.accounts() == [] and backend.sim_calls() == []

    fake_linkedin.mode = "feed"
    result = browser.sw.evaluate("syncNow('manual')")
    assert result["ok"] and result["plainId"] == fake_linkedin.member and result["linkStatus"] == "pending"
    assert len(backend.sync_requests()) == 1
    page.wait_for_selector("#error-box", state="hidden")
    link = connected_link(backend, browser, fake_linkedin.member)
    assert [(a["id"], a["li_at_fingerprint"]) for a in backend.sim_accounts()] == \
        [(link["unipile_account_id"], fingerprint(A_LI_AT))]


def test_backend_errors_back_off_and_recover_by_themselves(launch, backend, fake_linkedin, popup_shot):
    backend.script(A_LI_AT, MEMBER_A)
    fake_linkedin.member = MEMBER_A
    browser = launch()
    browser.set_linkedin_cookies(A_LI_AT, A_LI_A)
    page = pair_via_popup(browser, backend)
    backend.wait_for(lambda: answered(backend.sync_requests()), 5, browser.pump, "the first sync")
    account_id = connected_link(backend, browser, MEMBER_A)["unipile_account_id"]
    extension_settled(backend, browser)

    period_min = 0.03  # 1.8 s heartbeat → backoff base 1.8 s, cap 7.2 s
    browser.sw.evaluate(f"setAlarmPeriod({period_min})")
    base = period_min * 60

    # 5xx (injected in front of the service): retried by alarm with growing, jittered delays.
    t0 = time.time()
    backend.fail_with(503)
    failed = backend.wait_for(lambda: (lambda f: f if len(f) >= 3 else None)(
        answered(backend.sync_requests(since=t0), 503)), 20, browser.pump, "three 503 answers")
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

    # The real service goes down entirely: "could not reach", still backing off.
    backend.fail_with(None)
    backend.stop()
    result = browser.sw.evaluate("syncNow('manual')")
    assert result["outcome"] == "network" and not result["ok"]
    page.wait_for_selector("#last-error:has-text('Could not reach the sync server')")
    popup_shot(page, "popup-server-down")
    down = browser.storage("status")
    assert down["failures"] >= 3
    assert down["nextAllowedAt"] - down["lastAttemptAt"] <= 4 * base * 1000 + 200  # capped
    # An alarm inside the backoff window does not hammer the server.
    deferred = browser.sw.evaluate("syncNow('alarm')")
    assert deferred["outcome"] == "deferred" and deferred["gate"] == "backoff"

    # The service starts again on the same port (same database): the alarm path recovers
    # without any click, with the same device token, and the link is still connected.
    t1 = time.time()
    backend.start()
    recovered = backend.wait_for(lambda: answered(backend.sync_requests("alarm", since=t1)),
                                 4 * base + 6, browser.pump, "the extension to recover")
    assert recovered[0].body["li_at"] == A_LI_AT and not recovered[0].injected
    assert recovered[0].token == browser.storage("device")["token"]
    assert recovered[0].answer["link_status"] == "connected" and recovered[0].answer["unipile_account_id"] == account_id
    page.wait_for_selector("#error-box", state="hidden")
    assert page.text_content("#headline") == "Paired and synced"
    status = browser.storage("status")
    assert status["failures"] == 0 and status["nextAllowedAt"] is None
    popup_shot(page, "popup-recovered")
    assert [a["id"] for a in backend.sim_accounts()] == [account_id]  # no second Unipile account after the restart


def test_429_honours_retry_after(launch, backend, fake_linkedin):
    browser = launch()
    browser.set_linkedin_cookies(A_LI_AT, A_LI_A)
    pair_via_popup(browser, backend)
    backend.wait_for(lambda: answered(backend.sync_requests()), 5, browser.pump, "the first sync")
    extension_settled(backend, browser)

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
    after = backend.wait_for(lambda: answered(backend.sync_requests("alarm", since=t0)),
                             8, browser.pump, "the sync after Retry-After")
    assert after[0].at - t0 >= 1.9 and not after[0].injected


def test_401_after_erasure_asks_to_pair_again(launch, backend, fake_linkedin, popup_shot):
    browser = launch()
    browser.set_linkedin_cookies(A_LI_AT, A_LI_A)
    page = pair_via_popup(browser, backend)
    backend.wait_for(lambda: answered(backend.sync_requests()), 5, browser.pump, "the first sync")
    old_token = browser.storage("device")["token"]

    # The integrator erases the user: devices (and their tokens) go with it.
    erased = backend.erase_user("user-1")
    assert erased["devices"] == 1 and erased["links"] == 1
    result = browser.sw.evaluate("syncNow('manual')")
    assert result["outcome"] == "unauthorized" and result["phase"] == "pair_again"
    last = backend.sync_requests()[-1]
    assert last.status == 401 and not last.injected and "pair" in last.answer["detail"]
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

    # A new code (the integrator recreates the user) pairs it again, with a new token.
    page.fill("#pairing-code", backend.pairing_code("user-1"))
    page.click("#pair-button")
    page.wait_for_selector("body[data-phase=paired]")
    again = backend.wait_for(lambda: answered(backend.sync_requests()[n:]), 5, browser.pump,
                             "a sync after pairing again")
    assert again[0].token != old_token
    assert [link["plain_id"] for link in backend.accounts()] == [fake_linkedin.member]


def test_survives_service_worker_stop_and_syncs_at_startup_once(launch, backend, fake_linkedin, tmp_path):
    browser = launch()
    browser.set_linkedin_cookies(A_LI_AT, A_LI_A)
    pair_via_popup(browser, backend)
    backend.wait_for(lambda: answered(backend.sync_requests()), 5, browser.pump, "the first sync")
    browser.sw.evaluate("self.__marker = 1")
    browser.sw.evaluate("setAlarmPeriod(0.03)")  # fires about every 1.8 s

    t0 = time.time()
    browser.stop_service_worker()
    browser.pump(0.3)
    alarm_syncs = backend.wait_for(lambda: answered(backend.sync_requests("alarm", since=t0)),
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
    startup = backend.wait_for(lambda: answered(backend.sync_requests("startup", since=t1)), 10, again.pump,
                               "the startup sync")
    assert startup[0].body["li_at"] == A_LI_AT
    # Waking the worker again (a click in the popup) is not a new session either.
    again.stop_service_worker()
    again.pump(0.3)
    n = len(backend.sync_requests(since=t1))
    page = again.popup()
    page.click("#sync-now")
    backend.wait_for(lambda: len(answered(backend.sync_requests(since=t1))) > n, 5, again.pump, "the manual sync")
    assert [r.reason for r in backend.sync_requests(since=t1)] == ["startup", "manual"]
    assert backend.link(fake_linkedin.member)["status"] == "connected"
