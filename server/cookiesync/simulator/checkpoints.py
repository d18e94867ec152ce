"""Contract §3 (checkpoints): ``POST /accounts/checkpoint`` solves the checkpoint a connect or
reconnect left pending (checkpoints can chain), ``POST /accounts/checkpoint/resend`` resends its
code. A pending checkpoint dies after ``checkpoint_ttl_s``; an expired create leaves no account."""
from __future__ import annotations

import re
import time

from litestar import Request, Response, post

from cookiesync.simulator.accounts import finish_reconnect
from cookiesync.simulator.inputs import account_of, check_fields, json_object, sim_of
from cookiesync.simulator.responses import BadRequest, err, jresp
from cookiesync.simulator.state import CONTRACT_OPTIONS, Account, SimState
from cookiesync.simulator.transport import API
from cookiesync.simulator.webhooks import fire_later

CHECKPOINT_PROVIDERS = ("LINKEDIN", "INSTAGRAM", "TWITTER", "MESSENGER")
PHONE = re.compile(r"^\(\+[0-9]{1,4}\)[0-9]{4,15}\Z")  # [0-9], \Z: \d takes any script's digits, $ a final "\n"


def _pending(sim: SimState, body: dict) -> Account | Response:
    account = account_of(sim, body["account_id"])
    cp = account.checkpoint
    if cp is None:
        return err(400, "invalid_request", "Invalid request", "No checkpoint is pending for this account.")
    if time.monotonic() - cp.started > sim.config.checkpoint_ttl_s:
        account.checkpoint = None
        if cp.kind == "create":
            sim.accounts.pop(account.id, None)
        return err(401, "checkpoint_error", "Checkpoint error", "The checkpoint expired. Start again.")
    return account


@post(f"{API}/accounts/checkpoint", status_code=201)
async def solve_checkpoint(request: Request) -> Response:
    sim = sim_of(request)
    body = await json_object(request)
    check_fields(body, {"account_id", "provider", "code"}, ("account_id", "provider", "code"))
    if body["provider"] not in CHECKPOINT_PROVIDERS:
        raise BadRequest("invalid_parameters", "provider is not supported for checkpoints.")
    if not isinstance(body["code"], str) or not isinstance(body["account_id"], str):
        raise BadRequest("invalid_parameters", "account_id and code must be strings.")
    code = body["code"].strip()
    async with sim.lock:
        account = _pending(sim, body)
        if isinstance(account, Response):
            return account
        cp = account.checkpoint
        assert cp is not None
        kind = cp.body["type"]
        if code == "TRY_ANOTHER_WAY":
            cp.body = {"type": "2FA", "source": "SMS"} if kind != "2FA" else {"type": "OTP"}
            return jresp({"object": "Checkpoint", "account_id": account.id, "checkpoint": cp.body}, 202)
        if kind == "PHONE_REGISTER" and PHONE.match(code):
            cp.body = {"type": "OTP"}  # a code is then sent to that phone: checkpoints chain
            return jresp({"object": "Checkpoint", "account_id": account.id, "checkpoint": cp.body}, 202)
        solved = code != "000000" and (
            re.fullmatch(r"[0-9]{6}", code) is not None
            or (kind == "CONTRACT_CHOOSER" and code in {o["id"] for o in CONTRACT_OPTIONS})
            or (kind == "CAPTCHA" and len(code) >= 6))
        if not solved:
            return err(401, "invalid_checkpoint_solution", "Invalid checkpoint solution",
                       "The checkpoint solution is not valid.")
        return solve(sim, account, sim.config.auth_webhooks)


def solve(sim: SimState, account: Account, webhooks: bool) -> Response:
    """The pending checkpoint is passed (a right code, or the member approved it in the app)."""
    cp = account.checkpoint
    assert cp is not None
    if cp.kind == "create":
        account.status = "OK"
        account.checkpoint = None
        if webhooks:
            fire_later(sim, account.id, "CREATION_SUCCESS")
        return jresp({"object": "AccountCreated", "account_id": account.id}, 201)
    finish_reconnect(sim, account, cp.creds, webhooks)
    return jresp({"object": "AccountReconnected", "account_id": account.id}, 201)


@post(f"{API}/accounts/checkpoint/resend", status_code=200)
async def resend_checkpoint(request: Request) -> Response:
    sim = sim_of(request)
    body = await json_object(request)
    check_fields(body, {"account_id", "provider"}, ("account_id", "provider"))
    if body["provider"] not in ("LINKEDIN", "INSTAGRAM", "MESSENGER"):
        raise BadRequest("invalid_parameters", "provider is not supported for resend.")
    async with sim.lock:
        account = _pending(sim, body)
        if isinstance(account, Response):
            return account
    return jresp({"object": "CheckpointResend", "account_id": account.id, "success": True})
