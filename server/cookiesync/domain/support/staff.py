"""Support staff: accounts, password checks, server-side sessions, CSRF tokens,
login throttling.

- Passwords: argon2id (argon2-cffi defaults), verified off the event loop,
  re-hashed on login when the parameters change.
- Sessions: a random cookie value; only its SHA-256 is stored (table
  `staff_sessions`, with an absolute expiry and an idle timeout), so they survive
  restarts, work on every instance, and a database leak yields no usable session.
- CSRF: one token per session, HMAC(signing secret, session id); sent in a hidden
  form field (or the `X-CSRF-Token` header for the JSON API) and compared in
  constant time. The login form, before any session exists, is protected the same
  way with a short-lived pre-login cookie.
- Throttling (table `throttles`, domain/throttle): every sign-in reserves an attempt
  before its password is checked, in the database, so concurrent guesses and other
  instances all count. Two keys:
  - per (account, address), a progressive delay: 5 attempts at once, then each next
    one waits 2, 4, 8, ... seconds, at most 15 minutes. It slows a guesser without
    locking the account: the owner signing in from another address is not delayed,
    nor is another account from the same address. A success resets the pair.
  - per address, a ceiling across all accounts (20 failures in 15 minutes), for a
    guesser who sprays many accounts from one address.
  A distributed guesser gets a few tries per address; what stops it is the password
  (10+ characters, argon2id). `cookiesync staff unlock <email>` clears an account's
  delays at once.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import IntegrityError

from cookiesync.db.engine import reader
from cookiesync.db.schema import staff, staff_sessions, utcnow
from cookiesync.domain.throttle import policy as throttle_policy
from cookiesync.domain.throttle import services as throttle

ROLES = ("viewer", "operator")
_hasher = PasswordHasher()
# verified against when the email is unknown, so both cases take as long
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass
class LoginPolicy:
    """Tunable in one place (tests shrink nothing here: the defaults are fast enough)."""

    # per (account, address): 5 attempts at once, then 2, 4, 8, ... seconds between tries, at most
    # 15 minutes, forgotten a day after the last (see domain/throttle/policy.py and the README)
    per_account_address: throttle_policy.Backoff = throttle_policy.Backoff(
        free=5, max_delay=timedelta(minutes=15), forget_after=timedelta(hours=24))
    ip_limit: int = 20               # failed sign-ins per client address, whatever the account...
    ip_window: timedelta = timedelta(minutes=15)  # ...in this window
    session_ttl: timedelta = timedelta(hours=12)
    idle_timeout: timedelta = timedelta(hours=2)
    touch_every: timedelta = timedelta(minutes=1)


POLICY = LoginPolicy()


@dataclass(frozen=True)
class StaffMember:
    id: int
    email: str
    role: str
    session_hash: str | None = None
    csrf_token: str = ""

    @property
    def can_act(self) -> bool:
        return self.role == "operator"

    @property
    def actor(self) -> str:
        return f"staff:{self.email}"


def normalize_email(email: str) -> str:
    return email.strip().lower()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_for(secret: str, session_id_hash: str) -> str:
    """The session's CSRF token; derived, so nothing more to store or to leak."""
    return hmac.new(secret.encode(), b"csrf:" + session_id_hash.encode(), hashlib.sha256).hexdigest()


def login_csrf_for(secret: str, prelogin: str) -> str:
    return hmac.new(secret.encode(), b"login-csrf:" + prelogin.encode(), hashlib.sha256).hexdigest()


def csrf_ok(expected: str, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


# --- CLI ------------------------------------------------------------------
async def add_staff(settings, email: str, role: str, password: str, *, migrate_first: bool = True) -> None:
    """Create, or update (password, role, re-enable) a staff member. Migrates first, so it
    works on a fresh database."""
    from cookiesync.db.engine import make_engine, migrate

    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    email = normalize_email(email)
    if "@" not in email:
        raise ValueError("staff email must be an email address")
    if migrate_first:  # `cookiesync serve` has just migrated; the CLI command may run on a fresh database
        await asyncio.to_thread(migrate, settings.database)
    pw_hash = await asyncio.to_thread(hash_password, password)
    engine = make_engine(settings.database)
    now = utcnow()
    try:
        for last_try in (False, True):
            try:
                async with engine.begin() as conn:
                    await _add_or_update(conn, email, role, pw_hash, now)
                return
            except IntegrityError:  # added meanwhile (two instances starting at once): update it
                if last_try:
                    raise
    finally:
        await engine.dispose()


async def _add_or_update(conn, email: str, role: str, pw_hash: str, now) -> None:
    row = (await conn.execute(sa.select(staff.c.id).where(staff.c.email == email))).first()
    if row is None:
        await conn.execute(staff.insert().values(email=email, role=role, password_hash=pw_hash,
                                                 created_at=now, updated_at=now))
        return
    await conn.execute(staff.update().where(staff.c.id == row.id).values(
        role=role, password_hash=pw_hash, disabled_at=None, updated_at=now))
    # a new password ends the sessions opened with the old one
    await conn.execute(staff_sessions.delete().where(staff_sessions.c.staff_id == row.id))


async def disable_staff(settings, email: str) -> int:
    """Disable the account and end its sessions at once. Returns how many accounts changed."""
    from cookiesync.db.engine import make_engine

    engine = make_engine(settings.database)
    try:
        async with engine.begin() as conn:
            return await disable_staff_conn(conn, email)
    finally:
        await engine.dispose()


async def disable_staff_conn(conn, email: str) -> int:
    email = normalize_email(email)
    ids = (await conn.execute(sa.select(staff.c.id).where(staff.c.email == email))).scalars().all()
    if not ids:
        return 0
    n = (await conn.execute(staff.update().where(staff.c.id.in_(ids), staff.c.disabled_at.is_(None))
                            .values(disabled_at=utcnow(), updated_at=utcnow()))).rowcount
    await conn.execute(staff_sessions.delete().where(staff_sessions.c.staff_id.in_(ids)))
    return n


# --- throttling -------------------------------------------------------------
def _account_key(email: str, ip: str | None) -> str:
    return f"login:{email[:320]}|{ip or 'unknown'}"


def _address_key(ip: str | None) -> str:
    return f"login-from:{ip or 'unknown'}"


async def unlock_staff(settings, email: str) -> int:
    """Clear the sign-in delays of one account, from every address (`cookiesync staff unlock`).
    Returns how many (account, address) rows went."""
    from cookiesync.db.engine import make_engine

    engine = make_engine(settings.database)
    try:
        async with engine.begin() as conn:
            return await throttle.forget_subject(conn, normalize_email(email))
    finally:
        await engine.dispose()


# --- login, sessions --------------------------------------------------------
class LoginRefused(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def login(rt, email: str, password: str, ip: str | None, user_agent: str | None) -> tuple[str, StaffMember]:
    """Check the password and open a session; returns (cookie value, member).
    Raises LoginRefused with a message safe to show (never which part was wrong)."""
    email = normalize_email(email)
    account_key, now = _account_key(email, ip), utcnow()
    backoff = POLICY.per_account_address
    # A pair already waiting costs its address nothing more (a read): a guesser on one account
    # cannot use up the address's ceiling and keep the address's other staff out.
    wait = await throttle.wait_for(rt.engine, account_key, backoff, now)
    try:
        if wait is not None:
            raise throttle.Throttled(wait)
        # both reserved before the password is checked: concurrent guesses cannot all be checked
        address_slot = await throttle.reserve(rt.engine, _address_key(ip),
                                              throttle_policy.Window(POLICY.ip_limit, POLICY.ip_window), now=now)
        try:
            await throttle.reserve(rt.engine, account_key, backoff, subject=email, now=now)
        except throttle.Throttled:
            await throttle.release(rt.engine, address_slot)
            raise
    except throttle.Throttled as exc:
        raise LoginRefused("too many failed sign-ins: try again later", retry_after=exc.retry_after_s) from None
    async with reader(rt.engine) as conn:
        row = (await conn.execute(sa.select(staff).where(staff.c.email == email))).first()
    good = await asyncio.to_thread(_verify, row.password_hash if row else _DUMMY_HASH, password[:1024])
    if not good or row is None or row.disabled_at is not None:
        raise LoginRefused("wrong email or password, or the account is disabled")  # both attempts stay counted
    # the owner got in: their delay from this address ends, and a success does not count to its ceiling
    await throttle.forget(rt.engine, account_key)
    await throttle.release(rt.engine, address_slot)
    new_hash = None
    if _hasher.check_needs_rehash(row.password_hash):
        new_hash = await asyncio.to_thread(hash_password, password)
    session_id = secrets.token_urlsafe(32)
    id_hash = session_hash(session_id)
    now = utcnow()
    async with rt.engine.begin() as conn:
        await conn.execute(staff_sessions.insert().values(
            id_hash=id_hash, staff_id=row.id, created_at=now, expires_at=now + POLICY.session_ttl,
            last_seen_at=now, ip=ip, user_agent=(user_agent or "")[:300]))
        values = {"last_login_at": now}
        if new_hash:
            values["password_hash"] = new_hash
        await conn.execute(staff.update().where(staff.c.id == row.id).values(**values))
        # expired sessions of anyone go away here, off the hot path
        await conn.execute(staff_sessions.delete().where(staff_sessions.c.expires_at < now))
    return session_id, StaffMember(row.id, row.email, row.role, id_hash, csrf_for(rt.settings.signing_secret, id_hash))


async def session_member(rt, session_id: str | None) -> StaffMember | None:
    """The staff member behind a session cookie, if the session is live and the account enabled."""
    if not session_id or len(session_id) > 200:
        return None
    id_hash = session_hash(session_id)
    now = utcnow()
    async with reader(rt.engine) as conn:
        row = (await conn.execute(
            sa.select(staff.c.id, staff.c.email, staff.c.role, staff_sessions.c.last_seen_at,
                      staff_sessions.c.expires_at)
            .select_from(staff_sessions.join(staff, staff.c.id == staff_sessions.c.staff_id))
            .where(staff_sessions.c.id_hash == id_hash, staff.c.disabled_at.is_(None))
        )).first()
    if row is None or row.expires_at <= now or row.last_seen_at + POLICY.idle_timeout <= now:
        return None
    if now - row.last_seen_at >= POLICY.touch_every:
        async with rt.engine.begin() as conn:
            await conn.execute(staff_sessions.update().where(staff_sessions.c.id_hash == id_hash)
                               .values(last_seen_at=now))
    return StaffMember(row.id, row.email, row.role, id_hash, csrf_for(rt.settings.signing_secret, id_hash))


async def logout(rt, member: StaffMember) -> None:
    if member.session_hash:
        async with rt.engine.begin() as conn:
            await conn.execute(staff_sessions.delete().where(staff_sessions.c.id_hash == member.session_hash))
