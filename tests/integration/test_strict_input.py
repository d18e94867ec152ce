"""Every id and every text field, at every way in, refuses what the service cannot store or show
truthfully: a 400 naming the field (or 404 for a well-formed id that names no row), never a 500
and never a second user or member. Over real HTTP, on SQLite and PostgreSQL (the ids past
PostgreSQL's 32-bit integer and NUL in text failed only there).

The bad values: a trailing newline (Python's `$` takes it), NUL, a C1 control (U+0085, which
`\\s` also matches), a right-to-left override (U+202E); and for ids 2^31, 2^63, 2^64, "²" (whose
`isdigit()` is true and `int()` fails), "-1", Arabic-Indic digits (which `int()` takes) and "1\\n"."""
from __future__ import annotations

import asyncio
import base64
import re
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

from cookiesync.db.schema import users
from tests.support.console import make_link, queue_email, signed_in, start_console, stop
from tests.support.postgres import fresh_postgres_database

BAD_TEXT = {"newline": "\n", "nul": "\x00", "c1": "\x85", "rlo": "\u202e"}
BAD_IDS = {"2^31": str(2 ** 31), "2^63": str(2 ** 63), "2^64": str(2 ** 64), "superscript": "²", "minus": "-1",
           "arabic-indic": "\u0661\u0662", "newline": "1\n"}
SECOND_MEMBER = "777000112"
ABSENT_IDS = {"absent": "999999", "largest": str(2 ** 31 - 1)}
GOOD_SYNC = {"li_at": "AQEDAR-strict-input-cookie-0001", "li_a": None,
             "user_agent": "Mozilla/5.0 (X11; Linux x86_64) StrictInput/1.0", "plain_id": "777000111",
             "extension_version": "1.0.0"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def svc(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"strict-{request.param}")
    if request.param == "postgres":
        with fresh_postgres_database() as url:
            service = start_console(tmp, database_url=url)
            yield service
            stop(service)
    else:
        service = start_console(tmp)
        yield service
        stop(service)


@pytest.fixture(scope="module")
def world(svc):
    """A link with an email (so the id routes have rows), a paired device, a support API key and
    a signed-in operator."""
    from cookiesync.domain.integrator.services import create_api_key

    lid, token = make_link(svc, "strict-user", GOOD_SYNC["plain_id"], GOOD_SYNC["li_at"])
    mail = queue_email(svc, lid)
    key = asyncio.run(create_api_key(svc.settings, "strict-support", scopes="support"))
    api = httpx.Client(base_url=svc.url, timeout=30, headers={"Authorization": f"Bearer {key}"})
    pages = signed_in(svc, ip="198.51.100.18")
    yield {"link": lid, "mail": mail, "token": token, "api": api, "pages": pages}
    api.close()
    pages.close()


def user_ids(svc) -> list[str]:
    async def q(conn):
        return sorted((await conn.execute(sa.select(users.c.user_id))).scalars())

    return svc.db(q)


def refused(r: httpx.Response, field: str) -> None:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert field in r.text, r.text[:300]
    assert "Traceback" not in r.text


# --- text fields ------------------------------------------------------------------------------
TEXT_CASES = [(field, where, name, bad) for name, bad in BAD_TEXT.items()
              for field, where in (("display_name", "middle"), ("display_name", "end"), ("email", "middle"),
                                   ("email", "end"), ("user_id", "end"))]


@pytest.mark.parametrize("field,where,name,bad", TEXT_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in TEXT_CASES])
def test_integrator_text_fields(svc, world, field, where, name, bad) -> None:
    before = user_ids(svc)
    if field == "user_id":
        r = svc.integrator("PUT", f"/v1/users/strict-user{quote(bad, safe='')}", json={})
    else:
        good = {"display_name": "Ann Lee", "email": "ann@example.com"}[field]
        value = good + bad if where == "end" else good.replace("@", f"{bad}@").replace(" ", f" {bad}")
        r = svc.integrator("PUT", "/v1/users/strict-user", json={field: value})
    refused(r, field)
    assert user_ids(svc) == before  # no second "strict-user\n"


SYNC_FIELDS = ("li_at", "li_a", "user_agent", "plain_id", "extension_version")
SYNC_CASES = [(field, name, bad) for field in SYNC_FIELDS for name, bad in BAD_TEXT.items()]


@pytest.mark.parametrize("field,name,bad", SYNC_CASES, ids=[f"{c[0]}-{c[1]}" for c in SYNC_CASES])
def test_sync_text_fields(svc, world, field, name, bad) -> None:
    value = (GOOD_SYNC[field] or GOOD_SYNC["li_at"]) + bad
    r = svc.sync(world["token"], **{field: value})
    refused(r, field)
    assert {a["plain_id"] for a in svc.accounts("strict-user")} <= {GOOD_SYNC["plain_id"], SECOND_MEMBER}


@pytest.mark.parametrize("field", ["pairing_code", "extension_version"])
@pytest.mark.parametrize("name", BAD_TEXT)
def test_pairing_text_fields(svc, world, field, name) -> None:
    body = {"pairing_code": "ABCD-EFGH", "extension_version": "1.0.0"}
    body[field] += BAD_TEXT[name]
    refused(svc.http.post("/v1/extension/pair", json=body), field)


@pytest.mark.parametrize("field", ["message", "account_id", "account_type"])
@pytest.mark.parametrize("name", BAD_TEXT)
def test_webhook_text_fields(svc, world, field, name) -> None:
    status = {"account_id": "acc-strict", "account_type": "LINKEDIN", "message": "CREDENTIALS"}
    status[field] += BAD_TEXT[name]
    r = svc.http.post("/v1/webhooks/unipile/account-status", json={"AccountStatus": status},
                      headers={svc.settings.webhook_header: svc.settings.webhook_secret})
    refused(r, field)


QUERY_TEXT = ["user_id", "email", "plain_id", "account_id", "cursor", "from"]
QUERY_CASES = [(param, name) for param in QUERY_TEXT for name in BAD_TEXT if name != "newline"] + [
    (param, "newline") for param in QUERY_TEXT]


@pytest.mark.parametrize("param,name", QUERY_CASES, ids=[f"{p}-{n}" for p, n in QUERY_CASES])
def test_support_query_text(svc, world, param, name) -> None:
    r = world["api"].get("/v1/support/links", params={param: f"a{BAD_TEXT[name]}b"})
    refused(r, param)


@pytest.mark.parametrize("param,name", QUERY_CASES[:len(QUERY_TEXT) * 3],
                         ids=[f"{p}-{n}" for p, n in QUERY_CASES[:len(QUERY_TEXT) * 3]])
def test_console_query_text(svc, world, param, name) -> None:
    r = world["pages"].get("/support/links", params={param: f"a{BAD_TEXT[name]}b"})
    refused(r, param)
    assert 'id="error-message"' in r.text


@pytest.mark.parametrize("name", BAD_TEXT)
def test_console_action_reason(svc, world, name) -> None:
    pages = world["pages"]
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', pages.get("/support/").text).group(1)
    r = pages.post(f"/support/links/{world['link']}/actions/stop",
                   data={"csrf_token": csrf, "reason": f"asked{BAD_TEXT[name]}"})
    refused(r, "reason")
    api = world["api"].post(f"/v1/support/links/{world['link']}/actions/stop",
                            json={"reason": f"asked{BAD_TEXT[name]}"})
    refused(api, "reason")


@pytest.mark.parametrize("name", BAD_TEXT)
def test_console_login_email(svc, world, name) -> None:
    """The sign-in form's email is looked up and keyed in the failure counts: NUL failed there."""
    anon = httpx.Client(base_url=svc.url, timeout=30, headers={"X-Forwarded-For": "198.51.100.19"})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', anon.get("/support/login").text).group(1)
    r = anon.post("/support/login", data={"email": f"op@example.com{BAD_TEXT[name]}x", "password": "wrong",
                                          "csrf_token": csrf, "next": "/support/"})
    refused(r, "email")


# --- ids ------------------------------------------------------------------------------------------
API_ID_ROUTES = {
    "outbox": ("GET", "/v1/support/outbox/{}", "outbox_id"),
    "link": ("GET", "/v1/support/links/{}", "link_id"),
    "notification": ("GET", "/v1/support/notifications/{}", "notification_id"),
    "action": ("POST", "/v1/support/links/{}/actions/retry", "link_id"),
    "resend": ("POST", "/v1/support/outbox/{}/resend", "outbox_id"),
    "timeline-before": ("GET", "/v1/support/links/{link}?before={}", "before"),
    "outbox-link_id": ("GET", "/v1/support/outbox?link_id={}", "link_id"),
    "notifications-link_id": ("GET", "/v1/support/notifications?link_id={}", "link_id"),
}
# the console's pages take the same ids at the same paths, without /v1
PAGE_ID_ROUTES = {f"page-{route}": (method, path.removeprefix("/v1"), field)
                  for route, (method, path, field) in API_ID_ROUTES.items()}
# the pages trim what a filter form sends (a stray space or newline typed in a box): "1\n" there is 1
ID_CASES = [(route, name) for route in API_ID_ROUTES for name in BAD_IDS] + [
    (route, name) for route in PAGE_ID_ROUTES for name in BAD_IDS
    if not (name == "newline" and "?" in PAGE_ID_ROUTES[route][1])]


def _ask(world, route: str, value: str) -> httpx.Response:
    method, path, _ = API_ID_ROUTES.get(route) or PAGE_ID_ROUTES[route]
    client = world["api"] if route in API_ID_ROUTES else world["pages"]
    url = path.replace("{link}", str(world["link"])).format(quote(value, safe=""))
    if method == "POST" and route in PAGE_ID_ROUTES:
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/support/").text).group(1)
        return client.post(url, data={"csrf_token": csrf})
    return client.request(method, url)


@pytest.mark.parametrize("route,name", ID_CASES, ids=[f"{r}-{n}" for r, n in ID_CASES])
def test_bad_ids(svc, world, route, name) -> None:
    field = (API_ID_ROUTES.get(route) or PAGE_ID_ROUTES[route])[2]
    refused(_ask(world, route, BAD_IDS[name]), field)


ABSENT_CASES = [(route, name) for route in list(API_ID_ROUTES) + list(PAGE_ID_ROUTES) for name in ABSENT_IDS
                if "?" not in (API_ID_ROUTES.get(route) or PAGE_ID_ROUTES[route])[1]]


@pytest.mark.parametrize("route,name", ABSENT_CASES, ids=[f"{r}-{n}" for r, n in ABSENT_CASES])
def test_absent_ids_are_404(svc, world, route, name) -> None:
    r = _ask(world, route, ABSENT_IDS[name])
    assert r.status_code == 404, (r.status_code, r.text[:300])


def test_in_range_ids_in_queries_are_read(svc, world) -> None:
    api = world["api"]
    assert api.get(f"/v1/support/outbox?link_id={world['link']}").json()["items"][0]["id"] == world["mail"]
    assert api.get(f"/v1/support/outbox?link_id={2 ** 31 - 1}").json()["items"] == []
    assert api.get(f"/v1/support/links/{world['link']}?before={2 ** 31 - 1}").status_code == 200
    # a cursor is an id too: past the column it is malformed, not a driver error
    refused(api.get(f"/v1/support/outbox?cursor={2 ** 40}"), "cursor")
    refused(api.get("/v1/support/outbox?cursor=%D9%A1%D9%A2"), "cursor")
    # and so is the id in a links cursor (time|id, base64url): a real one pages, one past the column is refused
    assert svc.sync(world["token"], plain_id=SECOND_MEMBER).status_code == 200
    first = api.get("/v1/support/links", params={"user_id": "strict-user", "limit": 1}).json()
    more = api.get("/v1/support/links", params={"user_id": "strict-user", "limit": 1, "cursor": first["next_cursor"]})
    assert more.status_code == 200 and more.json()["items"][0]["id"] != first["items"][0]["id"]
    when = base64.urlsafe_b64decode(first["next_cursor"] + "==").decode().partition("|")[0]
    too_far = base64.urlsafe_b64encode(f"{when}|{2 ** 40}".encode()).decode().rstrip("=")
    refused(api.get("/v1/support/links", params={"cursor": too_far}), "cursor")


def test_device_id_text(svc, world) -> None:
    refused(world["api"].post("/v1/support/devices/abc%00def/revoke"), "device_id")
    assert world["api"].post("/v1/support/devices/0123456789abcdef/revoke").status_code == 404


# --- a query parameter given twice ---------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/support/links?user_id=a&user_id=b", "/v1/support/outbox?link_id=1&link_id=2",
                                  "/support/links?user_id=a&user_id=b", "/support/links/{link}?before=5&before=6"])
def test_repeated_query_parameter(svc, world, path) -> None:
    client = world["pages"] if path.startswith("/support/") else world["api"]
    r = client.get(path.replace("{link}", str(world["link"])))
    refused(r, "more than once")


def test_repeated_query_parameter_integrator(svc, world) -> None:
    refused(svc.integrator("DELETE", "/v1/users/strict-user?delete_in_unipile=false&delete_in_unipile=true"),
            "delete_in_unipile")
    assert user_ids(svc).count("strict-user") == 1
    # the caller is known first: no key is still 401, whatever the query
    assert svc.http.get("/v1/support/links?user_id=a&user_id=b").status_code == 401


# --- the console isolates user text ----------------------------------------------------------------
def test_console_isolates_user_text(svc, world) -> None:
    """A name stored with an override (before input refused them) cannot turn the link page's
    header around: each user value is in its own <bdi>, which the stylesheet isolates."""
    async def q(conn):
        await conn.execute(users.update().where(users.c.user_id == "strict-user")
                           .values(display_name="Ann \u202eLee"))

    svc.db(q)
    html = world["pages"].get(f"/support/links/{world['link']}").text
    header = re.search(r'<p class="sub">(.*?)</p>', html, re.S).group(1)
    assert "<bdi>Ann \u202eLee</bdi>" in header
    assert f"<bdi>{GOOD_SYNC['plain_id']}</bdi>" in header and "<bdi>strict-user</bdi>" in header
    assert "bdi { unicode-bidi:isolate; }" in world["pages"].get("/support/static/console.css").text
