"""The account-status webhook registered at start-up in production (issue 15 §3): once, however
many times the service starts; not at all when turned off; and a Unipile that is down or refuses
is one clear log line and a retry, while the service serves."""
from __future__ import annotations

import logging
import secrets

import httpx
import msgspec

from cookiesync.domain.webhooks.registration import WebhookRegistration
from tests.support.servers import ServerThread, free_port
from tests.support.service import USED_SECRETS, start_service
from tests.support.wait import wait_for

PUBLIC = "https://cookiesync.example.com"  # the test service replaces it with its own loopback URL


def our_url(svc) -> str:
    return svc.settings.base_url + "/v1/webhooks/unipile/account-status"


def production(**kw) -> dict:
    secret = dict(signing_secret=secrets.token_urlsafe(48), webhook_secret=secrets.token_urlsafe(32),
                  hosted_auth_secret=secrets.token_urlsafe(32), encryption_keys="k1:" + secrets.token_urlsafe(32))
    USED_SECRETS.update(secret.values())  # the run-wide log check looks for each of them
    return dict(mode="production", public_url=PUBLIC, **secret) | kw


def webhooks(sim) -> list[dict]:
    r = httpx.get(f"{sim.url}/api/v1/webhooks", headers={"X-API-KEY": sim.api_key})
    r.raise_for_status()
    return r.json()["items"]


def registration(svc) -> WebhookRegistration | None:
    return svc.rt.webhook_registration


def test_registered_once_at_start_up_however_often_it_starts(service_factory, simulator) -> None:
    other = httpx.post(f"{simulator.url}/api/v1/webhooks", headers={"X-API-KEY": simulator.api_key},
                       json={"request_url": "https://elsewhere.example.com/hook", "source": "account_status"})
    assert other.status_code == 201
    first = service_factory(**production())
    url = our_url(first)
    hook = wait_for(lambda: [w for w in webhooks(simulator) if w["request_url"] == url], timeout=10)[0]
    headers = {h["key"]: h["value"] for h in hook["headers"]}
    assert headers[first.settings.webhook_header] == first.settings.webhook_secret
    assert wait_for(lambda: registration(first).result).startswith("created")
    first.server.stop()

    again = start_service(first.settings, port=first.settings.port)  # a restart on the same public URL
    try:
        assert wait_for(lambda: registration(again).result, timeout=10).startswith("kept")
    finally:
        again.http.close()
        again.server.stop()
    assert [w["id"] for w in webhooks(simulator) if w["request_url"] == url] == [hook["id"]]
    assert len(webhooks(simulator)) == 2  # someone else's webhook is left alone


def test_not_registered_when_turned_off(service_factory, simulator) -> None:
    off = service_factory(**production(register_webhook="off"))
    assert registration(off) is None
    assert off.http.get("/healthz").status_code == 200 and webhooks(simulator) == []


def test_only_production_with_a_public_url_registers_at_start_up() -> None:
    from cookiesync.domain.webhooks.registration import wanted_at_start
    from cookiesync.settings import Settings

    def settings(**kw) -> Settings:
        return msgspec.structs.replace(Settings(), **kw)

    assert wanted_at_start(settings(mode="production", public_url=PUBLIC))
    assert not wanted_at_start(settings(mode="production", public_url=PUBLIC, register_webhook="off"))
    assert not wanted_at_start(settings(mode="production", public_url=""))
    assert not wanted_at_start(settings(mode="local", public_url=PUBLIC))


def test_unipile_down_at_start_up_is_logged_retried_and_does_not_stop_the_service(service_factory, caplog) -> None:
    caplog.set_level(logging.INFO, logger="cookiesync.webhooks")
    port = free_port()  # nothing listens here yet: Unipile is down
    key = "sim-later-key-" + secrets.token_urlsafe(8)
    USED_SECRETS.add(key)
    svc = service_factory(**production(unipile_dsn=f"http://127.0.0.1:{port}", unipile_api_key=key))
    failed = wait_for(lambda: [r for r in caplog.records if "registration failed" in r.getMessage()], timeout=10)
    line = failed[0].getMessage()
    assert "\n" not in line and "retrying in" in line and "ConnectError" in line
    for secret in (key, svc.settings.webhook_secret):
        assert secret not in line
    assert svc.http.get("/healthz").status_code == 200  # serving meanwhile

    from cookiesync.simulator.app import SimulatorConfig, create_simulator_app

    app = create_simulator_app(SimulatorConfig(api_key=key, control_token="c-" + secrets.token_urlsafe(8)))
    with ServerThread(app, port=port) as sim:  # Unipile is back
        sim.api_key = key
        hook = wait_for(lambda: webhooks(sim), timeout=15)
        assert [w["request_url"] for w in hook] == [our_url(svc)]
        done = wait_for(lambda: registration(svc) and registration(svc).result, timeout=10)
        assert done.startswith("created") and registration(svc).failures >= 1
