"""Contract §6 (webhooks): ``GET/POST /webhooks``, ``DELETE /webhooks/{id}``, and the delivery of
``{"AccountStatus": ...}`` to the configured URL and every matching account_status webhook."""
from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
from litestar import Request, Response, delete, get, post

from cookiesync.simulator.inputs import check_fields, check_url, cut_page, json_object, pop_or_404, read_cursor, \
    sim_of
from cookiesync.simulator.redact import scrub_url
from cookiesync.simulator.responses import BadRequest, jresp
from cookiesync.simulator.state import SimState, Webhook, iso_now, new_id
from cookiesync.simulator.transport import API

DELIVERY_TIMEOUT_S = 10.0
WEBHOOK_FIELDS = {"request_url", "source", "name", "format", "account_ids", "enabled", "headers", "events"}
WEBHOOK_SOURCES = {"messaging", "email", "email_tracking", "account_status", "users", "calendar_event"}


# --- delivery ---------------------------------------------------------------------------------
async def post_json(url: str, payload: Any, headers: dict[str, str]) -> dict:
    """One delivery; its result (status or error name) is what ``/_sim/webhook-deliveries`` shows,
    with the URL's query fingerprinted (a ``notify_url`` carries its secret there)."""
    try:
        async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_S) as client:
            r = await client.post(url, content=msgspec.json.encode(payload), headers=headers)
        return {"url": scrub_url(url), "status": r.status_code, "error": None}
    except httpx.HTTPError as exc:
        return {"url": scrub_url(url), "status": None, "error": type(exc).__name__}


async def fire_account_status(sim: SimState, account_id: str, message: str) -> list[dict]:
    """Deliver `{"AccountStatus": ...}` to the configured URL and every account_status webhook."""
    payload = {"AccountStatus": {"account_id": account_id, "account_type": "LINKEDIN", "message": message}}
    cfg = sim.config
    targets: list[tuple[str, str, dict[str, str]]] = []
    if cfg.webhook_url:
        headers = {"content-type": "application/json"}
        if cfg.webhook_secret:
            headers[cfg.webhook_header] = cfg.webhook_secret
        targets.append(("config", cfg.webhook_url, headers))
    for wh in list(sim.webhooks.values()):
        b = wh.body
        if b["source"] != "account_status" or b.get("enabled", True) is False:
            continue
        if b.get("account_ids") and account_id not in b["account_ids"]:
            continue
        if b["request_url"] == cfg.webhook_url:
            continue  # the same endpoint gets it once
        targets.append((f"webhook:{wh.id}", b["request_url"],
                        {str(h["key"]): str(h["value"]) for h in b.get("headers") or []}))
    results = await asyncio.gather(*(post_json(url, payload, headers) for _, url, headers in targets))
    out = [{"target": t[0], **r} for t, r in zip(targets, results)]
    sim.deliveries.append({"at": iso_now(), "kind": "account_status", "account_id": account_id,
                           "message": message, "payload": payload, "results": out})
    return out


def fire_later(sim: SimState, account_id: str, message: str) -> None:
    """Unipile delivers asynchronously: don't hold the API answer for the webhook."""
    task = asyncio.get_running_loop().create_task(fire_account_status(sim, account_id, message))
    sim.background.add(task)
    task.add_done_callback(sim.background.discard)


# --- registration -----------------------------------------------------------------------------
def validate_webhook_body(body: dict) -> None:
    check_fields(body, WEBHOOK_FIELDS, ("request_url", "source"))
    check_url(body["request_url"], "request_url")
    if body["source"] not in WEBHOOK_SOURCES:
        raise BadRequest("invalid_parameters", "source is not a known webhook source.")
    if body.get("format", "json") not in ("json", "form"):
        raise BadRequest("invalid_parameters", "format must be json or form.")
    if "enabled" in body and not isinstance(body["enabled"], bool):
        raise BadRequest("invalid_parameters", "enabled must be a boolean.")
    ids = body.get("account_ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise BadRequest("invalid_parameters", "account_ids must be a list of strings.")
    headers = body.get("headers")
    if headers is not None and (not isinstance(headers, list) or not all(
            isinstance(h, dict) and set(h) == {"key", "value"} and isinstance(h["key"], str)
            and isinstance(h["value"], str) for h in headers)):
        raise BadRequest("invalid_parameters", "headers must be a list of {key, value} strings.")
    if body["source"] == "account_status" and "events" in body:
        raise BadRequest("invalid_parameters", "account_status webhooks take no events.")


@get(f"{API}/webhooks")
async def list_webhooks(request: Request) -> Response:
    sim = sim_of(request)
    offset, limit = read_cursor(request.query_params)
    chunk, cursor = cut_page(list(sim.webhooks.values()), offset, limit)
    return jresp({"object": "WebhookList", "items": [w.as_dict() for w in chunk], "cursor": cursor})


@post(f"{API}/webhooks", status_code=201)
async def create_webhook(request: Request) -> Response:
    sim = sim_of(request)
    body = await json_object(request)
    validate_webhook_body(body)
    async with sim.lock:
        wh = Webhook(id=new_id(), body=body)
        sim.webhooks[wh.id] = wh
    return jresp({"object": "WebhookCreated", "webhook_id": wh.id}, 201)


@delete(f"{API}/webhooks/{{webhook_id:str}}", status_code=200)
async def delete_webhook(request: Request, webhook_id: str) -> Response:
    sim = sim_of(request)
    async with sim.lock:
        pop_or_404(sim.webhooks, "webhook", webhook_id)
    return jresp({"object": "WebhookDeleted"})

