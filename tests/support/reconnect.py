"""Disconnect scenarios: a member connected through the simulator with its webhooks pointed
at the service, Unipile's status webhook fired for it, and retry intervals shrunk to seconds."""
from __future__ import annotations

from tests.support.service import settled
from tests.support.simulator import sim_post, sim_script

INTERVAL = 0.8


def connect_one(svc, sim, user_id: str, plain_id: str, li_at: str, outcomes: list[str] | None = None,
                name: str | None = None):
    sim_script(sim, li_at, plain_id, outcomes, name=name)
    svc.new_user(user_id, email=f"{user_id}@example.com")
    token = svc.pair(user_id)
    assert svc.sync(token, li_at=li_at, plain_id=plain_id).status_code == 200
    assert settled(svc, user_id, plain_id) == "connected"
    account_id = svc.accounts(user_id)[0]["unipile_account_id"]
    point_webhooks(svc, sim)
    return token, account_id


def point_webhooks(svc, sim) -> None:
    """The simulator's status webhooks go to the service, with its secret header."""
    sim_post(sim, "/_sim/config", json={
        "webhook_url": f"{svc.url}/v1/webhooks/unipile/account-status",
        "webhook_header": svc.settings.webhook_header, "webhook_secret": svc.settings.webhook_secret,
    }).raise_for_status()


def fire(sim, account_id: str, message: str = "CREDENTIALS") -> dict:
    r = sim_post(sim, f"/_sim/accounts/{account_id}/status", json={"message": message})
    assert r.status_code == 200, r.text
    return r.json()


def fast(**kw):
    return dict(retry_interval_s=INTERVAL, retry_count=4, sweep_interval_s=0.1, max_incident_age_s=3600) | kw
