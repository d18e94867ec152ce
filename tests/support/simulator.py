"""Scripting the Unipile simulator (`simulator` fixture) through its /_sim control API, which
answers only with the simulator's control token (`X-Sim-Token`). It shows cookies as their
fingerprints: compare with `fingerprint(value)`."""
from __future__ import annotations

import httpx

from cookiesync.simulator.redact import fingerprint
from cookiesync.simulator.transport import CONTROL_TOKEN_HEADER
from tests.support.service import USED_SECRETS

__all__ = ["fingerprint", "sim_get", "sim_post", "sim_script", "sim_status"]


def sim_headers(sim) -> dict[str, str]:
    return {CONTROL_TOKEN_HEADER: sim.control_token}


def sim_get(sim, path: str, **kw) -> httpx.Response:
    """`GET {sim.url}{path}` with the control token, e.g. `sim_get(sim, "/_sim/accounts")`."""
    return httpx.get(f"{sim.url}{path}", headers=sim_headers(sim), **kw)


def sim_post(sim, path: str, **kw) -> httpx.Response:
    return httpx.post(f"{sim.url}{path}", headers=sim_headers(sim), **kw)


def sim_script(sim, li_at: str, plain_id: str, outcomes: list[str] | None = None,
               latency_ms: int | None = None, name: str | None = None) -> None:
    """The cookie `li_at` is member `plain_id`'s (named `name`, or "Member <plain_id>")."""
    USED_SECRETS.add(li_at)
    body = {"li_at": li_at, "plain_id": plain_id, "name": name or f"Member {plain_id}"}
    if outcomes:
        body["outcomes"] = outcomes
    if latency_ms is not None:
        body["latency_ms"] = latency_ms
    r = sim_post(sim, "/_sim/cookies", json=body)
    assert r.status_code in (200, 201), r.text


def sim_status(sim, account_id: str, message: str) -> None:
    """Unipile now reports `account_id` with status `message` (e.g. CREDENTIALS), and fires no webhook:
    a test that posts the webhook itself to a chosen instance must still make Unipile's own state
    agree, since the reconciliation pass reads it and would undo a webhook it contradicts."""
    r = sim_post(sim, f"/_sim/accounts/{account_id}/status", json={"message": message, "webhook": False})
    assert r.status_code == 200, r.text
