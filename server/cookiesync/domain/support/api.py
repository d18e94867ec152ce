"""The support console's data as JSON under /v1/support/ (same data as the pages)."""
from __future__ import annotations

import logging
from typing import Annotated, Literal, TypeVar

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException, ValidationException
from litestar.exceptions.responses import create_exception_response
from litestar.params import FromPath, JSONBody, QueryParameter

from cookiesync.domain.support import actions, queries
from cookiesync.domain.support import schemas as S
from cookiesync.domain.support.auth import Principal, api_principal, require_act
from cookiesync.domain.support.params import DeviceId, LinksAsked, ListAsked, TimelineBefore, bad_query_text, \
    list_dependencies
from cookiesync.domain.support.queries import BadQuery
from cookiesync.http import no_store
from cookiesync.runtime import RT
from cookiesync.validation import PathRowId

log = logging.getLogger("cookiesync.support")
Who = NamedDependency[Principal]
T = TypeVar("T")

LinkAction = Literal["retry", "stop", "disable", "enable", "resend-email"]

AUTH_NOTE = ("Staff session cookie (from /support/login; POSTs also need the session's CSRF token in "
             "`X-CSRF-Token`, see `GET /v1/support/me`), or `Authorization: Bearer <API key>` whose scopes include "
             "`support` (read and act) or `support:read` (read only).")


def _caller(principal: Who) -> Principal:
    return principal


def _bad_query(request: Request, exc: BadQuery | ValidationException) -> Response:
    """Litestar's own JSON answer for a ValidationException, for a BadQuery too."""
    if not isinstance(exc, ValidationException):
        exc = ValidationException(detail=bad_query_text(exc))
    return create_exception_response(request, exc)


def _found(detail: T | None, missing: str) -> T:
    if detail is None:
        raise NotFoundException(detail=missing)
    return detail


class SupportAPI(Controller):
    path = "/v1/support"
    tags = ["support"]
    dependencies = {"principal": Provide(api_principal), **list_dependencies(_caller)}
    exception_handlers = {BadQuery: _bad_query, ValidationException: _bad_query}
    middleware = [no_store]

    @get("/me", summary="Who is calling, their role, and the CSRF token to send on POSTs", description=AUTH_NOTE)
    async def me(self, principal: Who) -> S.Me:
        return S.Me(principal=principal.actor, role=principal.role, can_act=principal.can_act,
                    csrf_token=principal.csrf_token)

    @get("/overview", summary="Links by state, open incidents, success rates, outbox, sweep, attempts per hour",
         description=AUTH_NOTE)
    async def overview(self, rt: RT, principal: Who) -> S.Overview:
        return await queries.overview.read(rt)

    @get("/links", summary="Links, last changed first, filtered; keyset-paginated", description=AUTH_NOTE)
    async def links(self, rt: RT, principal: Who, link_filter: LinksAsked) -> S.LinkPage:
        return await queries.links.page(rt, link_filter)

    @get("/links/{link_id:str}", summary="One link: summary, devices, incidents, emails and its timeline",
         description=AUTH_NOTE)
    async def link(self, rt: RT, principal: Who, link_id: PathRowId, before: TimelineBefore = None,
                   limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100) -> S.LinkDetail:
        return _found(await queries.links.detail(rt, link_id, before=before, limit=limit), f"no link {link_id}")

    @post("/links/{link_id:str}/actions/{action:str}", status_code=200,
          summary="Act on a link: retry now, stop retries, disable, enable, resend the last email",
          description=AUTH_NOTE + " Operators only. The body is optional: {\"reason\": \"…\"} for the audit trail.")
    async def link_action(self, rt: RT, principal: Who, request: Request, link_id: PathRowId,
                          action: FromPath[LinkAction],
                          data: JSONBody[S.ActionIn | None] = None) -> S.ActionOut:
        require_act(principal, request)
        try:
            out = await actions.link_action(rt, link_id, action, principal.actor, data.reason if data else None)
        except actions.NotFound:
            raise NotFoundException(detail=f"no link {link_id}") from None
        log.info("support action %s on link %s by %s: %s", action, link_id, principal.actor, out.note)
        return out

    @post("/devices/{device_id:str}/revoke", status_code=200, summary="Revoke an extension's device token",
          description=AUTH_NOTE + " Operators only.")
    async def revoke_device(self, rt: RT, principal: Who, request: Request,
                            device_id: DeviceId) -> S.ActionOut:
        require_act(principal, request)
        try:
            return await actions.revoke(rt, device_id, principal.actor)
        except actions.NotFound:
            raise NotFoundException(detail=f"no device {device_id}") from None

    @get("/outbox", summary="Emails, newest first, with status, attempts and last error", description=AUTH_NOTE)
    async def outbox(self, rt: RT, principal: Who, outbox_query: ListAsked) -> S.OutboxPage:
        return await queries.outbox.page(rt, outbox_query)

    @get("/outbox/{outbox_id:str}", summary="One email with its rendered bodies (reconnect token redacted)",
         description=AUTH_NOTE)
    async def email(self, rt: RT, principal: Who, outbox_id: PathRowId) -> S.OutboxDetail:
        return _found(await queries.outbox.detail(rt, outbox_id), f"no email {outbox_id}")

    @post("/outbox/{outbox_id:str}/resend", status_code=200,
          summary="Send a copy of an email (new Message-ID, to the user's current address)",
          description=AUTH_NOTE + " Operators only.")
    async def resend(self, rt: RT, principal: Who, request: Request, outbox_id: PathRowId,
                     data: JSONBody[S.ActionIn | None] = None) -> S.ActionOut:
        require_act(principal, request)
        try:
            return await actions.resend_email(rt, outbox_id, principal.actor, data.reason if data else None)
        except actions.NotFound:
            raise NotFoundException(detail=f"no email {outbox_id}") from None

    @get("/notifications", summary="Integrator notifications, newest first, with delivery status, attempts and "
                                   "last error; keyset-paginated", description=AUTH_NOTE)
    async def notifications(self, rt: RT, principal: Who, notification_query: ListAsked) -> S.NotificationPage:
        return await queries.notifications.page(rt, notification_query)

    @get("/notifications/{notification_id:str}", summary="One integrator notification with the payload sent",
         description=AUTH_NOTE)
    async def notification(self, rt: RT, principal: Who, notification_id: PathRowId) -> S.NotificationDetail:
        return _found(await queries.notifications.detail(rt, notification_id), f"no notification {notification_id}")
