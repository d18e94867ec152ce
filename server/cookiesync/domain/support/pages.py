"""The support console's HTML pages under /support/ (server-rendered Jinja2, a little
plain JS for local times and confirmations, no build step)."""
from __future__ import annotations

import json
import logging
import re
import secrets
from datetime import datetime, timezone
from importlib import resources
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

import jinja2
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ValidationException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect
from litestar.types import ASGIApp, Receive, Scope, Send

from cookiesync.domain.reconnect.policy import State
from cookiesync.domain.support import actions, queries
from cookiesync.domain.support import staff as staff_mod
from cookiesync.domain.support.auth import CSRF_FIELD, LoginRequired, login_url, page_member, prelogin_cookie_name, \
    safe_next, secure_cookies, session_cookie_name
from cookiesync.domain.support.params import LinksAsked, ListAsked, TimelineBefore, bad_query_text, \
    list_dependencies
from cookiesync.domain.support.queries import BadQuery, ListQuery
from cookiesync.domain.support.staff import StaffMember
from cookiesync.http import client_ip, no_store
from cookiesync.runtime import RT, Runtime

log = logging.getLogger("cookiesync.support")
Member = NamedDependency[StaffMember]
Done = Annotated[str | None, QueryParameter(description="the action just done, for its flash line")]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; frame-src 'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}  # and Cache-Control: no-store on every answer, from the controller's middleware (http.no_store)


def _iso(dt: datetime | None) -> str:
    if dt is None:
        return ""
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = abs(seconds)
    if s < 90:
        return f"{int(s)} s"
    if s < 90 * 60:
        return f"{int(s // 60)} min"
    if s < 36 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def _as_dt(value) -> datetime | None:
    """An ISO timestamp kept in event data, as a datetime for `ts()` (None if it is not one)."""
    if isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _pretty(value) -> str:
    """JSON, indented, for a <pre> (autoescaping escapes it)."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


_env = jinja2.Environment(loader=jinja2.PackageLoader("cookiesync.domain.support", "templates"),
                          autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
_env.filters.update(iso=_iso, age=_age, pct=_pct, as_dt=_as_dt, pretty=_pretty)
_env.globals.update(states=[s.value for s in State], outbox_statuses=queries.outbox.STATUSES, urlencode=urlencode,
                    notification_statuses=queries.notifications.STATUSES,
                    notification_events=queries.notifications.EVENT_TYPES)


def render(template: str, status: int = 200, **ctx) -> Response:
    ctx.setdefault("member", None)
    ctx.setdefault("refresh", None)
    html = _env.get_template(template).render(**ctx)
    return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


def error_page(status: int, title: str, message: str, member: StaffMember | None = None) -> Response:
    return render("error.html", status=status, title=title, message=message, member=member, page_id="error")


def _login_redirect(request: Request, exc: LoginRequired) -> Response:
    return Redirect(login_url(exc.next_url), status_code=303)


def _bad_query(request: Request, exc: BadQuery | ValidationException) -> Response:
    # the signed-in member, if known by then (see _member), keeps the console's header on the page
    return error_page(400, "Bad request", bad_query_text(exc), getattr(request.state, "member", None))


def _form_query(app: ASGIApp) -> ASGIApp:
    """A filter form sends every field, one left empty (a select at "any") as `name=`, and what is
    typed may carry stray spaces: on the pages a blank value is no value and values are trimmed, so
    the typed parameters see what a JSON API caller would send (the API itself still refuses `status=`)."""
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            kept = [(k, v.strip()) for k, v in pairs if v.strip()]
            if kept != pairs:
                scope["query_string"] = urlencode(kept).encode()
        await app(scope, receive, send)

    return middleware


async def _member(request: Request, rt: RT) -> StaffMember:
    member = await page_member(request, rt)
    request.state.member = member  # for _bad_query: the query is parsed after the caller is known
    return member


def _signed_in(member: Member) -> StaffMember:
    return member


_STATIC: dict[str, tuple[bytes, str]] = {}


def _static(name: str) -> tuple[bytes, str] | None:
    if name not in _STATIC:
        kinds = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
        ext = name[name.rfind("."):] if "." in name else ""
        if ext not in kinds or "/" in name or name.startswith("."):
            return None
        try:
            data = resources.files("cookiesync.domain.support").joinpath("static", name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None
        _STATIC[name] = (data, kinds[ext])
    return _STATIC[name]


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _check_csrf(member: StaffMember, form: dict[str, str]) -> Response | None:
    if not staff_mod.csrf_ok(member.csrf_token, form.get(CSRF_FIELD)):
        return error_page(403, "Form expired", "The form's security token is missing or wrong. Go back, reload "
                                               "the page and try again.", member)
    return None


def _check_operator(member: StaffMember) -> Response | None:
    if not member.can_act:
        return error_page(403, "Not allowed", "Your role is viewer: you can read everything but not act. "
                                              "Ask an operator.", member)
    return None


def _list_page(page_id: str, title: str, member: StaffMember, q: ListQuery, page) -> Response:
    """The outbox and the notifications: one shape (list.html), their own columns and filters."""
    return render(f"{page_id}.html", title=title, page_id=page_id, member=member, page=page, q=q, args=q.args())


class SupportPages(Controller):
    path = "/support"
    include_in_schema = False
    dependencies = {"member": Provide(_member), **list_dependencies(_signed_in)}
    exception_handlers = {LoginRequired: _login_redirect, BadQuery: _bad_query, ValidationException: _bad_query}
    middleware = [_form_query, no_store]

    # --- sign in / out ---------------------------------------------------------
    def _login_page(self, rt: Runtime, request: Request, *, status: int = 200, error: str | None = None,
                    email: str = "", next_url: str = "/support/", headers: dict | None = None) -> Response:
        name = prelogin_cookie_name(rt)
        prelogin = request.cookies.get(name) or ""
        if not (20 <= len(prelogin) <= 100):
            prelogin = secrets.token_urlsafe(24)
        response = render("login.html", status=status, title="Sign in", page_id="login", error=error, email=email,
                          next_url=next_url, csrf=staff_mod.login_csrf_for(rt.settings.signing_secret, prelogin))
        response.set_cookie(Cookie(key=name, value=prelogin, path="/", max_age=3600, httponly=True,
                                   secure=secure_cookies(rt), samesite="strict"))
        for k, v in (headers or {}).items():
            response.headers[k] = v
        return response

    @get("/login")
    async def login_form(self, request: Request, rt: RT,
                         after: Annotated[str | None, QueryParameter(name="next")] = None) -> Response:
        next_url = safe_next(after)
        if await staff_mod.session_member(rt, request.cookies.get(session_cookie_name(rt))):
            return Redirect(next_url, status_code=303)
        return self._login_page(rt, request, next_url=next_url)

    @post("/login", status_code=303)
    async def login_submit(self, request: Request, rt: RT) -> Response:
        form = await _form(request)
        next_url = safe_next(form.get("next"))
        prelogin = request.cookies.get(prelogin_cookie_name(rt)) or ""
        expected = staff_mod.login_csrf_for(rt.settings.signing_secret, prelogin) if prelogin else ""
        if not staff_mod.csrf_ok(expected, form.get(CSRF_FIELD)):
            return error_page(403, "Sign-in form expired",
                              "The sign-in form's security token is missing or wrong (cookies must be enabled). "
                              "Reload the sign-in page and try again.")
        email = (form.get("email") or "").strip()[:320]
        ip = client_ip(request, rt.trusted_proxies)
        try:
            session_id, member = await staff_mod.login(rt, email, form.get("password") or "", ip,
                                                       request.headers.get("user-agent"))
        except staff_mod.LoginRefused as exc:
            if exc.retry_after is not None:
                log.warning("support login throttled (account from, or all of, ip %s)", ip)
                return self._login_page(rt, request, status=429, error=str(exc), email=email, next_url=next_url,
                                        headers={"Retry-After": str(int(exc.retry_after) + 1)})
            log.info("support login refused for ip %s", ip)
            return self._login_page(rt, request, status=401, error=str(exc), email=email, next_url=next_url)
        log.info("support login: %s (%s)", member.email, member.role)
        response = Redirect(next_url, status_code=303)
        response.set_cookie(Cookie(key=session_cookie_name(rt), value=session_id, path="/",
                                   max_age=int(staff_mod.POLICY.session_ttl.total_seconds()), httponly=True,
                                   secure=secure_cookies(rt), samesite="lax"))
        response.delete_cookie(prelogin_cookie_name(rt), path="/")
        return response

    @post("/logout", status_code=303)
    async def logout(self, request: Request, rt: RT, member: Member) -> Response:
        form = await _form(request)
        if (denied := _check_csrf(member, form)) is not None:
            return denied
        await staff_mod.logout(rt, member)
        response = Redirect("/support/login", status_code=303)
        response.delete_cookie(session_cookie_name(rt), path="/")
        return response

    @get("/static/{name:str}")
    async def static(self, name: FromPath[str]) -> Response:
        found = _static(name)
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        body, media_type = found
        return Response(body, media_type=media_type,
                        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})

    # --- pages -------------------------------------------------------------------
    @get("/")
    async def overview(self, rt: RT, member: Member) -> Response:
        data = await queries.overview.read(rt)
        peak = max([b.total for b in data.attempts_per_hour] + [1])
        return render("overview.html", title="Overview", page_id="overview", member=member, o=data, peak=peak,
                      settings=rt.settings)

    @get("/links")
    async def links(self, rt: RT, member: Member, link_filter: LinksAsked) -> Response:
        page = await queries.links.page(rt, link_filter)
        return render("links.html", title="Links", page_id="links", member=member, flt=link_filter, page=page,
                      args=link_filter.query_args(), cursor=link_filter.cursor,
                      stale_after=rt.settings.stale_cookie_s)

    @get("/links/{link_id:int}")
    async def link(self, link_id: FromPath[int], rt: RT, member: Member, before: TimelineBefore = None,
                   done: Done = None) -> Response:
        detail = await queries.links.detail(rt, link_id, before=before)
        if detail is None:
            return error_page(404, "No such link", f"There is no link {link_id}.", member)
        due = detail.link.next_attempt_at is not None and detail.link.next_attempt_at <= datetime.now(timezone.utc)
        # what the action just done said, read back from the history (never text from the URL)
        flash = note = None
        if done in actions.ALL_LINK_ACTIONS + ("revoke-device",):
            flash = done
            mine = next((ev for ev in detail.timeline if ev.actor == member.actor
                         and ev.kind in ("staff_action", "device_revoked")), None)
            note = mine.summary if mine else None
        return render("link.html", title=f"Link {link_id}", page_id="link", member=member, d=detail,
                      refresh=2 if (detail.attempt_in_flight or due) and before is None else None,
                      flash=flash, note=note, stale_after=rt.settings.stale_cookie_s)

    @post("/links/{link_id:int}/actions/{action:str}", status_code=303)
    async def link_action(self, request: Request, link_id: FromPath[int], action: FromPath[str], rt: RT,
                          member: Member) -> Response:
        form = await _form(request)
        if (denied := _check_csrf(member, form) or _check_operator(member)) is not None:
            return denied
        if action not in actions.ALL_LINK_ACTIONS:
            return error_page(404, "Unknown action", f"There is no action {action!r}.", member)
        try:
            out = await actions.link_action(rt, link_id, action, member.actor, (form.get("reason") or "").strip())
        except actions.NotFound:
            return error_page(404, "No such link", f"There is no link {link_id}.", member)
        log.info("support action %s on link %s by %s: %s", action, link_id, member.actor, out.note)
        return Redirect(f"/support/links/{link_id}?done={action}", status_code=303)

    @post("/devices/{device_id:str}/revoke", status_code=303)
    async def revoke_device(self, request: Request, device_id: FromPath[str], rt: RT, member: Member) -> Response:
        form = await _form(request)
        if (denied := _check_csrf(member, form) or _check_operator(member)) is not None:
            return denied
        try:
            out = await actions.revoke(rt, device_id, member.actor)
        except actions.NotFound:
            return error_page(404, "No such device", f"There is no device {device_id}.", member)
        back = form.get("back") or ""
        target = back if re.fullmatch(r"/support/links/\d{1,12}", back) else "/support/links"
        log.info("support: device %s revoked by %s (%s)", device_id, member.actor, out.note)
        return Redirect(f"{target}?done=revoke-device", status_code=303)

    @get("/outbox")
    async def outbox(self, rt: RT, member: Member, outbox_query: ListAsked) -> Response:
        return _list_page("outbox", "Outbox", member, outbox_query, await queries.outbox.page(rt, outbox_query))

    @get("/outbox/{outbox_id:int}")
    async def email(self, outbox_id: FromPath[int], rt: RT, member: Member, done: Done = None) -> Response:
        detail = await queries.outbox.detail(rt, outbox_id)
        if detail is None:
            return error_page(404, "No such email", f"There is no email {outbox_id}.", member)
        return render("email.html", title=f"Email {outbox_id}", page_id="email", member=member, e=detail,
                      flash="resend" if done == "resend" else None, note="this is the copy, queued for delivery")

    @post("/outbox/{outbox_id:int}/resend", status_code=303)
    async def resend(self, request: Request, outbox_id: FromPath[int], rt: RT, member: Member) -> Response:
        form = await _form(request)
        if (denied := _check_csrf(member, form) or _check_operator(member)) is not None:
            return denied
        try:
            out = await actions.resend_email(rt, outbox_id, member.actor, (form.get("reason") or "").strip())
        except actions.NotFound:
            return error_page(404, "No such email", f"There is no email {outbox_id}.", member)
        log.info("support: email %s resent as %s by %s", outbox_id, out.outbox_id, member.actor)
        return Redirect(f"/support/outbox/{out.outbox_id}?done=resend", status_code=303)

    @get("/notifications")
    async def notifications(self, rt: RT, member: Member, notification_query: ListAsked) -> Response:
        page = await queries.notifications.page(rt, notification_query)
        return _list_page("notifications", "Notifications", member, notification_query, page)

    @get("/notifications/{notification_id:int}")
    async def notification(self, notification_id: FromPath[int], rt: RT, member: Member) -> Response:
        detail = await queries.notifications.detail(rt, notification_id)
        if detail is None:
            return error_page(404, "No such notification", f"There is no notification {notification_id}.", member)
        return render("notification.html", title=f"Notification {notification_id}", page_id="notification",
                      member=member, n=detail)
