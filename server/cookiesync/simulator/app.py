"""A faithful, in-memory Unipile v1 simulator (SIMULATED) for tests and the local demo.

It follows /work/shared/docs/unipile-v1-contract.md: cookie connect/reconnect with
scriptable outcomes and checkpoints, account list/get/delete/restart, users/me,
hosted-auth links with a clickable page, webhooks, and account-status webhook
delivery. A control API under ``/_sim`` (no API key) scripts and inspects it.

``create_simulator_app(config)`` returns a Litestar app; ``run_simulator`` serves it.
"""
from __future__ import annotations

import asyncio
import base64
import hmac
import ipaddress
import re
import time
import urllib.parse
from datetime import datetime, timezone
from typing import Any

import httpx
import msgspec
from litestar import Litestar, Request, Response, delete, get, post
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.utils.scope.state import CONNECTION_STATE_KEY

from cookiesync.simulator import pages
from cookiesync.simulator.state import (
    CONTRACT_OPTIONS,
    MUTABLE_CONFIG,
    STATUS_MESSAGES,
    Account,
    Checkpoint,
    Credentials,
    HostedLink,
    OutcomeError,
    SimState,
    SimulatorConfig,
    Webhook,
    checkpoint_body,
    error_for,
    iso_now,
    new_id,
    parse_outcome,
    plain_id_for_cookie,
)

__all__ = ["SimulatorConfig", "create_simulator_app", "run_simulator", "simulator_mount"]

JSON_CT = "application/json; charset=utf-8"
HTML_CT = "text/html; charset=utf-8"
API = "/api/v1"
EXPIRES_ON = re.compile(r"^[1-2]\d{3}-[0-1]\d-[0-3]\dT\d{2}:\d{2}:\d{2}.\d{3}Z$")  # verbatim from contract §7
MISSING_CREDENTIALS = {"status": 401, "type": "errors/missing_credentials", "title": "Missing credentials"}
AUTH_PATH = re.compile(r"^/api/v1/accounts(?:/(?!checkpoint/?$)[^/]+)?/?$")
ACCOUNT_IN_PATH = re.compile(r"^/api/v1/accounts/(?!checkpoint(?:/|$))([^/]+)")
DELIVERY_TIMEOUT_S = 10.0


# --- responses -------------------------------------------------------------------
def jresp(data: Any, status: int = 200) -> Response:
    return Response(content=msgspec.json.encode(data), status_code=status, media_type=JSON_CT)


def err(status: int, kind: str, title: str, detail: str | None = None) -> Response:
    body: dict[str, Any] = {"status": status, "type": f"errors/{kind}", "title": title}
    if detail:
        body["detail"] = detail
    return jresp(body, status)


def html(text: str, status: int = 200) -> Response:
    return Response(content=text.encode(), status_code=status, media_type=HTML_CT)


class BadRequest(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail

    def response(self) -> Response:
        titles = {"missing_parameters": "Missing parameters", "invalid_parameters": "Invalid parameters",
                  "malformed_request": "Malformed request", "invalid_request": "Invalid request",
                  "limit_too_high": "Limit too high"}
        return err(400, self.kind, titles.get(self.kind, "Bad request"), self.detail)


def not_found(what: str, ident: str) -> Response:
    return err(404, "resource_not_found", "Resource not found", f"No {what} with id {ident!r}.")


def _sim(request: Request) -> SimState:
    return request.app.state.sim


async def _json_object(request: Request) -> dict:
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("missing_parameters", "A JSON body is required.")
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise BadRequest("malformed_request", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("invalid_request", "The body must be a JSON object.")
    return body


def _check_fields(body: dict, allowed: set[str], required: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest("invalid_parameters", f"Unknown field(s): {', '.join(unknown)}.")
    missing = [f for f in required if body.get(f) in (None, "")]
    if missing:
        raise BadRequest("missing_parameters", f"Missing required field(s): {', '.join(missing)}.")


def _want(body: dict, name: str, kind: type | tuple[type, ...], *, nullable: bool = True) -> Any:
    value = body.get(name)
    if value is None and nullable:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BadRequest("invalid_parameters", f"Field {name!r} has the wrong type.")
    return value


# --- validation of create/reconnect bodies (contract §1) -----------------------------
AUTH_FIELDS = {"provider", "access_token", "premium_token", "user_agent", "recruiter_contract_id", "proxy",
               "country", "ip", "disabled_features", "sync_limit"}
DISABLED_FEATURES = {"linkedin_recruiter", "linkedin_sales_navigator", "linkedin_organizations_mailboxes"}


def validate_auth_body(body: dict, reconnect: bool) -> Credentials:
    if "username" in body or "password" in body:
        raise BadRequest("invalid_parameters", "The simulator only handles cookie connections (access_token).")
    _check_fields(body, AUTH_FIELDS | ({"account_id"} if reconnect else set()), ("provider", "access_token"))
    if body["provider"] != "LINKEDIN":
        raise BadRequest("invalid_parameters", "provider must be LINKEDIN.")
    _want(body, "access_token", str, nullable=False)
    for name in ("premium_token", "user_agent", "recruiter_contract_id"):
        _want(body, name, str)
    country = _want(body, "country", str)
    if country is not None and not re.fullmatch(r"[A-Za-z]{2}", country):
        raise BadRequest("invalid_parameters", "country must be an ISO 3166-1 alpha-2 code.")
    ip = _want(body, "ip", str)
    if ip is not None:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise BadRequest("invalid_parameters", "ip must be an IPv4 address.") from None
    proxy = _want(body, "proxy", dict)
    if proxy is not None:
        if set(proxy) - {"protocol", "host", "port", "username", "password"}:
            raise BadRequest("invalid_parameters", "proxy has unknown fields.")
        if not isinstance(proxy.get("host"), str) or not isinstance(proxy.get("port"), int) \
                or not 0 < proxy["port"] < 65536:
            raise BadRequest("invalid_parameters", "proxy needs host and port.")
        if proxy.get("protocol", "https") not in ("https", "http", "socks5"):
            raise BadRequest("invalid_parameters", "proxy.protocol must be https, http or socks5.")
    features = _want(body, "disabled_features", list)
    if features is not None and not set(features) <= DISABLED_FEATURES:
        raise BadRequest("invalid_parameters", "disabled_features has unknown values.")
    sync_limit = _want(body, "sync_limit", dict)
    if sync_limit is not None:
        for key, value in sync_limit.items():
            if key not in ("chats", "messages") or isinstance(value, bool) or not (
                    isinstance(value, str) or (isinstance(value, (int, float)) and value >= 0)):
                raise BadRequest("invalid_parameters", "sync_limit takes chats/messages: ISO date or number >= 0.")
    return Credentials.from_body(body)


# --- webhook delivery (contract §6) ---------------------------------------------------
async def _post(url: str, payload: Any, headers: dict[str, str]) -> dict:
    try:
        async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_S) as client:
            r = await client.post(url, content=msgspec.json.encode(payload), headers=headers)
        return {"url": url, "status": r.status_code, "error": None}
    except httpx.HTTPError as exc:
        return {"url": url, "status": None, "error": type(exc).__name__}


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
    results = await asyncio.gather(*(_post(url, payload, headers) for _, url, headers in targets))
    out = [{"target": t[0], **r} for t, r in zip(targets, results)]
    sim.deliveries.append({"at": iso_now(), "kind": "account_status", "account_id": account_id,
                           "message": message, "payload": payload, "results": out})
    return out


def fire_later(sim: SimState, account_id: str, message: str) -> None:
    """Unipile delivers asynchronously: don't hold the API answer for the webhook."""
    task = asyncio.get_running_loop().create_task(fire_account_status(sim, account_id, message))
    sim.background.add(task)
    task.add_done_callback(sim.background.discard)


# --- /api/v1: accounts ------------------------------------------------------------------
def _status_code_for(outcome: str) -> Response | None:
    e = error_for(outcome)
    return err(*e) if e else None


async def _authenticate(request: Request, account_id: str | None) -> Response:
    """POST /accounts (account_id None) and POST /accounts/{account_id}: one intent."""
    sim = _sim(request)
    reconnect = account_id is not None
    try:
        creds = validate_auth_body(await _json_object(request), reconnect)
    except BadRequest as exc:
        return exc.response()
    keys = {("cookie", creds.li_at)} | ({("account", account_id)} if reconnect else set())
    async with sim.lock:
        if reconnect and account_id not in sim.accounts:
            return not_found("account", account_id)
        if keys & sim.in_progress:
            return err(*error_for("425"))
        sim.in_progress |= keys
        sim.auth_in_flight += 1
        sim.auth_in_flight_peak = max(sim.auth_in_flight_peak, sim.auth_in_flight)
        outcome = sim.next_outcome(creds.li_at, account_id)
        latency_ms = sim.latency_for(creds.li_at)
    try:
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000)
        if outcome == "timeout":
            await asyncio.sleep(sim.config.timeout_s)
        if failure := _status_code_for(outcome):
            return failure
        async with sim.lock:
            if reconnect:
                return _reconnected(sim, account_id, creds, outcome)
            return _created(sim, creds, outcome)
    finally:
        sim.in_progress -= keys
        sim.auth_in_flight -= 1


def _created(sim: SimState, creds: Credentials, outcome: str) -> Response:
    member = sim.cookie_member(creds.li_at)
    if member is None:
        member = sim.member(plain_id_for_cookie(creds.li_at))
        sim.cookie(creds.li_at).plain_id = member.plain_id
    account = Account(id=new_id(), plain_id=member.plain_id, creds=creds)
    sim.accounts[account.id] = account
    if outcome.startswith("checkpoint:"):
        account.status = "CONNECTING"
        account.checkpoint = Checkpoint("create", checkpoint_body(outcome), creds)
        return jresp({"object": "Checkpoint", "account_id": account.id, "checkpoint": account.checkpoint.body}, 202)
    if sim.config.auth_webhooks:
        fire_later(sim, account.id, "CREATION_SUCCESS")
    return jresp({"object": "AccountCreated", "account_id": account.id}, 201)


def _reconnected(sim: SimState, account_id: str, creds: Credentials, outcome: str) -> Response:
    account = sim.accounts.get(account_id)
    if account is None:  # deleted while we were "talking to LinkedIn"
        return not_found("account", account_id)
    member = sim.cookie_member(creds.li_at)
    if member is not None and member.plain_id != account.plain_id:
        return err(*error_for("wrong_account"))
    if member is None:  # an unknown cookie is taken as the account's own member
        sim.cookie(creds.li_at).plain_id = account.plain_id
    if outcome.startswith("checkpoint:"):
        account.checkpoint = Checkpoint("reconnect", checkpoint_body(outcome), creds)
        return jresp({"object": "Checkpoint", "account_id": account.id, "checkpoint": account.checkpoint.body}, 202)
    _finish_reconnect(sim, account, creds, sim.config.auth_webhooks)
    return jresp({"object": "AccountReconnected", "account_id": account.id}, 201)


def _finish_reconnect(sim: SimState, account: Account, creds: Credentials | None, webhooks: bool) -> None:
    was_ok = account.status == "OK"
    if creds is not None:
        account.creds = creds
    account.status = "OK"
    account.checkpoint = None
    account.reconnects += 1
    if webhooks and not was_ok:
        fire_later(sim, account.id, "RECONNECTED")


@post(f"{API}/accounts", status_code=201)
async def create_account(request: Request) -> Response:
    return await _authenticate(request, None)


@post(f"{API}/accounts/{{account_id:str}}", status_code=201)
async def reconnect_account(request: Request, account_id: str) -> Response:
    return await _authenticate(request, account_id)


def _cursor(params: Any) -> tuple[int, int]:
    raw_limit = params.get("limit")
    try:
        limit = int(raw_limit) if raw_limit is not None else 100
    except ValueError:
        raise BadRequest("invalid_parameters", "limit must be an integer.") from None
    if limit > 250:
        raise BadRequest("limit_too_high", "limit must be between 1 and 250.")
    if limit < 1:
        raise BadRequest("invalid_parameters", "limit must be between 1 and 250.")
    offset = 0
    if cursor := params.get("cursor"):
        try:
            offset = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("invalid_parameters", "cursor is not valid.") from None
    return offset, limit


def _page(items: list, offset: int, limit: int) -> tuple[list, str | None]:
    chunk = items[offset:offset + limit]
    nxt = offset + limit
    return chunk, (base64.urlsafe_b64encode(str(nxt).encode()).decode().rstrip("=") if nxt < len(items) else None)


@get(f"{API}/accounts")
async def list_accounts(request: Request) -> Response:
    sim = _sim(request)
    try:
        offset, limit = _cursor(request.query_params)
    except BadRequest as exc:
        return exc.response()
    accounts = list(sim.accounts.values())
    chunk, cursor = _page(accounts, offset, limit)
    counts = {s: 0 for s in ("OK", "CONNECTING", "CREDENTIALS", "STOPPED")}
    for a in accounts:
        counts[a.status] = counts.get(a.status, 0) + 1
    return jresp({"object": "AccountList", "items": [sim.account_json(a) for a in chunk], "cursor": cursor,
                  "total_count": len(accounts), "status_counts": counts})


@get(f"{API}/accounts/{{account_id:str}}")
async def get_account(request: Request, account_id: str) -> Response:
    sim = _sim(request)
    account = sim.accounts.get(account_id)
    return jresp(sim.account_json(account)) if account else not_found("account", account_id)


@delete(f"{API}/accounts/{{account_id:str}}", status_code=200)
async def delete_account(request: Request, account_id: str) -> Response:
    sim = _sim(request)
    async with sim.lock:
        if sim.accounts.pop(account_id, None) is None:
            return not_found("account", account_id)
        sim.account_outcomes.pop(account_id, None)
    fire_later(sim, account_id, "DELETED")
    return jresp({"object": "AccountDeleted"})


@post(f"{API}/accounts/{{account_id:str}}/restart", status_code=200)
async def restart_account(request: Request, account_id: str) -> Response:
    sim = _sim(request)
    async with sim.lock:
        account = sim.accounts.get(account_id)
        if account is None:
            return not_found("account", account_id)
        was_ok = account.status == "OK"
        account.status = "OK"
    if not was_ok:
        fire_later(sim, account_id, "OK")
    return jresp({"object": "AccountRestarted"})


# --- /api/v1: checkpoints (contract §3) --------------------------------------------------
CHECKPOINT_PROVIDERS = ("LINKEDIN", "INSTAGRAM", "TWITTER", "MESSENGER")
PHONE = re.compile(r"^\(\+\d{1,4}\)\d{4,15}$")


def _pending(sim: SimState, body: dict) -> Account | Response:
    account = sim.accounts.get(body["account_id"])
    if account is None:
        return not_found("account", body["account_id"])
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
    sim = _sim(request)
    try:
        body = await _json_object(request)
        _check_fields(body, {"account_id", "provider", "code"}, ("account_id", "provider", "code"))
        if body["provider"] not in CHECKPOINT_PROVIDERS:
            raise BadRequest("invalid_parameters", "provider is not supported for checkpoints.")
        if not isinstance(body["code"], str) or not isinstance(body["account_id"], str):
            raise BadRequest("invalid_parameters", "account_id and code must be strings.")
    except BadRequest as exc:
        return exc.response()
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
            re.fullmatch(r"\d{6}", code) is not None
            or (kind == "CONTRACT_CHOOSER" and code in {o["id"] for o in CONTRACT_OPTIONS})
            or (kind == "CAPTCHA" and len(code) >= 6))
        if not solved:
            return err(401, "invalid_checkpoint_solution", "Invalid checkpoint solution",
                       "The checkpoint solution is not valid.")
        return _solve(sim, account, sim.config.auth_webhooks)


def _solve(sim: SimState, account: Account, webhooks: bool) -> Response:
    cp = account.checkpoint
    assert cp is not None
    if cp.kind == "create":
        account.status = "OK"
        account.checkpoint = None
        if webhooks:
            fire_later(sim, account.id, "CREATION_SUCCESS")
        return jresp({"object": "AccountCreated", "account_id": account.id}, 201)
    _finish_reconnect(sim, account, cp.creds, webhooks)
    return jresp({"object": "AccountReconnected", "account_id": account.id}, 201)


@post(f"{API}/accounts/checkpoint/resend", status_code=200)
async def resend_checkpoint(request: Request) -> Response:
    sim = _sim(request)
    try:
        body = await _json_object(request)
        _check_fields(body, {"account_id", "provider"}, ("account_id", "provider"))
        if body["provider"] not in ("LINKEDIN", "INSTAGRAM", "MESSENGER"):
            raise BadRequest("invalid_parameters", "provider is not supported for resend.")
    except BadRequest as exc:
        return exc.response()
    async with sim.lock:
        account = _pending(sim, body)
        if isinstance(account, Response):
            return account
    return jresp({"object": "CheckpointResend", "account_id": account.id, "success": True})


# --- /api/v1: users/me (contract §4) --------------------------------------------------------
@get(f"{API}/users/me")
async def users_me(request: Request) -> Response:
    sim = _sim(request)
    account_id = request.query_params.get("account_id")
    if not account_id:
        return err(400, "missing_parameters", "Missing parameters", "account_id is required.")
    account = sim.accounts.get(account_id)
    if account is None:
        return not_found("account", account_id)
    if account.status != "OK":
        return err(*error_for("disconnected_account"))
    m = sim.members[account.plain_id]
    first, _, last = m.name.partition(" ")
    return jresp({"object": "AccountOwnerProfile", "provider": "LINKEDIN", "provider_id": m.provider_id,
                  "entity_urn": f"urn:li:fsd_profile:{m.provider_id}", "object_urn": f"urn:li:member:{m.plain_id}",
                  "first_name": first, "last_name": last, "public_identifier": m.public_identifier,
                  "profile_picture_url": None, "premium": bool(account.creds and account.creds.li_a),
                  "occupation": "Simulated member", "location": None})


# --- /api/v1: hosted auth (contract §7) -------------------------------------------------------
HOSTED_FIELDS = {"type", "api_url", "expiresOn", "providers", "reconnect_account", "name", "success_redirect_url",
                 "failure_redirect_url", "notify_url", "disabled_features", "sync_limit", "bypass_success_screen"}
HOSTED_PROVIDERS = {"LINKEDIN", "WHATSAPP", "INSTAGRAM", "MESSENGER", "TELEGRAM", "GOOGLE", "OUTLOOK", "MAIL",
                    "TWITTER"}


def _public_url(request: Request) -> str:
    configured = _sim(request).config.public_url.rstrip("/")
    if configured:
        return configured
    return str(request.base_url).rstrip("/") + request.scope.get("sim.prefix", "")  # type: ignore[operator]


def _url(value: Any, name: str) -> None:
    if value is None:
        return
    if not isinstance(value, str) or urllib.parse.urlsplit(value).scheme not in ("http", "https"):
        raise BadRequest("invalid_parameters", f"{name} must be an http(s) URL.")


def validate_hosted_body(sim: SimState, body: dict) -> datetime:
    _check_fields(body, HOSTED_FIELDS, ("type", "api_url", "expiresOn"))
    if body["type"] not in ("create", "reconnect"):
        raise BadRequest("invalid_parameters", "type must be create or reconnect.")
    _url(body["api_url"], "api_url")
    expires = body["expiresOn"]
    if not isinstance(expires, str) or not EXPIRES_ON.match(expires):
        raise BadRequest("invalid_parameters", "expiresOn must look like 2026-07-01T12:30:00.000Z (milliseconds).")
    try:
        expires_at = datetime.strptime(expires, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise BadRequest("invalid_parameters", "expiresOn is not a valid date.") from None
    for name in ("success_redirect_url", "failure_redirect_url", "notify_url"):
        _url(body.get(name), name)
    if "name" in body and (not isinstance(body["name"], str) or not body["name"]):
        raise BadRequest("invalid_parameters", "name must be a non-empty string.")
    if body["type"] == "create":
        providers = body.get("providers")
        if providers is None:
            raise BadRequest("missing_parameters", "providers is required for create links.")
        ok = providers in ("*", "*:MAILING", "*:MESSAGING") or (
            isinstance(providers, list) and providers and set(providers) <= HOSTED_PROVIDERS)
        if not ok:
            raise BadRequest("invalid_parameters", "providers must be *, *:MAILING, *:MESSAGING or a provider list.")
    else:
        if not body.get("reconnect_account"):
            raise BadRequest("missing_parameters", "reconnect_account is required for reconnect links.")
        if not isinstance(body["reconnect_account"], str):
            raise BadRequest("invalid_parameters", "reconnect_account must be a string.")
    return expires_at


@post(f"{API}/hosted/accounts/link", status_code=201)
async def hosted_link(request: Request) -> Response:
    sim = _sim(request)
    try:
        body = await _json_object(request)
        expires_at = validate_hosted_body(sim, body)
    except BadRequest as exc:
        return exc.response()
    async with sim.lock:
        if body["type"] == "reconnect" and body["reconnect_account"] not in sim.accounts:
            return not_found("account", body["reconnect_account"])
        token = new_id() + new_id()
        url = f"{_public_url(request)}/hosted/{token}"
        sim.hosted[token] = HostedLink(token=token, url=url, body=body, expires_at=expires_at)
    return jresp({"object": "HostedAuthURL", "url": url}, 201)


# --- /api/v1: webhooks (contract §6) ------------------------------------------------------------
WEBHOOK_FIELDS = {"request_url", "source", "name", "format", "account_ids", "enabled", "headers", "events"}
WEBHOOK_SOURCES = {"messaging", "email", "email_tracking", "account_status", "users", "calendar_event"}


def validate_webhook_body(body: dict) -> None:
    _check_fields(body, WEBHOOK_FIELDS, ("request_url", "source"))
    _url(body["request_url"], "request_url")
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
    sim = _sim(request)
    try:
        offset, limit = _cursor(request.query_params)
    except BadRequest as exc:
        return exc.response()
    chunk, cursor = _page(list(sim.webhooks.values()), offset, limit)
    return jresp({"object": "WebhookList", "items": [w.as_dict() for w in chunk], "cursor": cursor})


@post(f"{API}/webhooks", status_code=201)
async def create_webhook(request: Request) -> Response:
    sim = _sim(request)
    try:
        body = await _json_object(request)
        validate_webhook_body(body)
    except BadRequest as exc:
        return exc.response()
    async with sim.lock:
        wh = Webhook(id=new_id(), body=body)
        sim.webhooks[wh.id] = wh
    return jresp({"object": "WebhookCreated", "webhook_id": wh.id}, 201)


@delete(f"{API}/webhooks/{{webhook_id:str}}", status_code=200)
async def delete_webhook(request: Request, webhook_id: str) -> Response:
    sim = _sim(request)
    async with sim.lock:
        if sim.webhooks.pop(webhook_id, None) is None:
            return not_found("webhook", webhook_id)
    return jresp({"object": "WebhookDeleted"})


# --- hosted-auth page (no API key) -----------------------------------------------------------------
def _link_or_page(sim: SimState, token: str) -> HostedLink | Response:
    link = sim.hosted.get(token)
    if link is None:
        return html(pages.hosted_message("Unknown link", "This link does not exist."), 404)
    if link.status == "completed":
        return html(pages.hosted_message("Link already used", "This link has already been used."), 410)
    if datetime.now(timezone.utc) > link.expires_at:
        return html(pages.hosted_message("Link expired", "This link has expired. Ask for a new one."), 410)
    return link


@get("/hosted/{token:str}", include_in_schema=False)
async def hosted_page(request: Request, token: str) -> Response:
    sim = _sim(request)
    link = _link_or_page(sim, token)
    if isinstance(link, Response):
        return link
    account = sim.accounts.get(link.body.get("reconnect_account") or "")
    name = sim.members[account.plain_id].name if account else None
    return html(pages.hosted_form(link.body["type"], name, link.body.get("name"), link.body["expiresOn"]))


@post("/hosted/{token:str}", status_code=200, include_in_schema=False)
async def hosted_submit(request: Request, token: str) -> Response:
    sim = _sim(request)
    form = urllib.parse.parse_qs((await request.body()).decode(errors="replace"))
    action = (form.get("action") or ["ok"])[0]
    async with sim.lock:
        link = _link_or_page(sim, token)
        if isinstance(link, Response):
            return link
        body = link.body
        if action == "fail":
            link.status = "failed"
            link.completed_at = iso_now()
            target = body.get("failure_redirect_url")
            if target:
                return Response(content=b"", status_code=303, headers={"location": target}, media_type=HTML_CT)
            return html(pages.hosted_message("Failed", "The simulated authentication failed."))
        if body["type"] == "reconnect":
            account = sim.accounts.get(body["reconnect_account"])
            if account is None:
                return html(pages.hosted_message("Account gone", "This account no longer exists."), 404)
            _finish_reconnect_hosted(account)
            event = "RECONNECTED"
        else:
            member = sim.member(plain_id_for_cookie("hosted:" + token))
            account = Account(id=new_id(), plain_id=member.plain_id, creds=None, connection_method="credentials")
            sim.accounts[account.id] = account
            event = "CREATION_SUCCESS"
        link.status = "completed"
        link.completed_at = iso_now()
        link.account_id = account.id
    if body.get("notify_url"):
        link.notify = await _post(body["notify_url"], {"status": event, "account_id": account.id,
                                                       "name": body.get("name")},
                                  {"content-type": "application/json"})
        sim.deliveries.append({"at": iso_now(), "kind": "notify_url", "account_id": account.id, "message": event,
                               "payload": None, "results": [link.notify]})
    link.webhooks = await fire_account_status(sim, account.id, event)
    target = body.get("success_redirect_url")
    if target:
        return Response(content=b"", status_code=303, headers={"location": target}, media_type=HTML_CT)
    return html(pages.hosted_message("Done", "Your LinkedIn account is connected. You can close this page."))


def _finish_reconnect_hosted(account: Account) -> None:
    account.status = "OK"
    account.checkpoint = None
    account.reconnects += 1


# --- control API for tests (/_sim, no API key) ------------------------------------------------------
def _outcomes(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise BadRequest("invalid_parameters", "outcomes must be a list of strings.")
    try:
        return [parse_outcome(o) for o in value]
    except OutcomeError as exc:
        raise BadRequest("invalid_parameters", str(exc)) from None


def _config_json(sim: SimState) -> dict:
    return msgspec.to_builtins(sim.config)


@post("/_sim/reset", status_code=200, include_in_schema=False)
async def sim_reset(request: Request) -> Response:
    sim = _sim(request)
    async with sim.lock:
        sim.reset()
    return jresp({"ok": True})


@get("/_sim/config", include_in_schema=False)
async def sim_get_config(request: Request) -> Response:
    return jresp(_config_json(_sim(request)))


@get("/_sim/stats", include_in_schema=False)
async def sim_stats(request: Request) -> Response:
    sim = _sim(request)
    return jresp({"auth_in_flight": sim.auth_in_flight, "auth_in_flight_peak": sim.auth_in_flight_peak,
                  "calls": len(sim.calls)})


@post("/_sim/config", status_code=200, include_in_schema=False)
async def sim_config(request: Request) -> Response:
    sim = _sim(request)
    try:
        body = await _json_object(request)
        _check_fields(body, set(MUTABLE_CONFIG), ())
        merged = msgspec.to_builtins(sim.config) | body
        new = msgspec.convert(merged, SimulatorConfig)
    except BadRequest as exc:
        return exc.response()
    except msgspec.ValidationError as exc:
        return err(400, "invalid_parameters", "Invalid parameters", str(exc))
    sim.config = new
    return jresp(_config_json(sim))


@post("/_sim/cookies", status_code=200, include_in_schema=False)
async def sim_cookies(request: Request) -> Response:
    sim = _sim(request)
    try:
        body = await _json_object(request)
        _check_fields(body, {"li_at", "plain_id", "provider_id", "name", "outcomes", "latency_ms"}, ("li_at",))
        for name in ("li_at", "plain_id", "provider_id", "name"):
            _want(body, name, str, nullable=name != "li_at")
        outcomes = _outcomes(body["outcomes"]) if "outcomes" in body else []
        latency = _want(body, "latency_ms", int)
        if body.get("provider_id") and not body.get("plain_id"):
            raise BadRequest("missing_parameters", "provider_id needs plain_id.")
    except BadRequest as exc:
        return exc.response()
    async with sim.lock:
        entry = sim.cookie(body["li_at"])
        member = None
        if body.get("plain_id"):
            member = sim.member(body["plain_id"], body.get("provider_id"), body.get("name"))
            entry.plain_id = member.plain_id
        entry.outcomes.extend(outcomes)
        if latency is not None:
            entry.latency_ms = latency
        member = member or (sim.members.get(entry.plain_id) if entry.plain_id else None)
    return jresp(entry.as_dict() | {"member": member.as_dict() if member else None})


@post("/_sim/outcomes", status_code=200, include_in_schema=False)
async def sim_outcomes(request: Request) -> Response:
    sim = _sim(request)
    try:
        body = await _json_object(request)
        _check_fields(body, {"account_id", "outcomes"}, ("outcomes",))
        outcomes = _outcomes(body["outcomes"])
        account_id = _want(body, "account_id", str)
    except BadRequest as exc:
        return exc.response()
    async with sim.lock:
        queue = sim.account_outcomes.setdefault(account_id, []) if account_id else sim.global_outcomes
        queue.extend(outcomes)
    return jresp({"account_id": account_id, "outcomes": list(queue)})


@get("/_sim/calls", include_in_schema=False)
async def sim_calls(request: Request) -> Response:
    return jresp({"items": _sim(request).calls})


@get("/_sim/accounts", include_in_schema=False)
async def sim_accounts(request: Request) -> Response:
    sim = _sim(request)
    return jresp({"items": [sim.account_internal(a) for a in sim.accounts.values()]})


@post("/_sim/accounts/{account_id:str}/status", status_code=200, include_in_schema=False)
async def sim_account_status(request: Request, account_id: str) -> Response:
    """Set an account's status and fire the account-status webhook(s); answers the deliveries."""
    sim = _sim(request)
    try:
        body = await _json_object(request)
        _check_fields(body, {"message", "webhook"}, ("message",))
        message = body["message"]
        if message not in STATUS_MESSAGES:
            raise BadRequest("invalid_parameters", f"message must be one of {', '.join(STATUS_MESSAGES)}.")
    except BadRequest as exc:
        return exc.response()
    async with sim.lock:
        account = sim.accounts.get(account_id)
        if account is None:
            return not_found("account", account_id)
        status = STATUS_MESSAGES[message]
        if status is None:
            sim.accounts.pop(account_id)
        else:
            account.status = status
            if status == "OK":
                account.checkpoint = None
    deliveries = await fire_account_status(sim, account_id, message) if body.get("webhook", True) else []
    return jresp({"account_id": account_id, "message": message, "status": status, "deliveries": deliveries})


@post("/_sim/accounts/{account_id:str}/approve", status_code=200, include_in_schema=False)
async def sim_approve(request: Request, account_id: str) -> Response:
    """The member approves a pending checkpoint in the LinkedIn app (IN_APP_VALIDATION)."""
    sim = _sim(request)
    async with sim.lock:
        account = sim.accounts.get(account_id)
        if account is None:
            return not_found("account", account_id)
        if account.checkpoint is None:
            return err(400, "invalid_request", "Invalid request", "No checkpoint is pending for this account.")
        return _solve(sim, account, webhooks=True)


@get("/_sim/hosted-links", include_in_schema=False)
async def sim_hosted_links(request: Request) -> Response:
    return jresp({"items": [link.as_dict() for link in _sim(request).hosted.values()]})


@get("/_sim/webhook-deliveries", include_in_schema=False)
async def sim_deliveries(request: Request) -> Response:
    return jresp({"items": _sim(request).deliveries})


# --- errors in Unipile's shape -------------------------------------------------------------------
_HTTP_KINDS = {400: ("malformed_request", "Malformed request"), 401: ("missing_credentials", "Missing credentials"),
               404: ("resource_not_found", "Resource not found"), 405: ("invalid_request", "Method not allowed"),
               413: ("invalid_request", "Request too large")}


def _http_exception(request: Request, exc: HTTPException) -> Response:
    kind, title = _HTTP_KINDS.get(exc.status_code, ("unexpected_error", "Unexpected error"))
    return err(exc.status_code, kind, title, str(exc.detail) if exc.detail else None)


def _unexpected(request: Request, exc: Exception) -> Response:
    return err(500, "unexpected_error", "Unexpected error", f"Simulator bug: {type(exc).__name__}: {exc}")


# --- the ASGI wrapper: API key, call log, latency, marker header -------------------------------
def _account_in(path: str, body: Any, query: str) -> str | None:
    if m := ACCOUNT_IN_PATH.match(path):
        return urllib.parse.unquote(m.group(1))
    if isinstance(body, dict) and isinstance(body.get("account_id"), str):
        return body["account_id"]
    if isinstance(body, dict) and isinstance(body.get("reconnect_account"), str):
        return body["reconnect_account"]
    return (urllib.parse.parse_qs(query).get("account_id") or [None])[0]


def _mount_prefix(scope: dict) -> str:
    """When mounted inside another app, the part of the raw path the outer router stripped."""
    raw = scope.get("raw_path")
    if not raw:
        return ""
    raw_path = urllib.parse.unquote(raw.decode("latin-1")).rstrip("/")
    inner = scope["path"].rstrip("/")
    if inner and raw_path.endswith(inner) and raw_path != inner:
        return raw_path[: len(raw_path) - len(inner)]
    return ""


class SimulatorApp(Litestar):
    """Litestar plus a thin ASGI layer in front of the routes (see `__call__`)."""

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[override]
        if scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
            return
        # When mounted inside cookiesync, don't inherit the outer app's cached connection state.
        scope = dict(scope)
        scope["state"] = {k: v for k, v in (scope.get("state") or {}).items() if k != CONNECTION_STATE_KEY}
        scope["sim.prefix"] = _mount_prefix(scope)

        async def marked_send(message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"x-unipile-simulator", b"1")]
            await send(message)

        if scope["type"] != "http" or not scope["path"].startswith(API + "/"):
            await super().__call__(scope, receive, marked_send)
            return
        await self._api_call(scope, receive, marked_send)

    async def _api_call(self, scope, receive, send) -> None:
        sim: SimState = self.state.sim
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        try:
            parsed: Any = msgspec.json.decode(raw) if raw.strip() else None
        except msgspec.DecodeError:
            parsed = raw.decode(errors="replace")
        path = scope["path"].rstrip("/") or "/"
        sim.seq += 1
        record = {"seq": sim.seq, "at": iso_now(), "method": scope["method"], "path": path, "status": None,
                  "body": parsed, "account_id": _account_in(path, parsed, scope.get("query_string", b"").decode())}
        sim.calls.append(record)

        key = next((v for k, v in scope["headers"] if k == b"x-api-key"), b"")
        if not hmac.compare_digest(key, sim.config.api_key.encode()):
            record["status"] = 401
            body = msgspec.json.encode(MISSING_CREDENTIALS)
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", JSON_CT.encode()), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if sim.config.latency_ms > 0 and not (scope["method"] == "POST" and AUTH_PATH.match(path)):
            await asyncio.sleep(sim.config.latency_ms / 1000)  # auth calls sleep inside their intent

        out: list[bytes] = []

        async def recording_send(message) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
            elif message["type"] == "http.response.body" and record["account_id"] is None:
                out.append(message.get("body", b""))
            await send(message)

        await super().__call__(scope, replay, recording_send)
        if record["account_id"] is None and out:
            try:
                answer = msgspec.json.decode(b"".join(out))
                if isinstance(answer, dict) and isinstance(answer.get("account_id"), str):
                    record["account_id"] = answer["account_id"]
            except msgspec.DecodeError:
                pass


def create_simulator_app(config: SimulatorConfig | None = None) -> Litestar:
    """A fresh simulator with its own in-memory state (``app.state.sim``)."""
    config = config if config is not None else SimulatorConfig()
    app = SimulatorApp(
        route_handlers=[
            create_account, reconnect_account, list_accounts, get_account, delete_account, restart_account,
            solve_checkpoint, resend_checkpoint, users_me, hosted_link, list_webhooks, create_webhook,
            delete_webhook, hosted_page, hosted_submit, sim_reset, sim_get_config, sim_stats, sim_config, sim_cookies,
            sim_outcomes, sim_calls, sim_accounts, sim_account_status, sim_approve, sim_hosted_links,
            sim_deliveries,
        ],
        exception_handlers={HTTPException: _http_exception, Exception: _unexpected},
        openapi_config=OpenAPIConfig(title="Unipile simulator (SIMULATED)", version="1.0.0"),
        request_max_body_size=1024 * 1024,
        logging_config=None,  # leave the host process's logging (and its redaction) alone
    )
    app.state.sim = SimState(msgspec.structs.replace(config))
    return app


def run_simulator(host: str, port: int, config: SimulatorConfig | None = None) -> None:
    """Serve the simulator with uvicorn until interrupted (blocking)."""
    import uvicorn

    uvicorn.run(create_simulator_app(config), host=host, port=port, log_level="info")


def simulator_mount(path: str, sim_app: Litestar):
    """A Litestar route handler that mounts `sim_app` at `path` inside another Litestar app.

    Example: ``route_handlers.append(simulator_mount("/unipile-sim", create_simulator_app(cfg)))``.
    Hosted-auth URLs follow the prefix even when ``public_url`` is empty.
    """
    from litestar.handlers import asgi
    from litestar.types import Receive, Scope, Send

    @asgi(path, is_mount=True, copy_scope=True, include_in_schema=False)
    async def unipile_simulator(scope: Scope, receive: Receive, send: Send) -> None:
        await sim_app(scope, receive, send)

    return unipile_simulator
