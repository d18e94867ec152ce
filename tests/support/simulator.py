"""Scripting the Unipile simulator (`simulator` fixture) through its /_sim control API."""
from __future__ import annotations

import httpx

from tests.support.service import USED_SECRETS


def sim_script(sim, li_at: str, plain_id: str, outcomes: list[str] | None = None,
               latency_ms: int | None = None) -> None:
    USED_SECRETS.add(li_at)
    body = {"li_at": li_at, "plain_id": plain_id, "name": f"Member {plain_id}"}
    if outcomes:
        body["outcomes"] = outcomes
    if latency_ms is not None:
        body["latency_ms"] = latency_ms
    r = httpx.post(f"{sim.url}/_sim/cookies", json=body)
    assert r.status_code in (200, 201), r.text
