"""Contract §1, §2 and §4 (accounts): connect LinkedIn with cookies (``POST /accounts``), reconnect
(``POST /accounts/{id}``), list/get/delete/restart accounts, and ``GET /users/me``.

A connect or reconnect is one authentication intent: after the cookie's (or the configured)
latency it answers its scripted outcome (an error, a checkpoint, or success), and while it runs a
second intent for the same cookie or account gets 425."""
from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import Counter

from litestar import Request, Response, delete, get, post

from cookiesync.domain.location.countries import is_alpha2
from cookiesync.simulator.inputs import account_of, check_fields, cut_page, json_object, pop_or_404, read_cursor, \
    sim_of, want
from cookiesync.simulator.responses import BadRequest, err, jresp
from cookiesync.simulator.state import (
    Account,
    Checkpoint,
    Credentials,
    SimState,
    checkpoint_body,
    error_for,
    new_id,
    plain_id_for_cookie,
    retry_after_for,
    take,
)
from cookiesync.simulator.transport import API
from cookiesync.simulator.webhooks import fire_later

# --- validation of create/reconnect bodies (contract §1) -----------------------------
AUTH_FIELDS = {"provider", "access_token", "premium_token", "user_agent", "recruiter_contract_id", "proxy",
               "country", "ip", "disabled_features", "sync_limit"}
DISABLED_FEATURES = {"linkedin_recruiter", "linkedin_sales_navigator", "linkedin_organizations_mailboxes"}


def validate_auth_body(body: dict, reconnect: bool) -> Credentials:
    if "username" in body or "password" in body:
        raise BadRequest("invalid_parameters", "The simulator only handles cookie connections (access_token).")
    check_fields(body, AUTH_FIELDS | ({"account_id"} if reconnect else set()), ("provider", "access_token"))
    if body["provider"] != "LINKEDIN":
        raise BadRequest("invalid_parameters", "provider must be LINKEDIN.")
    want(body, "access_token", str, nullable=False)
    for name in ("premium_token", "user_agent", "recruiter_contract_id"):
        want(body, name, str)
    country = want(body, "country", str)
    if country is not None and not is_alpha2(country.upper()):  # an assigned code ("ZZ" is none)
        raise BadRequest("invalid_parameters", "country must be an ISO 3166-1 alpha-2 code.")
    ip = want(body, "ip", str)
    if ip is not None:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise BadRequest("invalid_parameters", "ip must be an IPv4 address.") from None
    proxy = want(body, "proxy", dict)
    if proxy is not None:
        if set(proxy) - {"protocol", "host", "port", "username", "password"}:
            raise BadRequest("invalid_parameters", "proxy has unknown fields.")
        port = proxy.get("port")
        if not isinstance(proxy.get("host"), str) or not proxy["host"] or not isinstance(port, int) \
                or isinstance(port, bool) or not 0 < port < 65536:
            raise BadRequest("invalid_parameters", "proxy needs host and port.")
        if any(name in proxy and not isinstance(proxy[name], str) for name in ("username", "password")):
            raise BadRequest("invalid_parameters", "proxy.username and proxy.password are strings.")
        if proxy.get("protocol", "https") not in ("https", "http", "socks5"):
            raise BadRequest("invalid_parameters", "proxy.protocol must be https, http or socks5.")
    features = want(body, "disabled_features", list)
    if features is not None and not set(features) <= DISABLED_FEATURES:
        raise BadRequest("invalid_parameters", "disabled_features has unknown values.")
    sync_limit = want(body, "sync_limit", dict)
    if sync_limit is not None:
        for key, value in sync_limit.items():
            if key not in ("chats", "messages") or isinstance(value, bool) or not (
                    isinstance(value, str) or (isinstance(value, (int, float)) and value >= 0)):
                raise BadRequest("invalid_parameters", "sync_limit takes chats/messages: ISO date or number >= 0.")
    return Credentials.from_body(body)


# --- connect and reconnect (contract §1, §2) ---------------------------------------------
def _status_code_for(outcome: str) -> Response | None:
    e = error_for(outcome)
    if e is None:
        return None
    wait = retry_after_for(outcome, time.time())
    return err(*e, headers={"Retry-After": wait} if wait else None)


async def _authenticate(request: Request, account_id: str | None) -> Response:
    """POST /accounts (account_id None) and POST /accounts/{account_id}: one intent."""
    sim = sim_of(request)
    reconnect = account_id is not None
    creds = validate_auth_body(await json_object(request), reconnect)
    keys = {("cookie", creds.li_at_fp)} | ({("account", account_id)} if reconnect else set())
    async with sim.lock:
        if reconnect:
            account_of(sim, account_id)
        if keys & sim.in_progress:
            return err(*error_for("425"))
        sim.in_progress |= keys
        sim.auth_in_flight += 1
        sim.auth_in_flight_peak = max(sim.auth_in_flight_peak, sim.auth_in_flight)
        outcome = sim.next_outcome(creds.li_at_fp, account_id)
        latency_ms = sim.latency_for(creds.li_at_fp)
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
    member = sim.cookie_member(creds.li_at_fp)
    if member is None:
        member = sim.member(plain_id_for_cookie(creds.li_at_fp))
        sim.cookie(creds.li_at_fp).plain_id = member.plain_id
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
    account = account_of(sim, account_id)  # 404: deleted while we were "talking to LinkedIn"
    member = sim.cookie_member(creds.li_at_fp)
    if member is not None and member.plain_id != account.plain_id:
        return err(*error_for("wrong_account"))
    if member is None:  # an unknown cookie is taken as the account's own member
        sim.cookie(creds.li_at_fp).plain_id = account.plain_id
    if outcome.startswith("checkpoint:"):
        account.checkpoint = Checkpoint("reconnect", checkpoint_body(outcome), creds)
        return jresp({"object": "Checkpoint", "account_id": account.id, "checkpoint": account.checkpoint.body}, 202)
    finish_reconnect(sim, account, creds, sim.config.auth_webhooks)
    return jresp({"object": "AccountReconnected", "account_id": account.id}, 201)


def finish_reconnect(sim: SimState, account: Account, creds: Credentials | None, webhooks: bool) -> None:
    """The account is OK again: by API reconnect, solved checkpoint or hosted link (creds None keeps them)."""
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


# --- list, get, delete, restart (contract §4) ------------------------------------------------
@get(f"{API}/accounts")
async def list_accounts(request: Request) -> Response:
    """A page of `limit` accounts (1-250) from the `cursor`; the next page's cursor, null on the
    last. A listing is the accounts as they were at its first page (the ids and `status_counts`,
    taken then: over a million accounts, walking them again for every page would cost more than
    the page), each shown as it is now; one deleted since is left out. Scripted answers
    (`/_sim/listing`) replace pages in turn: a listing that fails half-way."""
    sim = sim_of(request)
    offset, limit = read_cursor(request.query_params)
    outcome = take(sim.list_outcomes)
    if outcome and (failure := _status_code_for(outcome)):
        return failure
    if offset == 0 or sim.listing is None:
        counts = dict.fromkeys(("OK", "CONNECTING", "CREDENTIALS", "STOPPED"), 0)
        counts.update(Counter(a.status for a in sim.accounts.values()))
        sim.listing = (list(sim.accounts), counts)
    ids, counts = sim.listing
    chunk, cursor = cut_page(ids, offset, limit)
    items = [sim.account_json(a) for a in map(sim.accounts.get, chunk) if a is not None]
    return jresp({"object": "AccountList", "items": items, "cursor": cursor, "total_count": len(ids),
                  "status_counts": counts})


def _scripted_read(sim: SimState) -> Response | None:
    """The next scripted answer of a read (`/_sim/reads`), when it is an error."""
    outcome = take(sim.read_outcomes)
    return _status_code_for(outcome) if outcome else None


@get(f"{API}/accounts/{{account_id:str}}")
async def get_account(request: Request, account_id: str) -> Response:
    sim = sim_of(request)
    account = account_of(sim, account_id)
    return _scripted_read(sim) or jresp(sim.account_json(account))


@delete(f"{API}/accounts/{{account_id:str}}", status_code=200)
async def delete_account(request: Request, account_id: str) -> Response:
    sim = sim_of(request)
    async with sim.lock:
        pop_or_404(sim.accounts, "account", account_id)
        sim.account_outcomes.pop(account_id, None)
    fire_later(sim, account_id, "DELETED")
    return jresp({"object": "AccountDeleted"})


@post(f"{API}/accounts/{{account_id:str}}/restart", status_code=200)
async def restart_account(request: Request, account_id: str) -> Response:
    sim = sim_of(request)
    async with sim.lock:
        account = account_of(sim, account_id)
        was_ok = account.status == "OK"
        account.status = "OK"
    if not was_ok:
        fire_later(sim, account_id, "OK")
    return jresp({"object": "AccountRestarted"})


# --- the account's own member profile -----------------------------------------------------------
@get(f"{API}/users/me")
async def users_me(request: Request) -> Response:
    sim = sim_of(request)
    account_id = request.query_params.get("account_id")
    if not account_id:
        return err(400, "missing_parameters", "Missing parameters", "account_id is required.")
    account = account_of(sim, account_id)
    if account.status != "OK":
        return err(*error_for("disconnected_account"))
    if failure := _scripted_read(sim):
        return failure
    m = sim.members[account.me_plain_id or account.plain_id]
    first, _, last = m.name.partition(" ")
    return jresp({"object": "AccountOwnerProfile", "provider": "LINKEDIN", "provider_id": m.provider_id,
                  "entity_urn": f"urn:li:fsd_profile:{m.provider_id}", "object_urn": f"urn:li:member:{m.plain_id}",
                  "first_name": first, "last_name": last, "public_identifier": m.public_identifier,
                  "profile_picture_url": None,
                  "premium": bool(m.premium) if m.premium is not None else bool(account.creds and account.creds.li_a_fp),
                  "occupation": "Simulated member", "location": None})
