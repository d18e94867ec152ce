"""The integrator's API: users, pairing codes, accounts, erasure. API key as Bearer."""
from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.exceptions.responses import create_exception_response
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED

from cookiesync.domain.integrator import services
from cookiesync.domain.integrator.export import export_user
from cookiesync.domain.integrator.schemas import USER_ID_PATTERN, AccountsOut, EraseOut, PairingCodeOut, UserExport, \
    UserIn, UserOut
from cookiesync.http import bearer_token
from cookiesync.runtime import RT
from cookiesync.validation import one_value_each

Actor = NamedDependency[str]
UserId = Annotated[str, Parameter(pattern=USER_ID_PATTERN, description="the integrator's own user id")]


async def require_api_key(request: Request, rt: RT) -> str:
    """The controller's dependency: the calling key's name for the audit trail, or 401.
    Litestar resolves dependencies before it validates the handler's parameters, so a request
    without a valid key answers 401 whatever else is wrong with it (as the support API does)."""
    actor = await services.api_key_actor(rt, bearer_token(request))
    if not actor:
        raise NotAuthorizedException(detail="unknown or revoked API key, or one without the integrator scope")
    one_value_each(request)
    return actor


def no_such_user(request: Request, exc: services.NoSuchUser) -> Response:
    """Answers exactly as a raised NotFoundException would: Litestar's own 404 body."""
    return create_exception_response(request, NotFoundException(detail=str(exc)))


class IntegratorController(Controller):
    path = "/v1/users"
    tags = ["integrator"]
    dependencies = {"actor": Provide(require_api_key)}
    exception_handlers = {services.NoSuchUser: no_such_user}

    @put("/{user_id:str}", summary="Create or update a user")
    async def upsert_user(self, user_id: UserId, data: UserIn, rt: RT, actor: Actor) -> UserOut:
        return await services.upsert_user(rt, user_id, data, actor)

    @post("/{user_id:str}/pairing-codes", status_code=HTTP_201_CREATED, summary="Mint a one-time pairing code")
    async def pairing_code(self, user_id: UserId, rt: RT, actor: Actor) -> PairingCodeOut:
        return await services.create_pairing_code(rt, user_id, actor)

    @get("/{user_id:str}/accounts", summary="The user's LinkedIn links and their status")
    async def accounts(self, user_id: UserId, rt: RT, actor: Actor) -> AccountsOut:
        return await services.list_accounts(rt, user_id)

    @get("/{user_id:str}/export", summary="Everything held on the user, as one JSON document",
         description="The user's fields, devices, links with their incidents, emails sent (subject, date, "
                     "status), notifications, pairing codes and history. Never a cookie, token, key or "
                     "reconnect link.")
    async def export(self, user_id: UserId, rt: RT, actor: Actor) -> UserExport:
        out = await export_user(rt, user_id, actor)
        if out is None:
            raise services.NoSuchUser(f"no user {user_id!r}")
        return out

    @delete("/{user_id:str}", status_code=200, summary="Erase the user: cookies, devices, links, history")
    async def erase(self, user_id: UserId, rt: RT, actor: Actor, delete_in_unipile: bool = False) -> EraseOut:
        return await services.erase_user(rt, user_id, actor, delete_in_unipile=delete_in_unipile)
