"""Who is asking, for the console's pages and its JSON API.

Pages: the staff session cookie only (anonymous → redirect to the login page).
JSON API: the same session cookie (POSTs also need the session's CSRF token in
`X-CSRF-Token`), or an integrator API key (Bearer) whose scopes include
"support" (read and act) or "support:read" (read only).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

import sqlalchemy as sa
from litestar import Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from cookiesync.db.engine import reader
from cookiesync.db.schema import api_keys
from cookiesync.domain.support import staff as staff_mod
from cookiesync.http import bearer_token
from cookiesync.runtime import RT, Runtime
from cookiesync.security import hash_token
from cookiesync.validation import one_value_each

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


def session_cookie_name(rt: Runtime) -> str:
    return session_cookie_name_for(rt.settings.mode)


def session_cookie_name_for(mode: str) -> str:
    # __Host- makes the browser insist on Secure, Path=/ and no Domain
    return "__Host-cookiesync_staff" if mode == "production" else "cookiesync_staff"


def prelogin_cookie_name(rt: Runtime) -> str:
    return "__Host-cookiesync_login" if rt.settings.mode == "production" else "cookiesync_login"


def secure_cookies(rt: Runtime) -> bool:
    return rt.settings.mode == "production"


class LoginRequired(Exception):
    """Raised by the page dependency; the controller turns it into a redirect to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__("login required")
        self.next_url = next_url


def safe_next(target: str | None) -> str:
    """Only ever redirect into the console itself."""
    if target and target.startswith("/support") and not target.startswith("//") and "\\" not in target \
            and not target.startswith("/support/login"):
        return target
    return "/support/"


def login_url(next_url: str) -> str:
    return "/support/login?next=" + quote(next_url, safe="/")


async def page_member(request: Request, rt: RT) -> staff_mod.StaffMember:
    member = await staff_mod.session_member(rt, request.cookies.get(session_cookie_name(rt)))
    if member is None:
        path = request.url.path
        query = request.url.query
        raise LoginRequired(path + ("?" + query if query and request.method == "GET" else ""))
    return member


@dataclass(frozen=True)
class Principal:
    actor: str
    role: str
    kind: str                 # staff | apikey
    csrf_token: str | None = None

    @property
    def can_act(self) -> bool:
        return self.role == "operator"


def _support_role(scopes: str) -> str | None:
    names = set(filter(None, re.split(r"[\s,]+", scopes or "")))
    if "support" in names:
        return "operator"
    if "support:read" in names:
        return "viewer"
    return None


async def api_principal(request: Request, rt: RT) -> Principal:
    if request.headers.get("authorization"):
        token_hash = hash_token(bearer_token(request))
        async with reader(rt.engine) as conn:
            row = (await conn.execute(sa.select(api_keys.c.name, api_keys.c.scopes).where(
                api_keys.c.key_hash == token_hash, api_keys.c.revoked_at.is_(None)))).first()
        if row is None:
            raise NotAuthorizedException(detail="unknown or revoked API key")
        role = _support_role(row.scopes)
        if role is None:
            raise PermissionDeniedException(detail="this API key lacks the 'support' scope")
        one_value_each(request)
        return Principal(actor=f"apikey:{row.name}", role=role, kind="apikey")
    member = await staff_mod.session_member(rt, request.cookies.get(session_cookie_name(rt)))
    if member is None:
        raise NotAuthorizedException(
            detail="sign in at /support/login (session cookie) or send an API key with the 'support' scope")
    one_value_each(request)
    return Principal(actor=member.actor, role=member.role, kind="staff", csrf_token=member.csrf_token)


def require_act(principal: Principal, request: Request) -> None:
    """For every state-changing API call: CSRF (session auth) first, then the role."""
    if principal.kind == "staff" and not staff_mod.csrf_ok(principal.csrf_token or "",
                                                           request.headers.get(CSRF_HEADER)):
        raise PermissionDeniedException(detail="missing or wrong X-CSRF-Token header (GET /v1/support/me gives it)")
    if not principal.can_act:
        raise PermissionDeniedException(detail="viewers can read but not act: an operator role is needed")
