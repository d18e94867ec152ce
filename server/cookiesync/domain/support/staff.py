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
- Throttling: failures are counted per email and per client IP in the database
  (`login_failures`), so every instance sees them. Each failure slows the answer
  a little; past the limit the key is locked for a while and even the right
  password is refused until then.
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
from cookiesync.db.schema import login_failures, staff, staff_sessions, utcnow

ROLES = ("viewer", "operator")
_hasher = PasswordHasher()
# verified against when the email is unknown, so both cases take as long
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass
class LoginPolicy:
    """Tunable in one place (tests shrink nothing here: the defaults are fast enough)."""

    email_limit: int = 5             # failures per email within the window...
    ip_limit: int = 20               # ...and per client IP
    window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)
    delay_per_failure_s: float = 0.05
    max_delay_s: float = 1.0
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
def _keys(email: str, ip: str | None) -> list[tuple[str, int]]:
    keys = [(f"email:{normalize_email(email)[:320]}", POLICY.email_limit)]
    if ip:
        keys.append((f"ip:{ip}", POLICY.ip_limit))
    return keys


async def locked_for(rt, email: str, ip: str | None) -> float | None:
    """Seconds until this email/IP may try again, or None."""
    now = utcnow()
    names = [k for k, _ in _keys(email, ip)]
    async with reader(rt.engine) as conn:
        rows = (await conn.execute(sa.select(login_failures.c.locked_until)
                                   .where(login_failures.c.key.in_(names)))).scalars().all()
    waits = [(until - now).total_seconds() for until in rows if until is not None and until > now]
    return max(waits) if waits else None


async def record_failure(rt, email: str, ip: str | None) -> int:
    """Count one failure against the email and the IP; returns the highest count."""
    now = utcnow()
    highest = 0
    for key, limit in _keys(email, ip):
        for _try in range(3):
            try:
                async with rt.engine.begin() as conn:
                    row = (await conn.execute(sa.select(login_failures).where(login_failures.c.key == key)
                                            .with_for_update())).first()  # PostgreSQL: no lost update
                    if row is None:
                        await conn.execute(login_failures.insert().values(key=key, failures=1, window_start=now))
                        count = 1
                    else:
                        expired = row.window_start + POLICY.window < now and (
                            row.locked_until is None or row.locked_until < now)
                        count = 1 if expired else row.failures + 1
                        values = {"failures": count}
                        if expired:
                            values.update(window_start=now, locked_until=None)
                        if count >= limit:
                            values["locked_until"] = now + POLICY.lockout
                        await conn.execute(login_failures.update().where(login_failures.c.key == key).values(**values))
                break
            except IntegrityError:  # two first failures raced on the insert
                continue
        else:
            count = limit
        highest = max(highest, count)
    # keep the table small: forget windows long over
    if secrets.randbelow(20) == 0:
        cutoff = now - POLICY.window - POLICY.lockout
        async with rt.engine.begin() as conn:
            await conn.execute(login_failures.delete().where(
                login_failures.c.window_start < cutoff,
                sa.or_(login_failures.c.locked_until.is_(None), login_failures.c.locked_until < now)))
    return highest


async def clear_failures(rt, email: str) -> None:
    # only the email's counter: a success must not let one address reset its IP's count
    async with rt.engine.begin() as conn:
        await conn.execute(login_failures.delete().where(login_failures.c.key == _keys(email, None)[0][0]))


# --- login, sessions --------------------------------------------------------
class LoginRefused(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def login(rt, email: str, password: str, ip: str | None, user_agent: str | None) -> tuple[str, StaffMember]:
    """Check the password and open a session; returns (cookie value, member).
    Raises LoginRefused with a message safe to show (never which part was wrong)."""
    email = normalize_email(email)
    wait = await locked_for(rt, email, ip)
    if wait is not None:
        raise LoginRefused("too many failed sign-ins: try again later", retry_after=wait)
    async with reader(rt.engine) as conn:
        row = (await conn.execute(sa.select(staff).where(staff.c.email == email))).first()
    good = await asyncio.to_thread(_verify, row.password_hash if row else _DUMMY_HASH, password[:1024])
    if not good or row is None or row.disabled_at is not None:
        count = await record_failure(rt, email, ip)
        await asyncio.sleep(min(POLICY.max_delay_s, POLICY.delay_per_failure_s * count))
        raise LoginRefused("wrong email or password, or the account is disabled")
    await clear_failures(rt, email)
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
