"""What the integrator API and the `cookiesync` command do to the database: API keys, users,
pairing codes, accounts, erasure. No HTTP here: the controllers parse and answer, these work.

Functions the server calls take the Runtime; those the command line, the tests' and the
benchmarks' set-up call take the Settings, and open a short-lived engine of their own
inside the caller's event loop (an async engine's connections belong to one loop).
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import msgspec
import sqlalchemy as sa
from litestar.exceptions import ValidationException
from sqlalchemy.ext.asyncio import AsyncConnection

from cookiesync.db.engine import make_engine, reader
from cookiesync.db.schema import api_keys, devices, events, incidents, insert_missing, links, notifications, outbox, \
    pairing_codes, users, utcnow
from cookiesync.domain.integrator.schemas import AccountOut, AccountsOut, EraseOut, LinkedInOut, LocationOut, \
    PairingCodeOut, ProxyIn, ProxyOut, UserIn, \
    UserOut
from cookiesync.domain.location import services as location
from cookiesync.domain.location.countries import is_alpha2
from cookiesync.domain.reconnect.services import add_event
from cookiesync.domain.sync.services import forget_user
from cookiesync.runtime import Runtime
from cookiesync.security import encrypt_proxy_password, hash_token, new_pairing_code, new_token, normalize_pairing_code
from cookiesync.settings import Settings
from cookiesync.unipile.client import UnipileError

log = logging.getLogger("cookiesync.integrator")
INTEGRATOR_SCOPE = "integrator"
DEMO_USER_ID = "demo-user"
# Long enough to read the start-up banner, open the extension and type the code.
DEMO_PAIRING_CODE_MIN_TTL_S = 3600


class NoSuchUser(LookupError):
    """The user id names no user; the message says how to create one."""


@asynccontextmanager
async def _transaction(settings: Settings):
    engine = make_engine(settings.database)
    try:
        async with engine.begin() as conn:
            yield conn
    finally:
        await engine.dispose()


# --- API keys ---------------------------------------------------------------------------------
def _api_key_row(key: str, name: str, scopes: str) -> dict:
    """Only the key's hash is kept, and its first characters to tell keys apart in the database."""
    return dict(name=name, key_hash=hash_token(key), prefix=key[:8], scopes=scopes, created_at=utcnow())


async def create_api_key(settings: Settings, name: str, scopes: str = INTEGRATOR_SCOPE) -> str:
    """A new key under `name`; returns the key itself, which is stored nowhere."""
    key = new_token("csk")
    async with _transaction(settings) as conn:
        await conn.execute(api_keys.insert().values(**_api_key_row(key, name, scopes)))
    return key


async def revoke_api_key(settings: Settings, name: str) -> int:
    """Revokes every live key under `name`; returns how many."""
    async with _transaction(settings) as conn:
        return (await conn.execute(api_keys.update().where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
                                   .values(revoked_at=utcnow()))).rowcount


async def api_key_actor(rt: Runtime, token: str) -> str:
    """The audit-trail name ("apikey:<name>") of a live key with the integrator scope, or ""
    for any other token. Answers, refusals included, are kept per instance for
    `token_cache_ttl_s`, so a revocation made elsewhere takes effect within that time."""
    token_hash = hash_token(token)
    cache = rt.api_key_cache
    name = cache.get(token_hash)
    if name is None:
        async with reader(rt.engine) as conn:
            row = (await conn.execute(sa.select(api_keys.c.name, api_keys.c.scopes).where(
                api_keys.c.key_hash == token_hash, api_keys.c.revoked_at.is_(None)))).first()
        allowed = row is not None and INTEGRATOR_SCOPE in row.scopes.replace(",", " ").split()
        name = f"apikey:{row.name}" if allowed else ""
        cache.put(token_hash, name)
    return name


# --- users and pairing codes ------------------------------------------------------------------
async def _user_row(conn: AsyncConnection, user_id: str):
    row = (await conn.execute(sa.select(users).where(users.c.user_id == user_id))).first()
    if row is None:
        raise NoSuchUser(f"no user {user_id!r}: create it with PUT /v1/users/{{user_id}} first")
    return row


async def upsert_user(rt: Runtime, user_id: str, data: UserIn, actor: str) -> UserOut:
    """Creates or replaces the user's fields. Its location (`country`, `proxy`) changes only when
    the body names it (null removes it); the change goes onto every link of the user, in the
    same transaction, before any connect can send it."""
    now = utcnow()
    country, proxy = data.country, data.proxy
    if isinstance(country, str) and not is_alpha2(country):
        raise ValidationException(detail=f"country: {country!r} is not an assigned ISO 3166-1 alpha-2 code")
    values: dict = {"email": data.email, "display_name": data.display_name, "updated_at": now}
    if country is not msgspec.UNSET:
        values["country"] = country
    if proxy is not msgspec.UNSET:
        values.update(proxy_values(rt, user_id, proxy))
    async with rt.engine.begin() as conn:
        row = (await conn.execute(sa.select(users).where(users.c.user_id == user_id))).first()
        if row is None:
            await conn.execute(users.insert().values(user_id=user_id, created_at=now, **values))
            kind = "user_created"
        else:
            await conn.execute(users.update().where(users.c.user_id == user_id).values(**values))
            kind = "user_updated"
        data_out = {"email_set": data.email is not None}
        if country is not msgspec.UNSET or proxy is not msgspec.UNSET:
            new = (await conn.execute(sa.select(users.c.country, users.c.proxy_host)
                                      .where(users.c.user_id == user_id))).one()
            data_out.update(country=new.country, proxy_set=new.proxy_host is not None)
            await location.override(conn, rt.locator, user_id, new.country, new.proxy_host is not None, now, actor)
        await add_event(conn, user_id=user_id, link_id=None, kind=kind, actor=actor, at=now, data=data_out)
        row = (await conn.execute(sa.select(users).where(users.c.user_id == user_id))).one()
    return user_out(row)


def proxy_values(rt: Runtime, user_id: str, proxy: ProxyIn | None) -> dict:
    """The user's proxy columns; the password only as ciphertext (security.encrypt_proxy_password)."""
    if proxy is None:
        return dict(proxy_protocol=None, proxy_host=None, proxy_port=None, proxy_username=None,
                    proxy_password_ciphertext=None, proxy_key_id=None)
    kid = blob = None
    if proxy.password is not None:
        kid, blob = encrypt_proxy_password(rt.keyring, proxy.password, user_id)
    return dict(proxy_protocol=proxy.protocol, proxy_host=proxy.host, proxy_port=proxy.port,
                proxy_username=proxy.username, proxy_password_ciphertext=blob, proxy_key_id=kid)


def user_out(row) -> UserOut:
    """A user row as the API shows it: the proxy without its password (only whether one is set)."""
    proxy = None if row.proxy_host is None else ProxyOut(
        host=row.proxy_host, port=row.proxy_port, protocol=row.proxy_protocol, username=row.proxy_username,
        password_set=row.proxy_password_ciphertext is not None)
    return UserOut(row.user_id, row.email, row.display_name, row.created_at, row.updated_at,
                   country=row.country, proxy=proxy)


async def mint_pairing_code(conn: AsyncConnection, user_id: str, ttl_s: float, now: datetime) -> PairingCodeOut:
    """A one-time code for the extension's popup; only its hash is stored."""
    code = new_pairing_code()
    expires = now + timedelta(seconds=ttl_s)
    await conn.execute(pairing_codes.insert().values(
        code_hash=hash_token(normalize_pairing_code(code)), user_id=user_id, created_at=now, expires_at=expires))
    return PairingCodeOut(code=code, expires_at=expires)


async def create_pairing_code(rt: Runtime, user_id: str, actor: str) -> PairingCodeOut:
    now = utcnow()
    async with rt.engine.begin() as conn:
        await _user_row(conn, user_id)
        out = await mint_pairing_code(conn, user_id, rt.settings.pairing_code_ttl_s, now)
        await add_event(conn, user_id=user_id, link_id=None, kind="pairing_code_created", actor=actor, at=now,
                        data={"expires_at": out.expires_at.isoformat()})
    return out


async def seed_demo(settings: Settings, api_key: str) -> tuple[str, str]:
    """Local mode: the demo user and its API key (kept as they are if present), and a fresh
    pairing code. Returns (user id, code)."""
    now = utcnow()
    async with _transaction(settings) as conn:
        # another instance starting from the same data folder may be writing the same rows
        await conn.execute(insert_missing(conn, api_keys, **_api_key_row(api_key, "demo", INTEGRATOR_SCOPE)))
        await conn.execute(insert_missing(conn, users, user_id=DEMO_USER_ID, email="demo@example.com",
                                          display_name="Demo User", created_at=now, updated_at=now))
        out = await mint_pairing_code(conn, DEMO_USER_ID, max(settings.pairing_code_ttl_s,
                                                               DEMO_PAIRING_CODE_MIN_TTL_S), now)
    return DEMO_USER_ID, out.code


# --- accounts and erasure ---------------------------------------------------------------------
async def list_accounts(rt: Runtime, user_id: str) -> AccountsOut:
    async with reader(rt.engine) as conn:
        await _user_row(conn, user_id)
        rows = (await conn.execute(sa.select(links).where(links.c.user_id == user_id).order_by(links.c.id))).all()
    return AccountsOut(items=[AccountOut(
        plain_id=r.plain_id, status=r.state, unipile_account_id=r.unipile_account_id,
        date_last_cookie=r.date_last_cookie, auto_connect=r.auto_connect, hold_reason=r.hold_reason,
        last_error=r.last_error, checkpoint_type=r.checkpoint_type, next_attempt_at=r.next_attempt_at,
        created_at=r.created_at, linkedin=linkedin_of(r), location=location_out(r)) for r in rows])


def location_out(r) -> LocationOut:
    """A link row's location columns (migration 0013) as the API shows them."""
    return LocationOut(country=r.country, source=r.country_source)


def linkedin_of(r) -> LinkedInOut:
    """A link row's LinkedIn profile columns (migration 0011) as the API shows them."""
    return LinkedInOut(name=r.linkedin_name, public_identifier=r.linkedin_public_id, premium=r.linkedin_premium,
                       read_at=r.profile_read_at, member_check=r.member_check, member_seen=r.member_seen)


async def erase_user(rt: Runtime, user_id: str, actor: str, *, delete_in_unipile: bool) -> EraseOut:
    """Deletes the user's cookies, devices, links, emails, notifications and history, drops
    them from this instance's caches, and optionally deletes their Unipile accounts."""
    async with rt.engine.begin() as conn:
        await _user_row(conn, user_id)
        # The links first, in id order, as attempt answers and the last-seen flush lock theirs: an
        # erasure that deleted an incident before it locked its link deadlocked with an answer that
        # held the link and wrote the incident (PostgreSQL; SQLite's BEGIN IMMEDIATE serializes).
        link_rows = (await conn.execute(sa.select(links.c.id, links.c.unipile_account_id)
                                        .where(links.c.user_id == user_id).order_by(links.c.id)
                                        .with_for_update())).all()
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
