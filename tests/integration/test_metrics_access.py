"""`/metrics` in production: 404 until `COOKIESYNC_METRICS_TOKEN` is set, then only for
`Authorization: Bearer <token>` (401 otherwise); local mode serves it as before. Over HTTP."""
from __future__ import annotations

import secrets

import httpx
import pytest

PROD_SECRETS = dict(mode="production", signing_secret=secrets.token_urlsafe(48),
                    webhook_secret=secrets.token_urlsafe(32), hosted_auth_secret=secrets.token_urlsafe(32),
                    encryption_keys="k1:" + secrets.token_urlsafe(32))
TOKEN = "metrics-" + secrets.token_urlsafe(32)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def scrape(svc, authorization: str | None = None) -> httpx.Response:
    return svc.http.get("/metrics", headers={"Authorization": authorization} if authorization else {})


def test_production_without_a_token_hides_metrics(service_factory) -> None:
    svc = service_factory(**PROD_SECRETS)
    r = scrape(svc)
    assert r.status_code == 404 and "cookiesync_" not in r.text
    assert scrape(svc, "Bearer anything").status_code == 404


def test_production_with_a_token_needs_it(service_factory) -> None:
    svc = service_factory(**PROD_SECRETS, metrics_token=TOKEN)
    for wrong in (None, "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"):
        r = scrape(svc, wrong)
        assert r.status_code == 401, wrong
        assert r.headers["www-authenticate"].startswith("Bearer") and "cookiesync_" not in r.text
        assert TOKEN not in r.text
    r = scrape(svc, f"Bearer {TOKEN}")
    assert r.status_code == 200 and "cookiesync_links" in r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert scrape(svc, f"bearer   {TOKEN}").status_code == 200  # the scheme is case-insensitive (RFC 9110)


def test_local_mode_serves_metrics_unless_a_token_is_set(service_factory) -> None:
    svc = service_factory()
    assert scrape(svc).status_code == 200 and "cookiesync_syncs_total" in scrape(svc).text
    guarded = service_factory(metrics_token=TOKEN)
    assert scrape(guarded).status_code == 401
    assert scrape(guarded, f"Bearer {TOKEN}").status_code == 200
