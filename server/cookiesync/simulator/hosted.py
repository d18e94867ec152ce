"""Contract §7 (hosted auth): ``POST /hosted/accounts/link`` mints a link, and ``/hosted/{token}``
is the page that stands in for account.unipile.com (no API key). Submitting it creates or
reconnects the account, then calls ``notify_url`` and fires the account-status webhooks."""
from __future__ import annotations

import re
import urllib.parse
from datetime import datetime, timezone

from litestar import Request, Response, get, post

from cookiesync.simulator import pages
from cookiesync.simulator.accounts import finish_reconnect
from cookiesync.simulator.inputs import account_of, check_fields, check_url, json_object, sim_of
from cookiesync.simulator.responses import HTML_CT, BadRequest, html, jresp
from cookiesync.simulator.state import Account, HostedLink, SimState, iso_now, new_id, plain_id_for_cookie
from cookiesync.simulator.transport import API
from cookiesync.simulator.webhooks import fire_account_status, post_json

# the contract's (§7), with ASCII digits and \Z: \d takes any script's digits and $ a final "\n"
EXPIRES_ON = re.compile(r"^[1-2][0-9]{3}-[0-1][0-9]-[0-3][0-9]T[0-9]{2}:[0-9]{2}:[0-9]{2}.[0-9]{3}Z\Z")
HOSTED_FIELDS = {"type", "api_url", "expiresOn", "providers", "reconnect_account", "name", "success_redirect_url",
                 "failure_redirect_url", "notify_url", "disabled_features", "sync_limit", "bypass_success_screen"}
HOSTED_PROVIDERS = {"LINKEDIN", "WHATSAPP", "INSTAGRAM", "MESSENGER", "TELEGRAM", "GOOGLE", "OUTLOOK", "MAIL",
                    "TWITTER"}


# --- the link (API key) ---------------------------------------------------------------------
def _public_url(request: Request) -> str:
    configured = sim_of(request).config.public_url.rstrip("/")
    if configured:
        return configured
    return str(request.base_url).rstrip("/") + request.scope.get("sim.prefix", "")  # type: ignore[operator]


def validate_hosted_body(body: dict) -> datetime:
    check_fields(body, HOSTED_FIELDS, ("type", "api_url", "expiresOn"))
    if body["type"] not in ("create", "reconnect"):
        raise BadRequest("invalid_parameters", "type must be create or reconnect.")
    check_url(body["api_url"], "api_url")
    expires = body["expiresOn"]
    if not isinstance(expires, str) or not EXPIRES_ON.match(expires):
        raise BadRequest("invalid_parameters", "expiresOn must look like 2026-07-01T12:30:00.000Z (milliseconds).")
    try:
        expires_at = datetime.strptime(expires, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise BadRequest("invalid_parameters", "expiresOn is not a valid date.") from None
    for name in ("success_redirect_url", "failure_redirect_url", "notify_url"):
        check_url(body.get(name), name)
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
    sim = sim_of(request)
    body = await json_object(request)
    expires_at = validate_hosted_body(body)
    async with sim.lock:
        if body["type"] == "reconnect":
            account_of(sim, body["reconnect_account"])
        token = new_id() + new_id()
        url = f"{_public_url(request)}/hosted/{token}"
        sim.hosted[token] = HostedLink(token=token, url=url, body=body, expires_at=expires_at)
    return jresp({"object": "HostedAuthURL", "url": url}, 201)


# --- the page (no API key) ------------------------------------------------------------------
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
    sim = sim_of(request)
    link = _link_or_page(sim, token)
    if isinstance(link, Response):
        return link
    account = sim.accounts.get(link.body.get("reconnect_account") or "")
    name = sim.members[account.plain_id].name if account else None
    return html(pages.hosted_form(link.body["type"], name, link.body.get("name"), link.body["expiresOn"]))


@post("/hosted/{token:str}", status_code=200, include_in_schema=False)
async def hosted_submit(request: Request, token: str) -> Response:
    sim = sim_of(request)
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
            # keeps the account's cookies; the webhook below is fired whatever the status was
            finish_reconnect(sim, account, None, webhooks=False)
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
        link.notify = await post_json(body["notify_url"], {"status": event, "account_id": account.id,
                                                           "name": body.get("name")},
                                      {"content-type": "application/json"})
        sim.deliveries.append({"at": iso_now(), "kind": "notify_url", "account_id": account.id, "message": event,
                               "payload": None, "results": [link.notify]})
    link.webhooks = await fire_account_status(sim, account.id, event)
    target = body.get("success_redirect_url")
    if target:
        return Response(content=b"", status_code=303, headers={"location": target}, media_type=HTML_CT)
    return html(pages.hosted_message("Done", "Your LinkedIn account is connected. You can close this page."))
