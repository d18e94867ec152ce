"""Every answer of the support console and its JSON API, errors and redirects included, says
`Cache-Control: no-store` (and `Pragma: no-cache`): they carry emails, addresses and user
agents that no browser or proxy cache may keep. Over HTTP, against a real service."""
from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support.console import make_link, queue_email, signed_in, start_console, stop, unique


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    svc = start_console(tmp_path_factory.mktemp("nostore"))
    yield svc
    stop(svc)


def support_key(svc) -> str:
    from cookiesync.domain.integrator.services import create_api_key

    return asyncio.run(create_api_key(svc.settings, unique("tools"), scopes="support"))


def no_store(r: httpx.Response) -> bool:
    return r.headers.get("cache-control") == "no-store" and r.headers.get("pragma") == "no-cache"


def test_support_api_answers_are_never_stored(console) -> None:
    lid, _ = make_link(console, unique("cache"), "9301", "AQEDAR-cache-cookie-9301")
    mail = queue_email(console, lid)
    key = {"Authorization": f"Bearer {support_key(console)}"}
    anon = httpx.Client(base_url=console.url, timeout=30)
    seen = {}
    for path in ["/v1/support/me", "/v1/support/overview", "/v1/support/links", f"/v1/support/links/{lid}",
                 "/v1/support/outbox", f"/v1/support/outbox/{mail}", "/v1/support/notifications"]:
        seen[path] = anon.get(path, headers=key)
        assert seen[path].status_code == 200, path
    seen["404"] = anon.get("/v1/support/links/999999", headers=key)
    seen["400"] = anon.get("/v1/support/links?state=nope", headers=key)
    seen["401"] = anon.get("/v1/support/links")
    seen["action"] = anon.post(f"/v1/support/links/{lid}/actions/stop", headers=key)
    assert [seen[k].status_code for k in ("404", "400", "401", "action")] == [404, 400, 401, 200]
    assert not [path for path, r in seen.items() if not no_store(r)]


def test_console_pages_are_never_stored(console) -> None:
    lid, _ = make_link(console, unique("cachepage"), "9302", "AQEDAR-cache-cookie-9302")
    mail = queue_email(console, lid)
    anon = httpx.Client(base_url=console.url, follow_redirects=False, timeout=30)
    login_page, redirect = anon.get("/support/login"), anon.get("/support/links")
    assert login_page.status_code == 200 and redirect.status_code == 303
    op = signed_in(console)
    pages = {p: op.get(p) for p in ["/support/", "/support/links", f"/support/links/{lid}", "/support/outbox",
                                    f"/support/outbox/{mail}", "/support/notifications", "/support/links/999999",
                                    "/support/links?state=nope"]}
    assert [r.status_code for r in pages.values()] == [200] * 6 + [404, 400]
    assert not [p for p, r in {"login": login_page, "redirect": redirect, **pages}.items() if not no_store(r)]
    # the console's own script and style are the same for everyone: they keep their public caching
    assert op.get("/support/static/console.js").headers["cache-control"] == "public, max-age=300"
