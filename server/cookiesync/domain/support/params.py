"""The query parameters of the console's lists, declared once for the HTML pages and the JSON API.

Each list's filters are a dependency (`link_filter`, `outbox_query`, `notification_query`) whose
typed parameters Litestar parses and validates: a value it cannot take is a ValidationException,
a date or cursor the query layer cannot read a BadQuery; each controller maps both to a 400 (JSON
for the API, the error page for the pages) with `bad_query_text` as the message.

The dependencies take `signed_in` (each controller provides it from its caller): Litestar resolves
a dependency after the ones it takes, so an anonymous caller with a malformed query is still sent to
sign in (pages) or told 401 (API) rather than told about the query."""
from __future__ import annotations

from typing import Annotated, Callable, Literal

from litestar.di import NamedDependency, Provide
from litestar.exceptions import ValidationException
from litestar.params import PathParameter, QueryParameter

from cookiesync.domain.reconnect.policy import State
from cookiesync.domain.support.queries import notifications, outbox
from cookiesync.domain.support.queries.links import LinkFilter, parse_day
from cookiesync.domain.support.queries.paging import BadQuery, ListQuery
from cookiesync.validation import row_id_in, text_in

LinkState = Literal["pending", "connected", "reconnecting", "needs_user", "checkpoint", "disabled"]
OutboxStatus = Literal["pending", "held", "sending", "sent", "failed"]
NotificationStatus = Literal["pending", "delivered", "failed"]
NotificationEvent = Literal["link.connected", "link.needs_user", "link.checkpoint", "link.disabled"]
assert set(LinkState.__args__) == {s.value for s in State}
assert set(OutboxStatus.__args__) == set(outbox.STATUSES)
assert set(NotificationStatus.__args__) == set(notifications.STATUSES)
assert set(NotificationEvent.__args__) == set(notifications.EVENT_TYPES)

SignedIn = NamedDependency[object]
LinksAsked = NamedDependency[LinkFilter]     # what the handlers take: the dependencies' answers
ListAsked = NamedDependency[ListQuery]
DeviceId = Annotated[str, text_in(PathParameter, 64)]
UserId = Annotated[str | None, text_in(QueryParameter, 200)]
LinkId = Annotated[int | None, row_id_in(QueryParameter, "a link's id")]
IdCursor = Annotated[str | None, text_in(QueryParameter, 40)]
Limit = Annotated[int, QueryParameter(ge=1, le=200)]
TimelineBefore = Annotated[int | None, row_id_in(
    QueryParameter, "timeline events older than this id (the previous page's next cursor)")]


async def link_filter(
    signed_in: SignedIn,
    link_state: Annotated[LinkState | None, QueryParameter(name="state")] = None,
    user_id: UserId = None,
    email: Annotated[str | None, text_in(QueryParameter, 320)] = None,
    plain_id: Annotated[str | None, text_in(QueryParameter, 40)] = None,
    account_id: Annotated[str | None, text_in(QueryParameter, 100, description="Unipile account id")] = None,
    updated_from: Annotated[str | None, text_in(
        QueryParameter, 40, name="from",
        description="last change (state, account, schedule) on or after (YYYY-MM-DD UTC or ISO 8601)")] = None,
    updated_to: Annotated[str | None, text_in(
        QueryParameter, 40, name="to", description="last change up to (a day is inclusive; ISO exclusive)")] = None,
    order: Annotated[Literal["desc", "asc"], QueryParameter()] = "desc",
    cursor: Annotated[str | None, text_in(QueryParameter, 200)] = None,
    limit: Limit = 50,
) -> LinkFilter:
    return LinkFilter(state=link_state, user_id=user_id, email=email, plain_id=plain_id, account_id=account_id,
                      updated_from=parse_day(updated_from), updated_to=parse_day(updated_to, end=True), order=order,
                      cursor=cursor, limit=limit)


async def outbox_query(signed_in: SignedIn, status: Annotated[OutboxStatus | None, QueryParameter()] = None,
                       user_id: UserId = None, link_id: LinkId = None, cursor: IdCursor = None,
                       limit: Limit = 50) -> ListQuery:
    return ListQuery({"status": status, "user_id": user_id, "link_id": link_id}, cursor, limit)


async def notification_query(signed_in: SignedIn,
                             status: Annotated[NotificationStatus | None, QueryParameter()] = None,
                             event_type: Annotated[NotificationEvent | None, QueryParameter()] = None,
                             user_id: UserId = None, link_id: LinkId = None, cursor: IdCursor = None,
                             limit: Limit = 50) -> ListQuery:
    return ListQuery({"status": status, "event_type": event_type, "user_id": user_id, "link_id": link_id},
                     cursor, limit)


def list_dependencies(signed_in: Callable[..., object]) -> dict[str, Provide]:
    """The lists' filter dependencies for a controller; `signed_in` takes the controller's own
    caller dependency (and returns it)."""
    return {"signed_in": Provide(signed_in, sync_to_thread=False), "link_filter": Provide(link_filter),
            "outbox_query": Provide(outbox_query), "notification_query": Provide(notification_query)}


# Litestar names a refused parameter by its Python name; these differ from the query's
_QUERY_NAMES = {"link_state": "state", "updated_from": "from", "updated_to": "to"}


def bad_query_text(exc: BadQuery | ValidationException) -> str:
    """What was wrong with the query, for a person: each refused parameter and why."""
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        return "; ".join(f"{_QUERY_NAMES.get(e.get('key'), e.get('key'))}: {e.get('message')}"
                         if isinstance(e, dict) else str(e) for e in exc.extra)
    return exc.detail if isinstance(exc, ValidationException) else str(exc)
