"""The control API under ``/_sim`` (``CONTROL``; not in the OpenAPI schema), for tests and the demo:
reset, configuration, scripted outcomes and latency per cookie, account or globally (fault
injection), account status changes with their webhooks, checkpoint approval, members' names and
premium products, `/users/me` answering another member, scripted read errors, and inspection of
calls, accounts, hosted links and webhook deliveries.

Every request needs the simulator's control token in ``X-Sim-Token``: `transport.SimulatorApp`
checks it in front of the router, for every path that is not the Unipile API or the hosted-auth
page, so no route here can be left open. No answer carries a cookie or a secret: cookies are kept
as fingerprints, and secrets are shown as theirs (`redact`)."""
from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post

from cookiesync.simulator.checkpoints import solve
from cookiesync.simulator.inputs import account_of, check_fields, json_object, sim_of, want
from cookiesync.simulator.redact import fingerprint, maybe_fingerprint, scrub
from cookiesync.simulator.responses import BadRequest, err, jresp
from cookiesync.simulator.state import (
    MUTABLE_CONFIG,
    SECRET_CONFIG,
    STATUS_MESSAGES,
    OutcomeError,
    Account,
    Member,
    SimState,
    SimulatorConfig,
    parse_outcome,
    provider_id_for,
)
from cookiesync.simulator.webhooks import fire_account_status


def _outcomes(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise BadRequest("invalid_parameters", "outcomes must be a list of strings.")
    try:
        return [parse_outcome(o) for o in value]
    except OutcomeError as exc:
        raise BadRequest("invalid_parameters", str(exc)) from None


def _config_json(sim: SimState) -> dict:
    shown = msgspec.to_builtins(sim.config)
    return scrub(shown) | {name: maybe_fingerprint(shown[name]) for name in SECRET_CONFIG}


@post("/reset", status_code=200)
async def sim_reset(request: Request) -> Response:
    sim = sim_of(request)
    async with sim.lock:
        sim.reset()
    return jresp({"ok": True})


@get("/config")
async def sim_get_config(request: Request) -> Response:
    return jresp(_config_json(sim_of(request)))


@get("/stats")
async def sim_stats(request: Request) -> Response:
    sim = sim_of(request)
    return jresp({"auth_in_flight": sim.auth_in_flight, "auth_in_flight_peak": sim.auth_in_flight_peak,
                  "calls": len(sim.calls), "calls_total": sim.seq})


@post("/config", status_code=200)
async def sim_config(request: Request) -> Response:
    sim = sim_of(request)
    body = await json_object(request)
    check_fields(body, set(MUTABLE_CONFIG), ())
    merged = msgspec.to_builtins(sim.config) | body
    try:
        new = msgspec.convert(merged, SimulatorConfig)
    except msgspec.ValidationError as exc:
        return err(400, "invalid_parameters", "Invalid parameters", str(exc))
    sim.config = new
    return jresp(_config_json(sim))


@post("/cookies", status_code=200)
async def sim_cookies(request: Request) -> Response:
    sim = sim_of(request)
    body = await json_object(request)
    check_fields(body, {"li_at", "plain_id", "provider_id", "name", "outcomes", "latency_ms"}, ("li_at",))
    for name in ("li_at", "plain_id", "provider_id", "name"):
        want(body, name, str, nullable=name != "li_at")
    outcomes = _outcomes(body["outcomes"]) if "outcomes" in body else []
    latency = want(body, "latency_ms", int)
    if body.get("provider_id") and not body.get("plain_id"):
        raise BadRequest("missing_parameters", "provider_id needs plain_id.")
    async with sim.lock:
        entry = sim.cookie(fingerprint(body["li_at"]))
        member = None
        if body.get("plain_id"):
            member = sim.member(body["plain_id"], body.get("provider_id"), body.get("name"))
            entry.plain_id = member.plain_id
        entry.outcomes.extend(outcomes)
        if latency is not None:
            entry.latency_ms = latency
        member = member or (sim.members.get(entry.plain_id) if entry.plain_id else None)
    return jresp(entry.as_dict() | {"member": member.as_dict() if member else None})


PREMIUM_FEATURES = ("recruiter", "sales_navigator", "premium")  # contract §4


@post("/members/{plain_id:str}", status_code=200)
async def sim_member(request: Request, plain_id: str) -> Response:
    """Create or change a member: its name (any text: the names members write are not ours to
    vet, the service must clean them) and the premium products its accounts show
    (`premium_features`, a subset of contract §4's; null: derived from the cookies again)."""
    sim = sim_of(request)
    body = await json_object(request)
    check_fields(body, {"name", "provider_id", "premium_features"}, ())
    name, provider_id = want(body, "name", str), want(body, "provider_id", str)
    premium = want(body, "premium_features", list)
    if premium is not None and not all(isinstance(v, str) and v in PREMIUM_FEATURES for v in premium):
        raise BadRequest("invalid_parameters", f"premium_features takes {', '.join(PREMIUM_FEATURES)}.")
    async with sim.lock:
        member = sim.member(plain_id, provider_id, name)
        if name is not None:
            member.name = name  # also "" (sim.member keeps the old name for a falsy one)
        if "premium_features" in body:
            member.premium = premium
    return jresp(member.as_dict())


@post("/accounts/{account_id:str}/me", status_code=200)
async def sim_account_me(request: Request, account_id: str) -> Response:
    """Make `GET /users/me` for this account answer another member (`plain_id`; null: its own):
    a cookie that went with the wrong member."""
    sim = sim_of(request)
    body = await json_object(request)
    check_fields(body, {"plain_id"}, ())
    plain_id = want(body, "plain_id", str)
    async with sim.lock:
        account = account_of(sim, account_id)
        if plain_id is not None:
            sim.member(plain_id)
        account.me_plain_id = plain_id
    return jresp(sim.account_internal(account))


async def _script_reads(request: Request, queue_of) -> Response:
    """Append a body's `outcomes` (after `clear`, when set) to the scripted answers of a read."""
    sim = sim_of(request)
    body = await json_object(request)
    check_fields(body, {"outcomes", "clear"}, ())
    outcomes = _outcomes(body.get("outcomes", []))
    if any(o.removeprefix("sticky:").startswith("checkpoint:") for o in outcomes):
        raise BadRequest("invalid_parameters", "a read answers no checkpoint.")
    async with sim.lock:
        queue = queue_of(sim)
        if body.get("clear"):
            queue.clear()
        queue.extend(outcomes)
    return jresp({"outcomes": list(queue)})


@post("/reads", status_code=200)
async def sim_reads(request: Request) -> Response:
    """Script the next answers of `GET /accounts/{id}` and `GET /users/me` (outcomes as for
    connects: `ok`, an error name, `error:NNN:type`; a `sticky:` last one repeats)."""
    return await _script_reads(request, lambda sim: sim.read_outcomes)


@post("/listing", status_code=200)
async def sim_listing(request: Request) -> Response:
    """Script the next answers of `GET /accounts`, a page each (outcomes as for reads: `ok` serves
    the page; `["ok", "503"]` fails the second page of the next listing)."""
    return await _script_reads(request, lambda sim: sim.list_outcomes)


@post("/accounts/bulk", status_code=200)
async def sim_accounts_bulk(request: Request) -> Response:
    """Make `count` accounts at once, ids `id_prefix` + `first` .. `first + count - 1`, each of its
    own member (plain id = the number) and no cookie: the accounts of links a benchmark made by
    SQL. Account number i has `statuses[i % len(statuses)]` (default all `OK`). No webhook is sent."""
    sim = sim_of(request)
    body = await json_object(request)
    check_fields(body, {"id_prefix", "first", "count", "statuses"}, ("id_prefix", "count"))
    prefix, first, count = want(body, "id_prefix", str), want(body, "first", int) or 0, want(body, "count", int)
    statuses = want(body, "statuses", list) or ["OK"]
    if not set(statuses) <= set(STATUS_MESSAGES.values()) - {None} or not 0 < count <= 5_000_000 \
            or len(statuses) > 1000:
        raise BadRequest("invalid_parameters", "statuses must be up to 1,000 account statuses and count 1..5,000,000.")
    async with sim.lock:
        for i in range(first, first + count):
            plain_id = str(i)
            if plain_id not in sim.members:
                sim.members[plain_id] = Member(plain_id, provider_id_for(plain_id), f"Member {plain_id}")
            sim.accounts[f"{prefix}{i}"] = Account(id=f"{prefix}{i}", plain_id=plain_id, creds=None,
                                                   status=statuses[i % len(statuses)])
    return jresp({"created": count, "accounts": len(sim.accounts)})


@post("/outcomes", status_code=200)
async def sim_outcomes(request: Request) -> Response:
    sim = sim_of(request)
    body = await json_object(request)
    check_fields(body, {"account_id", "outcomes", "replace"}, ("outcomes",))
    outcomes = _outcomes(body["outcomes"])
    account_id = want(body, "account_id", str)
    # replace: the queue is emptied first, so a window of faults ("sticky:503" for an outage) can be
    # ended by sending `[]`: a sticky entry would otherwise repeat until a reset.
    replace = want(body, "replace", bool)
    async with sim.lock:
        queue = sim.account_outcomes.setdefault(account_id, []) if account_id else sim.global_outcomes
        if replace:
            queue.clear()
        queue.extend(outcomes)
    return jresp({"account_id": account_id, "outcomes": list(queue)})


@get("/calls")
async def sim_calls(request: Request) -> Response:
    return jresp({"items": list(sim_of(request).calls)})


@get("/accounts")
async def sim_accounts(request: Request) -> Response:
    sim = sim_of(request)
    return jresp({"items": [sim.account_internal(a) for a in sim.accounts.values()]})


@post("/accounts/{account_id:str}/status", status_code=200)
async def sim_account_status(request: Request, account_id: str) -> Response:
    """Set an account's status and fire the account-status webhook(s); answers the deliveries."""
    sim = sim_of(request)
    body = await json_object(request)
    check_fields(body, {"message", "webhook"}, ("message",))
    message = body["message"]
    if message not in STATUS_MESSAGES:
        raise BadRequest("invalid_parameters", f"message must be one of {', '.join(STATUS_MESSAGES)}.")
    async with sim.lock:
        account = account_of(sim, account_id)
        status = STATUS_MESSAGES[message]
        if status is None:
            sim.accounts.pop(account_id)
        else:
            account.status = status
            if status == "OK":
                account.checkpoint = None
    deliveries = await fire_account_status(sim, account_id, message) if body.get("webhook", True) else []
    return jresp({"account_id": account_id, "message": message, "status": status, "deliveries": deliveries})


@post("/accounts/{account_id:str}/approve", status_code=200)
async def sim_approve(request: Request, account_id: str) -> Response:
    """The member approves a pending checkpoint in the LinkedIn app (IN_APP_VALIDATION)."""
    sim = sim_of(request)
    async with sim.lock:
        account = account_of(sim, account_id)
        if account.checkpoint is None:
            return err(400, "invalid_request", "Invalid request", "No checkpoint is pending for this account.")
        return solve(sim, account, webhooks=True)


@get("/hosted-links")
async def sim_hosted_links(request: Request) -> Response:
    return jresp({"items": [link.as_dict() for link in sim_of(request).hosted.values()]})


@get("/webhook-deliveries")
async def sim_deliveries(request: Request) -> Response:
    return jresp({"items": list(sim_of(request).deliveries)})


CONTROL = Router(path="/_sim", include_in_schema=False, route_handlers=[
    sim_reset, sim_get_config, sim_stats, sim_config, sim_cookies, sim_outcomes, sim_calls, sim_accounts,
    sim_account_status, sim_approve, sim_listing, sim_accounts_bulk, sim_hosted_links, sim_deliveries, sim_member, sim_account_me, sim_reads,
])
