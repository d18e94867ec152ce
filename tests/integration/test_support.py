"""The support console over real sockets: staff login (sessions, CSRF, throttling), every
page and action, the JSON API, and that no cookie value or token ever reaches a page.

The service under test talks to a Unipile that is not there (a closed port): every
connect/reconnect attempt fails at once as a transient network error, which is exactly
what a "failed incident" needs, without depending on the simulator."""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from html import unescape
from types import SimpleNamespace

import httpx
import msgspec
import pytest
import sqlalchemy as sa

from cookiesync.db.schema import api_keys, devices, events, links, notifications, outbox, staff_sessions
from tests.support.components import need
from tests.support.console import PASSWORD, add_staff, disconnect, link_events, link_id, link_row, make_link, \
    queue_email, start_console, stop, unique
from tests.support.postgres import postgres_available
from tests.support.service import start_service
from tests.support.wait import wait_for

_ips = itertools.count(10)


# --- helpers ---------------------------------------------------------------------------------
def fresh_ip() -> str:
    """A distinct client address per staff client (the service trusts X-Forwarded-For from
    127.0.0.1), so one test's per-IP login throttle never touches another's."""
    n = next(_ips)
    return f"198.51.{n // 250}.{n % 250 + 1}"


class StaffClient:
    """A browser-like client: a cookie jar, its own client IP, CSRF tokens read from pages."""

    def __init__(self, svc, ip: str | None = None) -> None:
        self.svc = svc
        self.ip = ip or fresh_ip()
        self.http = httpx.Client(base_url=svc.url, follow_redirects=False, timeout=30,
                                 headers={"X-Forwarded-For": self.ip})

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **kw) -> httpx.Response:
        return self.http.get(path, **kw)

    def login_form_token(self) -> str:
        page = self.http.get("/support/login")
        assert page.status_code == 200, page.text
        return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)

    def login(self, email: str, password: str = PASSWORD, next_url: str = "/support/") -> httpx.Response:
        token = self.login_form_token()
        return self.http.post("/support/login", data={"email": email, "password": password, "csrf_token": token,
                                                       "next": next_url})

    def csrf(self) -> str:
        page = self.http.get("/support/")
        assert page.status_code == 200, page.status_code
        return re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)

    def post(self, path: str, data: dict | None = None, csrf: str | bool = True) -> httpx.Response:
        body = dict(data or {})
        if csrf is True:
            body["csrf_token"] = self.csrf()
        elif isinstance(csrf, str):
            body["csrf_token"] = csrf
        return self.http.post(path, data=body)

    def api(self, method: str, path: str, csrf: bool = True, **kw) -> httpx.Response:
        headers = kw.pop("headers", {})
        if csrf and method.upper() != "GET":
            headers["X-CSRF-Token"] = self.http.get("/v1/support/me").json()["csrf_token"]
        return self.http.request(method, path, headers=headers, **kw)


def sent_token(svc, row) -> str:
    """The reconnect token the mailer signs into an outbox row's email (the row keeps its claims)."""
    from cookiesync.domain.email.outbox import reconnect_token

    return reconnect_token(svc.rt.reconnect_signer, row.link_id, row.reconnect_incident_id, row.reconnect_expires_at)


def logged_in(svc, email: str) -> StaffClient:
    client = StaffClient(svc)
    r = client.login(email)
    assert r.status_code == 303, r.text
    return client


def add_notification(svc, lid: int | None, user_id: str, plain_id: str, *, event_type: str = "link.needs_user",
                     status: str = "pending", attempts: int = 0, last_status_code: int | None = None,
                     last_error: str | None = None, reason: str = "gave up", delivered: bool = False) -> int:
    """A notification row as domain/notifications/services.py writes (and the notifier updates) it."""
    now = datetime.now(timezone.utc)
    payload = {"type": event_type, "timestamp": now.isoformat().replace("+00:00", "Z"),
               "data": {"user_id": user_id, "plain_id": plain_id, "status": event_type.split(".", 1)[1],
                        "unipile_account_id": None, "reason": reason}}

    async def q(conn):
        result = await conn.execute(notifications.insert().values(
            msg_id="msg_" + os.urandom(12).hex(), event_type=event_type, user_id=user_id, link_id=lid,
            payload=msgspec.json.encode(payload).decode(), status=status, attempts=attempts,
            next_attempt_at=now + timedelta(minutes=5) if status == "pending" else None,
            last_attempt_at=now if attempts else None, last_status_code=last_status_code, last_error=last_error,
            created_at=now, delivered_at=now if delivered else None))
        return result.inserted_primary_key[0]

    return svc.db(q)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    svc = start_console(tmp_path_factory.mktemp("support"))
    yield svc
    stop(svc)


@pytest.fixture
def op(console):
    client = logged_in(console, "op@example.com")
    yield client
    client.close()


@pytest.fixture
def viewer(console):
    client = logged_in(console, "viewer@example.com")
    yield client
    client.close()


PAGES = ["/support/", "/support/links", "/support/links?state=pending", "/support/outbox", "/support/notifications"]


# --- sign-in, sessions -------------------------------------------------------------------------
def test_anonymous_is_sent_to_the_login_page(console) -> None:
    lid, _ = make_link(console, unique("anon"), "7001", "AQEDAR-anon-cookie-7001")
    anon = StaffClient(console)
    for path in PAGES + [f"/support/links/{lid}", "/support/outbox/1", "/support/notifications/1"]:
        r = anon.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/support/login?next=/support"), (path, r.headers["location"])
    r = anon.get("/support/links?state=pending")
    assert r.headers["location"] == "/support/login?next=/support/links%3Fstate%3Dpending"
    for path in [f"/support/links/{lid}/actions/retry", "/support/devices/x/revoke", "/support/outbox/1/resend",
                 "/support/logout"]:
        r = anon.http.post(path, data={"csrf_token": "x"})
        assert r.status_code == 303 and r.headers["location"].startswith("/support/login"), path
    assert link_events(console, lid, "staff_action") == []
    for path in ["/v1/support/overview", "/v1/support/links", f"/v1/support/links/{lid}", "/v1/support/outbox",
                 "/v1/support/notifications", "/v1/support/notifications/1", "/v1/support/me"]:
        r = anon.get(path)
        assert r.status_code == 401 and r.json()["detail"], path
    r = anon.http.post(f"/v1/support/links/{lid}/actions/retry")
    assert r.status_code == 401
    # the login page works anonymously and carries its own CSRF token
    page = anon.get("/support/login?next=/support/outbox")
    assert page.status_code == 200 and 'name="csrf_token"' in page.text and 'value="/support/outbox"' in page.text
    assert "Content-Security-Policy" in page.headers and page.headers["X-Frame-Options"] == "DENY"


def test_login_session_cookie_and_logout(console) -> None:
    client = StaffClient(console)
    r = client.login("OP@Example.com ", next_url="/support/outbox")
    assert r.status_code == 303 and r.headers["location"] == "/support/outbox"
    set_cookie = r.headers.get_list("set-cookie")
    session = next(c for c in set_cookie if c.startswith("cookiesync_staff="))
    assert "HttpOnly" in session and "samesite=lax" in session.lower() and "Path=/" in session
    assert "Secure" not in session  # local mode over plain HTTP; production: see below
    value = session.split(";", 1)[0].split("=", 1)[1]
    assert len(value) >= 40

    async def stored(conn):
        return (await conn.execute(sa.select(staff_sessions.c.id_hash))).scalars().all()

    hashes = console.db(stored)
    assert hashlib.sha256(value.encode()).hexdigest() in hashes and value not in hashes

    assert client.get("/support/outbox").status_code == 200
    me = client.get("/v1/support/me").json()
    assert me["principal"] == "staff:op@example.com" and me["role"] == "operator" and me["can_act"] is True
    # an open redirect is not possible through ?next=
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "/support/login"):
        other = StaffClient(console)
        assert other.login("op@example.com", next_url=target).headers["location"] == "/support/", target
        other.close()

    # logging out needs the CSRF token too, then ends the session server-side
    assert client.post("/support/logout", csrf=False).status_code == 403
    out = client.post("/support/logout")
    assert out.status_code == 303 and out.headers["location"] == "/support/login"
    assert hashlib.sha256(value.encode()).hexdigest() not in console.db(stored)
    replay = httpx.get(console.url + "/support/", cookies={"cookiesync_staff": value}, follow_redirects=False)
    assert replay.status_code == 303
    client.close()


def test_idle_and_expired_sessions_end(console, monkeypatch) -> None:
    from cookiesync.domain.support import staff

    client = logged_in(console, "viewer@example.com")
    assert client.get("/support/").status_code == 200
    monkeypatch.setattr(staff.POLICY, "idle_timeout", timedelta(0))
    assert client.get("/support/").status_code == 303
    monkeypatch.undo()
    assert client.get("/support/").status_code == 200

    async def expire(conn):
        await conn.execute(staff_sessions.update().values(expires_at=datetime.now(timezone.utc) - timedelta(1)))

    console.db(expire)
    assert client.get("/support/").status_code == 303
    assert client.get("/v1/support/me").status_code == 401
    client.close()


def test_wrong_password_and_login_form_csrf(console) -> None:
    client = StaffClient(console)
    bad = client.login("op@example.com", password="not the password")
    assert bad.status_code == 401 and "wrong email or password" in bad.text and "cookiesync_staff=" not in \
        bad.headers.get("set-cookie", "")
    unknown = client.login("nobody@example.com", password="whatever it is")
    assert unknown.status_code == 401 and "wrong email or password" in unknown.text
    # the login form without its token (or with another browser's) is refused before any password check
    token = client.login_form_token()
    r = client.http.post("/support/login", data={"email": "op@example.com", "password": PASSWORD})
    assert r.status_code == 403
    stranger = StaffClient(console)
    r = stranger.http.post("/support/login", data={"email": "op@example.com", "password": PASSWORD,
                                                   "csrf_token": token})
    assert r.status_code == 403
    assert client.login("op@example.com").status_code == 303
    client.close()
    stranger.close()


def test_failures_slow_the_account_from_that_address_only(console, monkeypatch) -> None:
    from datetime import timedelta

    from cookiesync.domain.support import staff
    from cookiesync.domain.throttle.policy import Backoff

    # the delay after the free attempts: 10 minutes here (2 s by default), so the next try is inside it
    monkeypatch.setattr(staff.POLICY, "per_account_address", Backoff(free=5, first_delay=timedelta(minutes=10)))
    add_staff(console, "locked@example.com", "viewer")
    attacker = StaffClient(console)
    for _ in range(5):
        assert attacker.login("locked@example.com", password="guess-guess-guess").status_code == 401
    # from this address even the right password waits out the delay...
    r = attacker.login("locked@example.com")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 60 and "too many failed sign-ins" in r.text
    # ...but it is no lock-out: the owner signs in from another address, other staff from this one
    elsewhere = StaffClient(console)
    assert elsewhere.login("locked@example.com").status_code == 303
    assert attacker.login("viewer@example.com").status_code == 303
    attacker.close()
    elsewhere.close()


def test_lockout_per_ip(console, monkeypatch) -> None:
    from cookiesync.domain.support import staff

    monkeypatch.setattr(staff.POLICY, "ip_limit", 6)
    attacker = StaffClient(console)
    for i in range(6):  # a different email each time: only the IP counter reaches its limit
        assert attacker.login(f"spray{i}@example.com", password="password123456").status_code == 401
    assert attacker.login("op@example.com").status_code == 429
    assert StaffClient(console).login("op@example.com").status_code == 303  # another address is fine
    attacker.close()


def test_sessions_live_in_the_database_and_work_on_another_instance(console, tmp_path) -> None:
    client = logged_in(console, "viewer@example.com")
    cookie = client.http.cookies["cookiesync_staff"]
    second = start_service(msgspec.structs.replace(console.settings, port=0, public_url=""))
    try:
        r = httpx.get(second.url + "/support/links", cookies={"cookiesync_staff": cookie},
                      headers={"X-Forwarded-For": client.ip}, follow_redirects=False)
        assert r.status_code == 200 and "viewer@example.com" in r.text
    finally:
        stop(second)
    client.close()


def test_production_mode_sets_secure_host_cookies(tmp_path) -> None:
    from cookiesync.security import new_key_entry

    svc = start_console(tmp_path, mode="production", database_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}",
                        encryption_keys=new_key_entry("k1"), signing_secret="s" * 43, webhook_secret="w" * 32,
                        hosted_auth_secret="h" * 32)
    try:
        client = StaffClient(svc)
        page = client.get("/support/login")
        pre = page.headers["set-cookie"]
        assert pre.startswith("__Host-cookiesync_login=") and "Secure" in pre and "samesite=strict" in pre.lower()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        prelogin = pre.split(";", 1)[0].split("=", 1)[1]
        r = client.http.post("/support/login", data={"email": "op@example.com", "password": PASSWORD,
                                                     "csrf_token": token},
                             headers={"Cookie": f"__Host-cookiesync_login={prelogin}"})
        assert r.status_code == 303
        session = next(c for c in r.headers.get_list("set-cookie") if c.startswith("__Host-cookiesync_staff="))
        assert "Secure" in session and "HttpOnly" in session and "Path=/" in session and "Domain" not in session
        client.close()
    finally:
        stop(svc)


def test_cli_staff_add_and_disable(console) -> None:
    env = dict(os.environ) | {"COOKIESYNC_DATA_DIR": console.settings.data_dir,
                              "COOKIESYNC_DATABASE_URL": console.settings.database}
    cli = [sys.executable, "-m", "cookiesync.cli", "staff"]
    short = subprocess.run(cli + ["add", "cli@example.com"], input="short\n", env=env, capture_output=True,
                           text=True)
    assert short.returncode != 0 and "at least 10" in short.stderr
    added = subprocess.run(cli + ["add", "cli@example.com", "--role", "operator"], input=PASSWORD + "\n", env=env,
                           capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    client = logged_in(console, "cli@example.com")
    assert client.get("/v1/support/me").json()["role"] == "operator"
    disabled = subprocess.run(cli + ["disable", "cli@example.com"], env=env, capture_output=True, text=True,
                              timeout=60)
    assert disabled.returncode == 0 and "disabled 1" in disabled.stdout
    # the open session ends at once, and the password no longer works
    assert client.get("/support/").status_code == 303
    assert StaffClient(console).login("cli@example.com").status_code == 401
    client.close()


# --- permissions, CSRF --------------------------------------------------------------------------------------
def test_viewer_reads_everything_but_cannot_act(console, viewer) -> None:
    lid, _ = make_link(console, unique("view"), "7101", "AQEDAR-viewer-cookie-7101")
    for path in PAGES + [f"/support/links/{lid}"]:
        r = viewer.get(path)
        assert r.status_code == 200, path
    page = viewer.get(f"/support/links/{lid}").text
    assert 'id="act-retry"' not in page and 'id="viewer-note"' in page and "/revoke" not in page
    for action in ["retry", "stop", "disable", "enable", "resend-email"]:
        r = viewer.post(f"/support/links/{lid}/actions/{action}")
        assert r.status_code == 403 and "viewer" in r.text, action
    device = link_row(console, lid)
    r = viewer.post("/support/devices/whatever/revoke")
    assert r.status_code == 403
    r = viewer.api("POST", f"/v1/support/links/{lid}/actions/retry")
    assert r.status_code == 403 and "operator" in r.json()["detail"]
    assert link_events(console, lid, "staff_action") == []
    assert link_row(console, lid)["state"] == device["state"]


def test_missing_or_wrong_csrf_token_is_refused(console, op) -> None:
    lid, _ = make_link(console, unique("csrf"), "7201", "AQEDAR-csrf-cookie-7201")
    for csrf in (False, "", "0" * 64):
        r = op.post(f"/support/links/{lid}/actions/disable", csrf=csrf)
        assert r.status_code == 403 and "security token" in r.text
    # another staff member's token does not work either
    other = logged_in(console, "viewer@example.com")
    r = op.post(f"/support/links/{lid}/actions/disable", csrf=other.csrf())
    assert r.status_code == 403
    other.close()
    assert op.api("POST", f"/v1/support/links/{lid}/actions/disable", csrf=False).status_code == 403
    r = op.api("POST", f"/v1/support/links/{lid}/actions/disable",
               csrf=False, headers={"X-CSRF-Token": "nope"})
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    assert link_row(console, lid)["state"] != "disabled"
    assert link_events(console, lid, "staff_action") == []


# --- pages -----------------------------------------------------------------------------------------
def test_overview_page_and_api(console, op) -> None:
    make_link(console, unique("ov"), "7301", "AQEDAR-overview-cookie-7301")
    wait_for(lambda: op.get("/v1/support/overview").json()["sweep"]["last_run_at"])
    o = op.get("/v1/support/overview").json()
    assert o["links_total"] >= 1 and o["links_by_state"]["pending"] >= 1
    assert set(o["links_by_state"]) == {"pending", "connected", "reconnecting", "needs_user", "checkpoint",
                                        "disabled"}
    assert o["open_incidents"] >= 1
    assert o["last_24h"]["attempts"] >= 1 and o["last_24h"]["failed"] >= 1
    assert o["sweep"]["this_instance_leads"] is True and o["sweep"]["owner"] == o["sweep"]["this_instance"]
    assert len(o["attempts_per_hour"]) == 24 and sum(b["failed"] for b in o["attempts_per_hour"]) >= 1
    page = op.get("/support/")
    assert page.status_code == 200
    html = page.text
    assert 'id="attempts-chart"' in html and "<svg" in html and 'class="bar"' in html
    assert 'id="sweep-leader"' in html and "Incidents open" in html and 'id="outbox-waiting"' in html
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT[^"]+Z" title="[^"]+ \(UTC\)">', html)
    assert '<script src="/support/static/console.js" defer></script>' in html
    js = op.get("/support/static/console.js")
    assert js.status_code == 200 and "toLocaleString" in js.text and js.headers["content-type"].startswith(
        "text/javascript")
    assert op.get("/support/static/console.css").status_code == 200
    assert op.get("/support/static/..%2Fpages.py").status_code == 404


def test_links_list_filters_and_pagination(console, op) -> None:
    tag = unique("list")
    ids = {}
    for i in range(5):
        lid, _ = make_link(console, f"{tag}-u{i}", f"81{i:02d}", f"AQEDAR-list-cookie-{tag}-{i}")
        ids[i] = lid
    disconnect(console, ids[3], f"acc-{tag}-3")
    # filters, on the page and in the API
    by_user = op.get(f"/support/links?user_id={tag}-u1")
    assert by_user.status_code == 200 and re.findall(r'data-link-id="(\d+)"', by_user.text) == [str(ids[1])]
    by_email = op.get(f"/v1/support/links?email={tag}-u2@example.com").json()["items"]
    assert [i["id"] for i in by_email] == [ids[2]] and by_email[0]["email"] == f"{tag}-u2@example.com"
    by_plain = op.get("/v1/support/links?plain_id=8104").json()["items"]
    assert ids[4] in [i["id"] for i in by_plain]
    by_account = op.get(f"/support/links?account_id=acc-{tag}-3")
    assert re.findall(r'data-link-id="(\d+)"', by_account.text) == [str(ids[3])]
    assert 'data-state="reconnecting"' in by_account.text
    assert re.search(r"attempt 1 of 5, next at <time", by_account.text)
    reconnecting = op.get("/v1/support/links?state=reconnecting").json()["items"]
    assert ids[3] in [i["id"] for i in reconnecting] and all(i["state"] == "reconnecting" for i in reconnecting)
    item = next(i for i in reconnecting if i["id"] == ids[3])
    assert item["incident"]["attempts_made"] == 1 and item["incident"]["attempts_planned"] == 5
    assert item["incident"]["next_attempt_at"] and item["cookie_stale"] is False
    today = datetime.now(timezone.utc).date()
    in_range = op.get(f"/v1/support/links?user_id={tag}-u0&from={today}&to={today}").json()["items"]
    assert [i["id"] for i in in_range] == [ids[0]]
    yesterday = today - timedelta(days=1)
    assert op.get(f"/v1/support/links?user_id={tag}-u0&to={yesterday}").json()["items"] == []
    # keyset pagination: every link exactly once, last changed first
    seen, cursor = [], None
    while True:
        page = op.get("/v1/support/links", params={"limit": 2} | ({"cursor": cursor} if cursor else {})).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) and set(ids.values()) <= set(seen)
    total = op.get("/v1/support/overview").json()["links_total"]
    assert len(seen) == total
    asc = op.get("/v1/support/links?order=asc&limit=200").json()["items"]
    assert [i["id"] for i in asc] == list(reversed(seen))
    html = op.get("/support/links?limit=2")
    assert 'id="next-page"' in html.text
    nxt = re.search(r'id="next-page"', html.text) and re.search(r'href="(/support/links\?[^"]*cursor=[^"]+)"',
                                                                  html.text).group(1)
    assert op.get(nxt.replace("&amp;", "&")).status_code == 200
    # malformed input is a clear 400, never a 500
    assert op.get("/v1/support/links?cursor=garbage").status_code == 400
    assert op.get("/v1/support/links?state=bogus").status_code == 400
    assert op.get("/v1/support/links?from=yesterday").status_code == 400
    assert op.get("/support/links?from=yesterday").status_code == 400


def test_link_detail_timeline_devices_and_emails(console, op) -> None:
    user = unique("detail")
    lid, token = make_link(console, user, "8201", "AQEDAR-detail-cookie-8201")
    disconnect(console, lid, f"acc-{user}")
    mail_id = queue_email(console, lid)
    page = op.get(f"/support/links/{lid}")
    assert page.status_code == 200
    html = page.text
    kinds = re.findall(r'data-kind="([a-z_]+)"', html)
    assert {"link_created", "cookie_received", "attempt_started", "attempt", "webhook", "email_queued",
            "device_paired"} <= set(kinds)
    ids = [int(x) for x in re.findall(r'data-event-id="(\d+)"', html)]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert f'href="/support/outbox/{mail_id}">open the email' in html
    assert "Unipile webhook CREDENTIALS" in html and "network" in html.lower() or "transient" in html
    assert "1.4.2" in html and 'id="act-retry"' in html and re.search(r'id="revoke-[0-9a-f]+"', html)
    assert 'data-confirm="' in html
    api = op.get(f"/v1/support/links/{lid}").json()
    assert api["link"]["state"] == "reconnecting" and api["user"]["email"] == f"{user}@example.com"
    attempt = next(e for e in api["timeline"] if e["kind"] == "attempt")
    for key in ("trigger", "outcome", "http_status", "error_type", "duration_ms", "next_attempt_at"):
        assert key in attempt["data"], key
    cookie = next(e for e in api["timeline"] if e["kind"] == "cookie_received")
    assert len(cookie["data"]["fingerprint"]) == 12 and cookie["data"]["user_agent"] and "ip" in cookie["data"]
    assert api["devices"][0]["extension_version"] == "1.4.2" and api["devices"][0]["revoked_at"] is None
    assert [m["id"] for m in api["emails"]] == [mail_id]
    # timeline pagination
    first = op.get(f"/v1/support/links/{lid}?limit=3").json()
    older = op.get(f"/v1/support/links/{lid}?limit=3&before={first['timeline_next_cursor']}").json()
    assert first["timeline_next_cursor"] and max(e["id"] for e in older["timeline"]) < min(
        e["id"] for e in first["timeline"])
    assert op.get("/support/links/999999").status_code == 404
    assert op.get("/v1/support/links/999999").status_code == 404


def test_outbox_pages_show_the_email_sandboxed(console, op) -> None:
    user = unique("mail")
    lid, _ = make_link(console, user, "8301", "AQEDAR-mail-cookie-8301")
    mail_id = queue_email(console, lid)

    async def row(conn):
        return (await conn.execute(sa.select(outbox).where(outbox.c.id == mail_id))).one()

    stored = console.db(row)
    token = sent_token(console, stored)  # what the mailer signs into the email it sends
    assert "/reconnect/[reconnect-token]" in stored.body_html and token not in stored.body_html + stored.body_text
    listing = op.get("/support/outbox?status=pending")
    assert listing.status_code == 200 and f'data-outbox-id="{mail_id}"' in listing.text
    api = op.get("/v1/support/outbox?status=pending").json()
    assert mail_id in [m["id"] for m in api["items"]] and all(m["status"] == "pending" for m in api["items"])
    page = op.get(f"/support/outbox/{mail_id}")
    assert page.status_code == 200
    html = page.text
    frame = re.search(r'<iframe id="email-html" sandbox="" [^>]*srcdoc="([^"]*)"', html)
    assert frame, "the email is shown in a sandboxed iframe"
    assert "<" not in frame.group(1) and "&lt;" in frame.group(1)  # escaped into the attribute
    assert "/reconnect/[reconnect-token]" in html and token not in html
    assert "script-src 'self'" in page.headers["content-security-policy"]
    detail = op.get(f"/v1/support/outbox/{mail_id}").json()
    assert token not in detail["body_html"] + detail["body_text"] and detail["email"]["to_addr"] == \
        f"{user}@example.com"
    assert op.get("/support/outbox/999999").status_code == 404


def test_notifications_pages_and_api(console, op, viewer) -> None:
    user = unique("notify")
    lid, _ = make_link(console, user, "8351", "AQEDAR-notify-cookie-8351")
    ok = add_notification(console, lid, user, "8351", event_type="link.connected", status="delivered", attempts=1,
                          last_status_code=204, delivered=True)
    retrying = add_notification(console, lid, user, "8351", status="pending", attempts=3,
                                last_error="ConnectError", reason="<script>alert(1)</script>")
    dead = add_notification(console, lid, user, "8351", event_type="link.disabled", status="failed", attempts=10,
                            last_status_code=500, last_error="HTTP 500")
    page = op.get("/support/notifications")
    assert page.status_code == 200 and 'href="/support/notifications" class="here"' in page.text
    rows = re.findall(r'<tr data-notification-id="(\d+)" data-status="([a-z]+)">(.*?)</tr>', page.text, re.S)
    ids = [int(i) for i, _, _ in rows]
    assert ids[:3] == [dead, retrying, ok]  # newest first
    by_id = {int(i): (st, body) for i, st, body in rows}
    assert by_id[retrying][0] == "pending" and "ConnectError" in by_id[retrying][1]
    assert '<td class="num">3</td>' in by_id[retrying][1] and "<time" in by_id[retrying][1]
    assert by_id[dead][0] == "failed" and "HTTP 500" in by_id[dead][1] and '<td class="num">500</td>' in by_id[dead][1]
    assert f'{user} / 8351 · <a href="/support/links/{lid}">link #{lid}</a>' in by_id[ok][1]
    assert by_id[ok][0] == "delivered" and '<td class="num">204</td>' in by_id[ok][1]
    # filters and keyset pagination, page and JSON alike
    failed = op.get("/support/notifications?status=failed").text
    assert f'data-notification-id="{dead}"' in failed and f'data-notification-id="{retrying}"' not in failed
    connected = op.get("/support/notifications?event_type=link.connected").text
    assert f'data-notification-id="{ok}"' in connected and f'data-notification-id="{dead}"' not in connected
    api = op.get(f"/v1/support/notifications?link_id={lid}&limit=2").json()
    assert [n["id"] for n in api["items"]] == [dead, retrying] and api["next_cursor"]
    assert api["items"][1] | {"next_attempt_at": None, "last_attempt_at": None, "created_at": None} == {
        "id": retrying, "msg_id": api["items"][1]["msg_id"], "event_type": "link.needs_user", "user_id": user,
        "plain_id": "8351", "link_id": lid, "status": "pending", "attempts": 3, "last_status_code": None,
        "last_error": "ConnectError", "created_at": None, "next_attempt_at": None, "last_attempt_at": None,
        "delivered_at": None}
    rest = op.get(f"/v1/support/notifications?link_id={lid}&limit=2&cursor={api['next_cursor']}").json()
    assert [n["id"] for n in rest["items"]] == [ok] and rest["next_cursor"] is None
    assert all(n["status"] == "failed" for n in op.get("/v1/support/notifications?status=failed").json()["items"])
    assert op.get("/v1/support/notifications?status=bogus").status_code == 400
    assert op.get("/v1/support/notifications?cursor=abc").status_code == 400
    assert op.get(f"/support/notifications?link_id={lid}&cursor={api['next_cursor']}").text.count(
        "data-notification-id=") == 1
    # one notification: the payload pretty-printed and escaped
    detail = op.get(f"/support/notifications/{retrying}")
    assert detail.status_code == 200
    pre = re.search(r'<pre id="notification-payload">(.*?)</pre>', detail.text, re.S).group(1)
    assert "<" not in pre and '\n  "data": {\n' in unescape(pre)
    assert '"reason": "<script>alert(1)</script>"' in unescape(pre)
    assert '<dd id="notification-attempts">3</dd>' in detail.text and "ConnectError" in detail.text
    one = op.get(f"/v1/support/notifications/{retrying}").json()
    assert one["notification"]["attempts"] == 3 and one["payload"]["data"]["reason"] == "<script>alert(1)</script>"
    assert op.get("/support/notifications/999999").status_code == 404
    assert op.get("/v1/support/notifications/999999").status_code == 404
    # on the link's page, and in its JSON
    link_page = op.get(f"/support/links/{lid}").text
    section = link_page[link_page.index('id="card-notifications"'):]
    assert f'href="/support/notifications/{dead}"' in section and "HTTP 500" in section
    assert [n["id"] for n in op.get(f"/v1/support/links/{lid}").json()["notifications"]] == [dead, retrying, ok]
    # a viewer reads it all
    assert viewer.get("/support/notifications").status_code == 200
    assert viewer.get(f"/support/notifications/{dead}").status_code == 200
    assert viewer.get(f"/v1/support/notifications/{dead}").json()["notification"]["status"] == "failed"


def test_failing_deliveries_show_attempts_and_last_error(tmp_path) -> None:
    svc = start_console(tmp_path, integrator_webhook_url="http://127.0.0.1:9/hooks", notify_retry_base_s=0.2)
    try:
        lid, _ = make_link(svc, "hook-user", "8361", "AQEDAR-hook-cookie-8361")
        from cookiesync.db.schema import notifications
        from cookiesync.domain.notifications.services import notification_row

        async def q(conn):
            row = (await conn.execute(sa.select(links).where(links.c.id == lid))).one()
            await conn.execute(notifications.insert(), [notification_row(
                svc.rt, row=row, new_state="needs_user", reason="gave up", account_id=None)])

        svc.db(q)
        client = logged_in(svc, "viewer@example.com")
        item = wait_for(lambda: next((n for n in client.get("/v1/support/notifications").json()["items"]
                                      if n["attempts"] >= 2), None))
        assert item["status"] == "pending" and item["last_error"] and item["plain_id"] == "8361"
        page = client.get("/support/notifications?status=pending").text
        assert f'data-notification-id="{item["id"]}"' in page and item["last_error"] in page
        assert item["last_error"] in client.get(f"/support/notifications/{item['id']}").text
        client.close()
    finally:
        stop(svc)


# --- actions -------------------------------------------------------------------------------------------
def test_retry_now_makes_an_attempt_and_is_audited(console, op) -> None:
    user = unique("retry")
    lid, _ = make_link(console, user, "8401", "AQEDAR-retry-cookie-8401")
    disconnect(console, lid, f"acc-{user}")
    before = len(link_events(console, lid, "attempt"))
    r = op.post(f"/support/links/{lid}/actions/retry")
    assert r.status_code == 303 and r.headers["location"].startswith(f"/support/links/{lid}?done=retry")
    attempts = wait_for(lambda: (a := link_events(console, lid, "attempt")) and len(a) > before and a)
    assert attempts[-1]["data"]["trigger"] == "staff" and attempts[-1]["data"]["kind"] == "reconnect"
    action = link_events(console, lid, "staff_action")[-1]
    assert action["actor"] == "staff:op@example.com" and action["data"]["action"] == "retry"
    page = op.get(r.headers["location"]).text
    assert 'id="flash"' in page and "retry" in page and 'data-trigger="staff"' in wait_for(
        lambda: (t := op.get(f"/support/links/{lid}").text) and 'data-trigger="staff"' in t and t)
    # the schedule stays: still an incident with a next attempt, nothing emailed
    row = link_row(console, lid)
    assert row["state"] == "reconnecting" and row["next_attempt_at"] is not None


def test_stop_disable_enable(console, op) -> None:
    user = unique("sde")
    lid, _ = make_link(console, user, "8501", "AQEDAR-sde-cookie-8501")
    disconnect(console, lid, f"acc-{user}")
    assert link_row(console, lid)["next_attempt_at"] is not None
    assert op.post(f"/support/links/{lid}/actions/stop").status_code == 303
    assert link_row(console, lid)["next_attempt_at"] is None
    assert op.post(f"/support/links/{lid}/actions/disable").status_code == 303
    assert link_row(console, lid)["state"] == "disabled"
    page = op.get(f"/support/links/{lid}").text
    assert 'id="act-enable"' in page and 'id="act-disable"' not in page
    n = len(link_events(console, lid, "attempt"))
    out = op.api("POST", f"/v1/support/links/{lid}/actions/enable", json={"reason": "customer asked"})
    assert out.status_code == 200, out.text
    body = out.json()
    assert body["ok"] and body["changed"] and body["state"] == "reconnecting" and body["attempt_now"] is True
    wait_for(lambda: len(link_events(console, lid, "attempt")) > n)
    actions = [(e["data"]["action"], e["actor"]) for e in link_events(console, lid, "staff_action")]
    assert actions == [("stop", "staff:op@example.com"), ("disable", "staff:op@example.com"),
                       ("enable", "staff:op@example.com")]
    assert link_events(console, lid, "staff_action")[-1]["data"]["reason"] == "customer asked"
    # an action that changes nothing is still recorded, with the policy's reason
    again = op.api("POST", f"/v1/support/links/{lid}/actions/enable").json()
    assert again["changed"] is False and again["note"] == "not disabled"
    assert op.api("POST", f"/v1/support/links/{lid}/actions/explode").status_code == 400
    assert op.post(f"/support/links/{lid}/actions/explode").status_code == 404
    assert op.api("POST", "/v1/support/links/999999/actions/retry").status_code == 404


def test_resend_last_email(console, op) -> None:
    user = unique("resend")
    lid, _ = make_link(console, user, "8601", "AQEDAR-resend-cookie-8601")
    assert op.api("POST", f"/v1/support/links/{lid}/actions/resend-email").json()["ok"] is False
    first = queue_email(console, lid)
    # make it an old email: its reconnect link has expired

    async def age(conn):
        await conn.execute(outbox.update().where(outbox.c.id == first)
                           .values(reconnect_expires_at=datetime.now(timezone.utc) - timedelta(seconds=60)))

    console.db(age)
    r = op.post(f"/support/links/{lid}/actions/resend-email")
    assert r.status_code == 303

    async def rows(conn):
        return [dict(x._mapping) for x in (await conn.execute(
            sa.select(outbox).where(outbox.c.link_id == lid).order_by(outbox.c.id))).all()]

    original, copy = console.db(rows)
    assert original["id"] == first
    assert copy["dedupe_key"] != original["dedupe_key"] and copy["message_id"] != original["message_id"]
    assert copy["status"] == "pending" and copy["attempts"] == 0 and copy["subject"] == original["subject"]
    # rendered anew, with a fresh reconnect link (the original's may have expired)
    expired, fresh = sent_token(console, SimpleNamespace(**original)), sent_token(console, SimpleNamespace(**copy))
    assert console.rt.reconnect_signer.verify(expired) is None
    assert console.rt.reconnect_signer.verify(fresh)["l"] == lid
    assert "/reconnect/[reconnect-token]" in copy["body_text"] and fresh not in copy["body_text"]
    audit = link_events(console, lid, "staff_action")[-1]
    assert audit["data"]["action"] == "resend_email" and audit["data"]["outbox_id"] == copy["id"]
    assert audit["actor"] == "staff:op@example.com"
    page = op.get(f"/support/links/{lid}").text
    assert f'href="/support/outbox/{copy["id"]}">open the email' in page
    # and from the email's own page, and the API
    again = op.post(f"/support/outbox/{first}/resend")
    assert again.status_code == 303 and again.headers["location"].startswith("/support/outbox/")
    assert "this is the copy" in op.get(again.headers["location"]).text
    api = op.api("POST", f"/v1/support/outbox/{first}/resend", json={"reason": "user fixed the address"})
    assert api.status_code == 200 and api.json()["outbox_id"] > copy["id"]
    assert op.api("POST", "/v1/support/outbox/999999/resend").status_code == 404
    assert len(console.db(rows)) == 4


def test_revoke_device(console, op) -> None:
    user = unique("rev")
    lid, token = make_link(console, user, "8701", "AQEDAR-revoke-cookie-8701")
    assert console.sync(token, li_at="AQEDAR-revoke-cookie-8701", plain_id="8701").status_code == 200

    async def device_id(conn):
        return (await conn.execute(sa.select(devices.c.id).where(devices.c.user_id == user))).scalar_one()

    dev = console.db(device_id)
    r = op.post(f"/support/devices/{dev}/revoke", {"back": f"/support/links/{lid}"})
    assert r.status_code == 303 and r.headers["location"].startswith(f"/support/links/{lid}?done=revoke-device")
    wait_for(lambda: console.sync(token, li_at="AQEDAR-revoke-cookie-8701", plain_id="8701").status_code == 401,
             timeout=console.settings.token_cache_ttl_s + 5)
    revoked = [e for e in op.get(f"/v1/support/links/{lid}").json()["timeline"] if e["kind"] == "device_revoked"]
    assert revoked and revoked[0]["actor"] == "staff:op@example.com" and revoked[0]["link_id"] is None
    again = op.api("POST", f"/v1/support/devices/{dev}/revoke").json()
    assert again["changed"] is False
    assert op.api("POST", "/v1/support/devices/nope/revoke").status_code == 404
    # a hostile "back" target is not followed
    r = op.post(f"/support/devices/{dev}/revoke", {"back": "https://evil.example/"})
    assert r.headers["location"].startswith("/support/links?")


# --- API keys, OpenAPI -------------------------------------------------------------------------------
def _key_with_scopes(svc, scopes: str) -> str:
    from cookiesync.domain.integrator.services import create_api_key

    name = unique("key")
    key = asyncio.run(create_api_key(svc.settings, name))

    async def q(conn):
        await conn.execute(api_keys.update().where(api_keys.c.name == name).values(scopes=scopes))

    svc.db(q)
    return key


def test_api_keys_need_the_support_scope(console) -> None:
    lid, _ = make_link(console, unique("key"), "8801", "AQEDAR-key-cookie-8801")

    def call(key, method, path, **kw):
        return httpx.request(method, console.url + path, headers={"Authorization": f"Bearer {key}"}, **kw)

    assert call(console.api_key, "GET", "/v1/support/overview").status_code == 403  # integrator scope only
    assert call("csk_unknown", "GET", "/v1/support/overview").status_code == 401
    reader = _key_with_scopes(console, "integrator,support:read")
    assert call(reader, "GET", f"/v1/support/links/{lid}").status_code == 200
    assert call(reader, "POST", f"/v1/support/links/{lid}/actions/stop").status_code == 403
    actor = _key_with_scopes(console, "support")
    r = call(actor, "POST", f"/v1/support/links/{lid}/actions/stop")
    assert r.status_code == 200, r.text  # a bearer key needs no CSRF token: browsers never send it by themselves
    assert link_events(console, lid, "staff_action")[-1]["actor"].startswith("apikey:key-")
    me = call(actor, "GET", "/v1/support/me").json()
    assert me["role"] == "operator" and me["csrf_token"] is None


def test_openapi_lists_the_support_api_not_the_pages(console) -> None:
    schema = httpx.get(console.url + "/schema/openapi.json").json()
    paths = schema["paths"]
    for path in ["/v1/support/overview", "/v1/support/links", "/v1/support/links/{link_id}",
                 "/v1/support/links/{link_id}/actions/{action}", "/v1/support/outbox",
                 "/v1/support/outbox/{outbox_id}", "/v1/support/devices/{device_id}/revoke", "/v1/support/me",
                 "/v1/support/notifications", "/v1/support/notifications/{notification_id}"]:
        assert path in paths, path
    assert not [p for p in paths if p.startswith("/support")]
    assert "LinkPage" in schema["components"]["schemas"] and "Overview" in schema["components"]["schemas"]
    assert {"NotificationPage", "NotificationDetail"} <= set(schema["components"]["schemas"])


# --- secrets never shown ----------------------------------------------------------------------------------
def test_no_cookie_value_or_token_in_any_page(console, op) -> None:
    user = unique("secret")
    li_at, li_a = "AQEDAR-top-secret-li-at-value-0123456789", "AQJ-top-secret-li-a-value-9876543210"
    lid, token = make_link(console, user, "8901", li_at, li_a=li_a)
    newer = "AQEDAR-top-secret-li-at-value-NEWER-00042"
    tried = len(link_events(console, lid, "attempt"))
    assert console.sync(token, li_at=newer, li_a=li_a, plain_id="8901").status_code == 200
    wait_for(lambda: len(link_events(console, lid, "attempt")) > tried)  # the fresh cookie is tried at once
    disconnect(console, lid, f"acc-{user}")
    mail = queue_email(console, lid)
    note = add_notification(console, lid, user, "8901", status="pending", attempts=1, last_error="ConnectError")
    op.post(f"/support/links/{lid}/actions/retry")
    wait_for(lambda: link_events(console, lid, "attempt")[-1]["data"]["trigger"] == "staff")
    session = op.http.cookies["cookiesync_staff"]

    async def reconnect_tokens(conn):  # the ones the mailer signs into the emails it sends
        rows = (await conn.execute(sa.select(outbox).where(outbox.c.reconnect_expires_at.is_not(None)))).all()
        return {sent_token(console, r) for r in rows}

    secrets_ = [li_at, li_a, newer, token, session, console.api_key, *console.db(reconnect_tokens)]
    paths = PAGES + [f"/support/links/{lid}", f"/support/links?user_id={user}", f"/support/outbox/{mail}",
                     "/support/outbox?status=pending", "/v1/support/overview", "/v1/support/links",
                     f"/v1/support/links/{lid}", "/v1/support/outbox", f"/v1/support/outbox/{mail}",
                     f"/support/notifications/{note}", "/v1/support/notifications",
                     f"/v1/support/notifications/{note}", "/v1/support/me"]
    for path in paths:
        r = op.get(path)
        assert r.status_code == 200, path
        for secret in secrets_:
            assert secret not in r.text, (path, secret[:12])
            assert secret[8:28] not in r.text, (path, secret[:12])


# --- PostgreSQL ----------------------------------------------------------------------------------------
def test_console_on_postgresql(tmp_path) -> None:
    ok, reason = postgres_available()
    need(ok, reason)
    from tests.support.postgres import POSTGRES_URL, pg_admin

    name = f"cstest_{os.urandom(6).hex()}"
    pg_admin(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    svc = None
    try:
        svc = start_console(tmp_path, database_url=f"{base}/{name}")
        lid, _ = make_link(svc, "pg-user", "9901", "AQEDAR-pg-cookie-9901")
        disconnect(svc, lid, "acc-pg")
        queue_email(svc, lid)
        client = logged_in(svc, "op@example.com")
        for path in PAGES + [f"/support/links/{lid}", "/support/outbox/1", "/support/links?email=pg-user@example.com"]:
            assert client.get(path).status_code == 200, path
        o = client.get("/v1/support/overview").json()
        assert o["links_by_state"]["reconnecting"] == 1 and sum(b["failed"] for b in o["attempts_per_hour"]) >= 2
        assert o["last_24h"]["reconnect_attempts"] >= 1
        for i in range(2):
            make_link(svc, f"pg-other-{i}", f"99{i}2", f"AQEDAR-pg-other-cookie-{i}")
        seen, cursor = [], None
        for _ in range(5):
            page = client.get("/v1/support/links", params={"limit": 1} | ({"cursor": cursor} if cursor else {}))
            assert page.status_code == 200, page.text
            seen += [i["id"] for i in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if not cursor:
                break
        assert sorted(seen) == sorted(set(seen)) and len(seen) == 3
        assert client.get("/v1/support/links?email=PG-USER@example.com").json()["items"][0]["id"] == lid
        n = len(link_events(svc, lid, "attempt"))
        assert client.post(f"/support/links/{lid}/actions/retry").status_code == 303
        wait_for(lambda: len(link_events(svc, lid, "attempt")) > n)
        client.close()
    finally:
        if svc is not None:
            stop(svc)
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- attempt counters ---------------------------------------------------------------------------------------
def test_overview_counts_the_attempts_made_and_the_upgrade_backfills_them(service_factory, simulator) -> None:
    """On each database: real attempts against the simulator (connect: connected, checkpoint and
    failed; reconnect: connected) are what the overview counts, through the hourly counters bumped
    with each result; and an upgrade to migration 0004 over that history (down to 0003, then up)
    rebuilds the very same counters, so the overview shows the very same figures."""
    from alembic import command

    from cookiesync.db.engine import alembic_config, migrate
    from cookiesync.db.schema import attempt_counts
    from tests.support.history import history
    from tests.support.reconnect import connect_one, fire
    from tests.support.simulator import sim_script

    svc = service_factory()  # retries an hour apart: no attempt is made but those below
    for user_id, plain_id, li_at, outcomes in [("ac-cp", "6102", "AQEDAR-count-checkpoint-6102", ["checkpoint:2FA"]),
                                               ("ac-bad", "6103", "AQEDAR-count-refused-6103",
                                                ["invalid_credentials"])]:
        sim_script(simulator, li_at, plain_id, outcomes)
        svc.new_user(user_id, email=f"{user_id}@example.com")
        assert svc.sync(svc.pair(user_id), li_at=li_at, plain_id=plain_id).status_code == 200
        wait_for(lambda: [e for e in history(svc, plain_id) if e["kind"] == "attempt"])
    _, account_id = connect_one(svc, simulator, "ac-ok", "6101", "AQEDAR-count-good-6101")
    fire(simulator, account_id)  # CREDENTIALS: one reconnect attempt, which succeeds

    async def attempt_events(conn):
        rows = (await conn.execute(sa.select(events.c.data).where(events.c.kind == "attempt"))).scalars().all()
        counts: dict[tuple[str, str], int] = {}
        for data in rows:
            counts[data["kind"], data["outcome"]] = counts.get((data["kind"], data["outcome"]), 0) + 1
        return counts

    made = {("connect", "connected"): 1, ("connect", "checkpoint"): 1, ("connect", "failed"): 1,
            ("reconnect", "connected"): 1}
    wait_for(lambda: svc.db(attempt_events) == made and svc.rt.runner.attempts_made == 4)
    add_staff(svc, "counter@example.com", "viewer")
    client = logged_in(svc, "counter@example.com")

    def figures() -> dict:  # (not where the windows start: an hour may begin between two reads)
        o = client.get("/v1/support/overview").json()
        return {"24h": o["last_24h"] | {"since": None}, "7d": o["last_7d"] | {"since": None},
                "hours": [b for b in o["attempts_per_hour"] if b["succeeded"] + b["failed"] + b["other"]]}

    def counters() -> list[tuple]:
        async def q(conn):
            return [tuple(r) for r in (await conn.execute(sa.select(attempt_counts).order_by(
                attempt_counts.c.hour, attempt_counts.c.kind, attempt_counts.c.outcome))).all()]

        return svc.db(q)

    live, rows = figures(), counters()
    for window in (live["24h"], live["7d"]):
        assert {k: window[k] for k in ("attempts", "succeeded", "failed", "checkpoints", "reconnect_attempts",
                                       "reconnect_succeeded")} == {
            "attempts": 4, "succeeded": 2, "failed": 1, "checkpoints": 1, "reconnect_attempts": 1,
            "reconnect_succeeded": 1}, window
        assert window["success_rate"] == 0.5 and window["reconnect_success_rate"] == 1.0
    hours = live["hours"]
    assert [sum(b[k] for b in hours) for k in ("succeeded", "failed", "other")] == [2, 1, 1]
    assert sum(n for *_, n in rows) == 4 and {(k, o) for _, k, o, _ in rows} == set(made)

    # an existing database upgraded to 0004: the counters come from the history alone
    command.downgrade(alembic_config(svc.settings.database), "0003")
    migrate(svc.settings.database)
    assert counters() == rows
    assert figures() == live
    client.close()


# --- scale -------------------------------------------------------------------------------------------------
def test_lists_stay_fast_and_indexed_with_100k_links(tmp_path) -> None:
    """100k links and 200k attempts in SQLite: every list page walks an index, and the queries
    behind the pages answer correctly at that size (their speed: benchmarks/console.py)."""
    import sqlite3
    from types import SimpleNamespace

    from cookiesync.db.engine import make_engine, migrate
    from cookiesync.domain.support import queries
    from cookiesync.domain.support.queries.links import LinkFilter
    from cookiesync.settings import Settings

    path = tmp_path / "big.db"
    url = f"sqlite+aiosqlite:///{path}"
    migrate(url, "0003")  # the history is written first; the upgrade to 0004 then counts its attempts
    n = 100_000
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    db = sqlite3.connect(path)
    seq = "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < :last) "
    ago = "datetime(:now, '-' || (abs(random()) % :span) || ' seconds') || '.000000'"
    db.execute(seq + "INSERT INTO users (user_id, email, created_at, updated_at) "
               "SELECT 'u' || i, 'u' || i || '@example.com', :now, :now FROM seq", {"last": n - 1, "now": now})
    # 90 % connected, the rest spread over the other states; last change over 30 days
    db.execute(seq + "INSERT INTO links (id, user_id, plain_id, state, auto_connect, unipile_account_id, next_slot, "
               "attempts_in_incident, created_at, updated_at, date_last_cookie) "
               "SELECT i + 1, 'u' || i, CAST(100000 + i AS TEXT), CASE WHEN i % 100 < 90 THEN 'connected' "
               "WHEN i % 100 < 95 THEN 'reconnecting' WHEN i % 100 < 98 THEN 'needs_user' "
               "WHEN i % 100 = 98 THEN 'pending' ELSE 'disabled' END, 1, 'acc' || i, 0, 0, :now, "
               + ago + ", :now FROM seq", {"last": n - 1, "now": now, "span": 30 * 86400})
    # 200k attempts over the last 7 days
    db.execute(seq + "INSERT INTO events (at, user_id, link_id, kind, data) "
               "SELECT " + ago + ", 'u' || (i % :n), i % :n + 1, 'attempt', json_object('kind', 'reconnect', "
               "'outcome', CASE WHEN random() % 2 = 0 THEN 'connected' ELSE 'failed' END) FROM seq",
               {"last": 2 * n - 1, "now": now, "n": n, "span": 7 * 86400})
    db.commit()
    plans = {
        "list": "SELECT * FROM links ORDER BY updated_at DESC, id DESC LIMIT 51",
        "state": "SELECT * FROM links WHERE state = 'reconnecting' AND (updated_at, id) < ('2100-01-01', 5) "
                 "ORDER BY updated_at DESC, id DESC LIMIT 51",
        "email": "SELECT * FROM links WHERE user_id IN (SELECT user_id FROM users WHERE email = 'u5@example.com')",
        "plain_id": "SELECT * FROM links WHERE plain_id = '100005'",
        "open incidents": "SELECT count(*) FROM incidents WHERE closed_at IS NULL",
    }
    for name, sql in plans.items():
        plan = " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql))
        assert "USING" in plan and not re.search(r"SCAN (links|users|incidents)(?! USING)", plan), (name, plan)
    db.close()
    migrate(url)

    rt = SimpleNamespace(engine=make_engine(url), settings=Settings(), instance_id="x", caches={})

    async def run():
        timings, out = {}, {}

        async def timed(name, coro):
            start = time.perf_counter()
            out[name] = await coro
            timings[name] = time.perf_counter() - start

        try:
            await timed("first page", queries.links.page(rt, LinkFilter()))
            await timed("page 2", queries.links.page(rt, LinkFilter(cursor=out["first page"].next_cursor)))
            await timed("by state", queries.links.page(rt, LinkFilter(state="needs_user")))
            await timed("by email", queries.links.page(rt, LinkFilter(email="u77@example.com")))
            await timed("detail", queries.links.detail(rt, 77))
            await timed("overview", queries.overview.read(rt))
            await timed("overview again", queries.overview.read(rt))
        finally:
            await rt.engine.dispose()
        return out, timings

    out, timings = asyncio.run(run())
    first, second = out["first page"], out["page 2"]
    assert len(first.items) == 50 and first.next_cursor
    assert len(second.items) == 50 and not {i.id for i in first.items} & {i.id for i in second.items}
    keys = [(i.updated_at, i.id) for i in first.items + second.items]
    assert keys == sorted(keys, reverse=True)  # last changed first, page 2 carries on from page 1
    assert len(out["by state"].items) == 50 and {i.state for i in out["by state"].items} == {"needs_user"}
    assert [(i.id, i.email) for i in out["by email"].items] == [(78, "u77@example.com")]
    detail = out["detail"]
    assert detail.link.id == 77 and detail.user.user_id == "u76" and 0 < len(detail.timeline) <= 100
    assert all(e.link_id == 77 and e.kind == "attempt" for e in detail.timeline)
    for o in (out["overview"], out["overview again"]):
        assert o.links_total == n and o.links_by_state["connected"] == 90 * n // 100
        # (the week's window starts at the top of the hour 7 days ago: a few attempts may fall out only
        # if an hour began between writing the data and reading it)
        assert 2 * n - 200 <= o.last_7d.attempts <= 2 * n
        assert o.last_7d.succeeded + o.last_7d.failed == o.last_7d.attempts
        assert 0 < o.last_24h.attempts < 2 * n and len(o.attempts_per_hour) == 24
    # Timings are information only (shown with -s): speed is measured, with its goal, by
    # `python -m benchmarks.console` (also a step of `python -m benchmarks.run`), over HTTP.
    print("support queries with 100k links / 200k attempts (s):", {k: round(v, 3) for k, v in timings.items()})
