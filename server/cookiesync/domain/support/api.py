"""The support console's data as JSON under /v1/support/ (same data as the pages)."""
from __future__ import annotations

import logging
from typing import Annotated, Literal

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, JSONBody, QueryParameter

from cookiesync.domain.reconnect.policy import State
from cookiesync.domain.support import actions, queries
from cookiesync.domain.support import schemas as S
from cookiesync.domain.support.auth import Principal, api_principal, require_act
from cookiesync.runtime import Runtime

log = logging.getLogger("cookiesync.support")
RT = NamedDependency[Runtime]
Who = NamedDependency[Principal]

LinkAction = Literal["retry", "stop", "disable", "enable", "resend-email"]
OutboxStatus = Literal["pending", "held", "sending", "sent", "failed"]
NotificationStatus = Literal["pending", "delivered", "failed"]
NotificationEvent = Literal["link.connected", "link.needs_user", "link.checkpoint", "link.disabled"]
assert set(NotificationStatus.__args__) == set(queries.notifications.STATUSES)
assert set(NotificationEvent.__args__) == set(queries.notifications.EVENT_TYPES)
LinkState = Literal["pending", "connected", "reconnecting", "needs_user", "checkpoint", "disabled"]
assert set(LinkState.__args__) == {s.value for s in State}

AUTH_NOTE = ("Staff session cookie (from /support/login; POSTs also need the session's CSRF token in "
             "`X-CSRF-Token`, see `GET /v1/support/me`), or `Authorization: Bearer <API key>` whose scopes include "
             "`support` (read and act) or `support:read` (read only).")


class SupportAPI(Controller):
    path = "/v1/support"
    tags = ["support"]
    dependencies = {"principal": Provide(api_principal)}

    @get("/me", summary="Who is calling, their role, and the CSRF token to send on POSTs", description=AUTH_NOTE)
    async def me(self, principal: Who) -> S.Me:
        return S.Me(principal=principal.actor, role=principal.role, can_act=principal.can_act,
                    csrf_token=principal.csrf_token)

    @get("/overview", summary="Links by state, open incidents, success rates, outbox, sweep, attempts per hour",
         description=AUTH_NOTE)
    async def overview(self, rt: RT, principal: Who) -> S.Overview:
        return await queries.overview.read(rt)

    @get("/links", summary="Links, last changed first, filtered; keyset-paginated", description=AUTH_NOTE)
    async def links(
        self, rt: RT, principal: Who,
        link_state: Annotated[LinkState | None, QueryParameter(name="state")] = None,
        user_id: Annotated[str | None, QueryParameter(max_length=200)] = None,
        email: Annotated[str | None, QueryParameter(max_length=320)] = None,
        plain_id: Annotated[str | None, QueryParameter(max_length=40)] = None,
        account_id: Annotated[str | None, QueryParameter(max_length=100, description="Unipile account id")] = None,
        updated_from: Annotated[str | None, QueryParameter(
            name="from", description="last change (state, account, schedule) on or after (YYYY-MM-DD UTC or ISO 8601)")] = None,
        updated_to: Annotated[str | None, QueryParameter(
            name="to", description="last change up to (a day is inclusive; ISO exclusive)")] = None,
        order: Annotated[Literal["desc", "asc"], QueryParameter()] = "desc",
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> S.LinkPage:
        try:
            flt = queries.links.LinkFilter(state=link_state, user_id=user_id, email=email, plain_id=plain_id,
                                           account_id=account_id, updated_from=queries.links.parse_day(updated_from),
                                           updated_to=queries.links.parse_day(updated_to, end=True), order=order,
                                           cursor=cursor, limit=limit)
            return await queries.links.page(rt, flt)
        except queries.BadQuery as exc:
            raise ValidationException(detail=str(exc)) from None

    @get("/links/{link_id:int}", summary="One link: summary, devices, incidents, emails and its timeline",
         description=AUTH_NOTE)
    async def link(self, rt: RT, principal: Who, link_id: FromPath[int],
                   before: Annotated[int | None, QueryParameter(
                       description="timeline events older than this id (the previous page's next cursor)")] = None,
                   limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100) -> S.LinkDetail:
        detail = await queries.links.detail(rt, link_id, before=before, limit=limit)
        if detail is None:
            raise NotFoundException(detail=f"no link {link_id}")
        return detail

    @post("/links/{link_id:int}/actions/{action:str}", status_code=200,
          summary="Act on a link: retry now, stop retries, disable, enable, resend the last email",
          description=AUTH_NOTE + " Operators only. The body is optional: {\"reason\": \"…\"} for the audit trail.")
    async def link_action(self, rt: RT, principal: Who, request: Request, link_id: FromPath[int],
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
                            device_id: FromPath[str]) -> S.ActionOut:
        require_act(principal, request)
        try:
            return await actions.revoke(rt, device_id, principal.actor)
        except actions.NotFound:
            raise NotFoundException(detail=f"no device {device_id}") from None

    @get("/outbox", summary="Emails, newest first, with status, attempts and last error", description=AUTH_NOTE)
    async def outbox(self, rt: RT, principal: Who,
                     status: Annotated[OutboxStatus | None, QueryParameter()] = None,
                     user_id: Annotated[str | None, QueryParameter(max_length=200)] = None,
                     link_id: Annotated[int | None, QueryParameter()] = None,
                     cursor: Annotated[str | None, QueryParameter(max_length=40)] = None,
                     limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50) -> S.OutboxPage:
        try:
            return await queries.outbox.page(rt, queries.ListQuery(
                {"status": status, "user_id": user_id, "link_id": link_id}, cursor, limit))
        except queries.BadQuery as exc:
            raise ValidationException(detail=str(exc)) from None

    @get("/outbox/{outbox_id:int}", summary="One email with its rendered bodies (reconnect token redacted)",
         description=AUTH_NOTE)
    async def email(self, rt: RT, principal: Who, outbox_id: FromPath[int]) -> S.OutboxDetail:
        detail = await queries.outbox.detail(rt, outbox_id)
        if detail is None:
            raise NotFoundException(detail=f"no email {outbox_id}")
        return detail

    @post("/outbox/{outbox_id:int}/resend", status_code=200,
          summary="Send a copy of an email (new Message-ID, to the user's current address)",
          description=AUTH_NOTE + " Operators only.")
    async def resend(self, rt: RT, principal: Who, request: Request, outbox_id: FromPath[int],
                     data: JSONBody[S.ActionIn | None] = None) -> S.ActionOut:
        require_act(principal, request)
        try:
            return await actions.resend_email(rt, outbox_id, principal.actor, data.reason if data else None)
        except actions.NotFound:
            raise NotFoundException(detail=f"no email {outbox_id}") from None

    @get("/notifications", summary="Integrator notifications, newest first, with delivery status, attempts and "
                                   "last error; keyset-paginated", description=AUTH_NOTE)
    async def notifications(self, rt: RT, principal: Who,
                            status: Annotated[NotificationStatus | None, QueryParameter()] = None,
                            event_type: Annotated[NotificationEvent | None, QueryParameter()] = None,
                            user_id: Annotated[str | None, QueryParameter(max_length=200)] = None,
                            link_id: Annotated[int | None, QueryParameter()] = None,
                            cursor: Annotated[str | None, QueryParameter(max_length=40)] = None,
                            limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50) -> S.NotificationPage:
        try:
            return await queries.notifications.page(rt, queries.ListQuery(
                {"status": status, "event_type": event_type, "user_id": user_id, "link_id": link_id}, cursor, limit))
        except queries.BadQuery as exc:
            raise ValidationException(detail=str(exc)) from None

    @get("/notifications/{notification_id:int}", summary="One integrator notification with the payload sent",
         description=AUTH_NOTE)
    async def notification(self, rt: RT, principal: Who, notification_id: FromPath[int]) -> S.NotificationDetail:
        detail = await queries.notifications.detail(rt, notification_id)
        if detail is None:
            raise NotFoundException(detail=f"no notification {notification_id}")
        return detail
