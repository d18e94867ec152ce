"""The support console in Debian's headless Chromium: sign in, filter the links, open
a link with a failed incident, press "Retry now" (and confirm), watch the new attempt
arrive in the timeline; open the email; sign out. Screenshots of every page go to
artifacts/support/ (git-ignored)."""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.components import need
from tests.support.console import PASSWORD, disconnect, link_events, make_link, queue_email, start_console, stop, \
    unique

pytestmark = pytest.mark.chromium

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "support"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture
def console(tmp_path):
    need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium): the console's browser test cannot run")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        need(False, "the playwright package is not installed (pip install -e '.[test]')")
    svc = start_console(tmp_path)
    yield svc
    stop(svc)


def in_thread(fn, *args):
    """Sync Playwright keeps an event loop on this thread: database helpers run beside it."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_staff_retries_a_failed_link_from_the_browser(console) -> None:
    from playwright.sync_api import sync_playwright

    user = unique("browser")
    failing, _ = make_link(console, user, "5151", "AQEDAR-browser-cookie-5151")
    disconnect(console, failing, f"acc-{user}")          # reconnecting, attempt 1 failed
    queue_email(console, failing)
    for i in range(3):                                   # some company in the list
        make_link(console, f"{user}-other{i}", f"52{i:02d}", f"AQEDAR-browser-other-{i}")
    attempts_before = len(link_events(console, failing, "attempt"))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            context = browser.new_context(timezone_id="Asia/Tokyo", locale="en-GB",
                                          viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.set_default_timeout(15000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # anonymous → the login page; sign in
            page.goto(console.url + "/support/links")
            assert page.url.startswith(console.url + "/support/login")
            shot(page, "01-login")
            page.fill("#email", "op@example.com")
            page.fill("#password", PASSWORD)
            page.click("#sign-in")
            page.wait_for_url(re.compile(r".*/support/links$"))

            # overview, with times in the browser's zone and UTC on hover
            page.goto(console.url + "/support/")
            page.wait_for_selector("#attempts-chart")
            assert page.locator("[data-tz]").inner_text() == "Asia/Tokyo"
            first_time = page.locator("main time").first
            assert "UTC" not in first_time.inner_text()
            assert first_time.get_attribute("title").endswith("(UTC)")
            assert page.locator("#sweep-leader").is_visible()
            shot(page, "02-overview")

            # links list: filter by state
            page.goto(console.url + "/support/links")
            page.select_option("#f-state", "reconnecting")
            page.click("#f-submit")
            page.wait_for_url(re.compile(r".*state=reconnecting.*"))
            states = page.locator("#links-table tbody tr").evaluate_all(
                "rows => rows.map(r => r.getAttribute('data-state'))")
            assert states and set(states) == {"reconnecting"}
            row = page.locator(f'tr[data-link-id="{failing}"]')
            assert re.search(r"attempt 1 of 5, next at", row.locator("td.incident").inner_text())
            shot(page, "03-links-filtered")

            # the link's page
            row.locator("a.link-open").click()
            page.wait_for_url(re.compile(rf".*/support/links/{failing}$"))
            assert page.locator("tr[data-kind=attempt]").count() == attempts_before
            shot(page, "04-link-detail")

            # dismissing the confirmation does nothing
            page.once("dialog", lambda dialog: dialog.dismiss())
            page.click("#act-stop")
            page.wait_for_timeout(300)
            assert page.url.endswith(f"/support/links/{failing}")
            assert in_thread(link_events, console, failing, "staff_action") == []

            # Retry now, confirmed
            messages: list[str] = []

            def accept(dialog):
                messages.append(dialog.message)
                dialog.accept()

            page.once("dialog", accept)
            page.click("#act-retry")
            page.wait_for_url(re.compile(r".*done=retry.*"))
            assert messages and "Retry" in messages[0]
            assert "retry" in page.locator("#flash").inner_text()
            deadline = time.monotonic() + 15
            while page.locator("tr[data-kind=attempt]").count() <= attempts_before:
                assert time.monotonic() < deadline, "the new attempt never showed up in the timeline"
                page.wait_for_timeout(400)
                page.goto(console.url + f"/support/links/{failing}")
            newest = page.locator("tr[data-kind=attempt]").first
            assert newest.get_attribute("data-trigger") == "staff"
            action = page.locator("tr[data-kind=staff_action]").first
            assert "op@example.com" in action.inner_text() and "retry" in action.inner_text()
            shot(page, "05-link-after-retry")

            # the email, rendered in a sandboxed frame
            page.locator("#card-emails a").first.click()
            page.wait_for_selector("#email-html")
            assert page.locator("#email-html").get_attribute("sandbox") == ""
            frame = page.frame_locator("#email-html")
            assert "Reconnect LinkedIn" in frame.locator("body").inner_text()
            shot(page, "06-email")

            page.goto(console.url + "/support/outbox")
            assert page.locator("#outbox-table tbody tr[data-outbox-id]").count() >= 1
            shot(page, "07-outbox")

            page.click("#logout")
            page.wait_for_url(re.compile(r".*/support/login$"))
            page.goto(console.url + "/support/")
            assert "/support/login" in page.url
            assert errors == [], errors
        finally:
            browser.close()
