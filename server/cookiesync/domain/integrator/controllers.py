"""The integrator's API: users, pairing codes, accounts, erasure. API key as Bearer."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated

import sqlalchemy as sa
from litestar import Controller, Request, delete, get, post, put
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED

from cookiesync.db.engine import reader
from cookiesync.db.schema import api_keys, devices, events, incidents, links, notifications, outbox, pairing_codes, \
    users, utcnow
from cookiesync.domain.integrator.schemas import USER_ID_PATTERN, AccountOut, AccountsOut, EraseOut, PairingCodeOut, \
    UserIn, UserOut
from cookiesync.domain.reconnect.services import add_event
from cookiesync.domain.sync.services import forget_user
from cookiesync.http import bearer_token
from cookiesync.runtime import Runtime
from cookiesync.security import hash_token, new_pairing_code, normalize_pairing_code
from cookiesync.unipile.client import UnipileError

log = logging.getLogger("cookiesync.integrator")
UserId = Annotated[str, Parameter(pattern=USER_ID_PATTERN, description="the integrator's own user id")]


async def require_api_key(rt: Runtime, request: Request) -> str:
    """Returns the key's name (for the audit trail)."""
    token_hash = hash_token(bearer_token(request))
    cache = rt.api_key_cache
    name = cache.get(token_hash)
    if name is None:
        async with reader(rt.engine) as conn:
            row = (await conn.execute(sa.select(api_keys.c.name, api_keys.c.scopes).where(
                api_keys.c.key_hash == token_hash, api_keys.c.revoked_at.is_(None)))).first()
        allowed = row is not None and "integrator" in row.scopes.replace(",", " ").split()
        name = f"apikey:{row.name}" if allowed else ""
        cache.put(token_hash, name)
    if not name:
        raise NotAuthorizedException(detail="unknown or revoked API key, or one without the integrator scope")
    return name


async def _user_or_404(conn, user_id: str):
    row = (await conn.execute(sa.select(users).where(users.c.user_id == user_id))).first()
    if row is None:
        raise NotFoundException(detail=f"no user {user_id!r}: create it with PUT /v1/users/{{user_id}} first")
    return row


class IntegratorController(Controller):
    path = "/v1/users"
    tags = ["integrator"]

    @put("/{user_id:str}", summary="Create or update a user")
    async def upsert_user(self, user_id: UserId, data: UserIn, request: Request, rt: Runtime) -> UserOut:
        actor = await require_api_key(rt, request)
        now = utcnow()
        async with rt.engine.begin() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.user_id == user_id))).first()
            if row is None:
                await conn.execute(users.insert().values(user_id=user_id, email=data.email,
                                                         display_name=data.display_name, created_at=now,
                                                         updated_at=now))
                kind = "user_created"
            else:
                await conn.execute(users.update().where(users.c.user_id == user_id)
                                   .values(email=data.email, display_name=data.display_name, updated_at=now))
                kind = "user_updated"
            await add_event(conn, user_id=user_id, link_id=None, kind=kind, actor=actor, at=now,
                            data={"email_set": data.email is not None})
            row = (await conn.execute(sa.select(users).where(users.c.user_id == user_id))).one()
        return UserOut(row.user_id, row.email, row.display_name, row.created_at, row.updated_at)

    @post("/{user_id:str}/pairing-codes", status_code=HTTP_201_CREATED, summary="Mint a one-time pairing code")
    async def pairing_code(self, user_id: UserId, request: Request, rt: Runtime) -> PairingCodeOut:
        actor = await require_api_key(rt, request)
        now = utcnow()
        code = new_pairing_code()
        expires = now + timedelta(seconds=rt.settings.pairing_code_ttl_s)
        async with rt.engine.begin() as conn:
            await _user_or_404(conn, user_id)
            await conn.execute(pairing_codes.insert().values(
                code_hash=hash_token(normalize_pairing_code(code)), user_id=user_id, created_at=now,
                expires_at=expires))
            await add_event(conn, user_id=user_id, link_id=None, kind="pairing_code_created", actor=actor, at=now,
                            data={"expires_at": expires.isoformat()})
        return PairingCodeOut(code=code, expires_at=expires)

    @get("/{user_id:str}/accounts", summary="The user's LinkedIn links and their status")
    async def accounts(self, user_id: UserId, request: Request, rt: Runtime) -> AccountsOut:
        await require_api_key(rt, request)
        async with reader(rt.engine) as conn:
            await _user_or_404(conn, user_id)
            rows = (await conn.execute(sa.select(links).where(links.c.user_id == user_id).order_by(links.c.id))).all()
        return AccountsOut(items=[AccountOut(
            plain_id=r.plain_id, status=r.state, unipile_account_id=r.unipile_account_id,
            date_last_cookie=r.date_last_cookie, auto_connect=r.auto_connect, hold_reason=r.hold_reason,
            last_error=r.last_error, checkpoint_type=r.checkpoint_type, next_attempt_at=r.next_attempt_at,
            created_at=r.created_at) for r in rows])

    @delete("/{user_id:str}", status_code=200, summary="Erase the user: cookies, devices, links, history")
    async def erase(self, user_id: UserId, request: Request, rt: Runtime,
                    delete_in_unipile: bool = False) -> EraseOut:
        actor = await require_api_key(rt, request)
        async with rt.engine.begin() as conn:
            await _user_or_404(conn, user_id)
            link_rows = (await conn.execute(sa.select(links.c.id, links.c.unipile_account_id)
                                            .where(links.c.user_id == user_id))).all()
            link_ids = [r.id for r in link_rows]
            n_events = (await conn.execute(events.delete().where(events.c.user_id == user_id))).rowcount
            await conn.execute(outbox.delete().where(outbox.c.user_id == user_id))
            await conn.execute(notifications.delete().where(notifications.c.user_id == user_id))
            if link_ids:
                await conn.execute(incidents.delete().where(incidents.c.link_id.in_(link_ids)))
            n_links = (await conn.execute(links.delete().where(links.c.user_id == user_id))).rowcount
            n_devices = (await conn.execute(devices.delete().where(devices.c.user_id == user_id))).rowcount
            await conn.execute(pairing_codes.delete().where(pairing_codes.c.user_id == user_id))
            await conn.execute(users.delete().where(users.c.user_id == user_id))
            # The erasure itself is remembered, without anything about the person.
            await add_event(conn, user_id="-", link_id=None, kind="user_erased", actor=actor,
                            data={"links": n_links, "devices": n_devices})
        forget_user(rt, user_id)
        rt.toucher.forget_user(user_id)
        deleted = []
        if delete_in_unipile:
            for r in link_rows:
                if r.unipile_account_id:
                    try:
                        await rt.unipile.delete_account(r.unipile_account_id)
                        deleted.append(r.unipile_account_id)
                    except UnipileError as exc:
                        log.warning("erase %s: Unipile refused to delete an account: %s", "user", exc)
        return EraseOut(user_id=user_id, links=n_links, devices=n_devices, events=n_events,
                        unipile_accounts_deleted=deleted)
