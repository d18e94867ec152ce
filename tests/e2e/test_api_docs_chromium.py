"""The API docs page in Debian's headless Chromium: Swagger UI renders every operation of the
schema from this service's own assets, and the browser asks no other origin for anything."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.components import need
from tests.support.service import start_service
from tests.support.settings import make_settings

pytestmark = pytest.mark.chromium

CHROMIUM = Path("/usr/bin/chromium")


def test_swagger_ui_renders_from_local_assets_only(tmp_path) -> None:
    need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "the playwright package is not installed (pip install -e '.[test]')")
    svc = start_service(make_settings(tmp_path))
    try:
        operations = sum(len(item) for item in svc.http.get("/schema/openapi.json").json()["paths"].values())
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                requested, errors = [], []
                page.on("request", lambda r: requested.append(r.url))
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.goto(svc.url + "/schema/swagger")
                page.wait_for_selector(".opblock", timeout=15000)
                shown = page.locator(".opblock").count()
            finally:
                browser.close()
    finally:
        svc.http.close()
        svc.server.stop()
    assert shown == operations and operations >= 20
    origin = urlsplit(svc.url).netloc
    assert {urlsplit(u).netloc for u in requested} == {origin}, requested
    assert errors == []  # no script or style refused by the page's Content-Security-Policy
