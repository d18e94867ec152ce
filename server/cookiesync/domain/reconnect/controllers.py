"""The user's side of a give-up email: the reconnect link and its landing pages."""
from __future__ import annotations

import logging
from datetime import timedelta

import jinja2
from litestar import Controller, Response, get
from litestar.response import Redirect

from cookiesync.db.engine import reader
from cookiesync.domain.reconnect.services import add_event, load_link
from cookiesync.runtime import RT, Runtime
from cookiesync.unipile.client import UnipileError

log = logging.getLogger("cookiesync.reconnect")
_env = jinja2.Environment(loader=jinja2.PackageLoader("cookiesync.domain.reconnect", "templates"), autoescape=True)
HOSTED_LINK_TTL = timedelta(minutes=30)


def page(rt: Runtime, status: int, *, title: str, paragraphs: list[str], tone: str = "", page_id: str = "page",
         button_url: str | None = None, button_label: str = "") -> Response:
    """A landing page in the integrator's name (rt.emails.brand: the same as the emails)."""
    brand = rt.emails.brand
    html = _env.get_template("page.html").render(title=title, paragraphs=paragraphs, tone=tone, page_id=page_id,
                                                  button_url=button_url, button_label=button_label,
                                                  named=brand.named, **brand.variables())
    return Response(html, status_code=status, media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _invalid(rt: Runtime) -> Response:
    return page(rt, 410, title="This reconnect link no longer works", tone="bad", page_id="link-invalid", paragraphs=[
        "The link has expired or is not complete. Links in our emails work for a limited time.",
        "Open the newest email we sent you, or sign in to LinkedIn in the browser where the browser extension "
        f"of {rt.emails.brand.product_name} is installed: it reconnects your account by itself.",
    ])


class ReconnectController(Controller):
    path = "/reconnect"
    include_in_schema = False

    @get("/{token:str}")
    async def start(self, token: str, rt: RT) -> Response:
        claims = rt.reconnect_signer.verify(token)
        if claims is None:
            return _invalid(rt)
        async with reader(rt.engine) as conn:
            row = await load_link(conn, int(claims.get("l", 0)))
        if row is None:
            return _invalid(rt)
        if row.state == "connected":
            return page(rt, 200, title="LinkedIn is already connected", tone="ok", page_id="already-connected",
                        paragraphs=["Nothing to do: your LinkedIn account is connected again."])
        if row.unipile_account_id is None or row.state == "disabled":
            return page(rt, 409, title="This account can't be reconnected from here", tone="bad",
                        page_id="cannot-reconnect", paragraphs=[
                            "Your LinkedIn account is not set up for reconnection any more. "
                            f"Please contact the support of {rt.emails.brand.product_name}."])
        base = rt.settings.base_url
        try:
            url = await rt.unipile.hosted_reconnect_link(
                row.unipile_account_id, name=f"link-{row.id}",
                notify_url=f"{base}/v1/webhooks/unipile/hosted-auth?secret={rt.settings.hosted_auth_secret}",
                success_url=f"{base}/reconnect/{token}/done?result=success",
                failure_url=f"{base}/reconnect/{token}/done?result=failure",
                ttl=HOSTED_LINK_TTL,
            )
        except UnipileError as exc:
            log.warning("hosted reconnect link for link %s failed: %s", row.id, exc.failure)
            return page(rt, 503, title="We couldn't open the reconnect page", tone="bad", page_id="hosted-failed",
                        paragraphs=["The service that reconnects LinkedIn did not answer. Please try the button "
                                    "again in a few minutes."], button_url=f"{base}/reconnect/{token}",
                        button_label="Try again")
        async with rt.engine.begin() as conn:
            await add_event(conn, user_id=row.user_id, link_id=row.id, kind="reconnect_link_opened",
                            data={"incident_id": claims.get("i")})
        return Redirect(url, status_code=302)

    @get("/{token:str}/done")
    async def done(self, token: str, rt: RT, result: str = "success") -> Response:
        claims = rt.reconnect_signer.verify(token)
        if claims is None:
            return _invalid(rt)
        async with reader(rt.engine) as conn:
            row = await load_link(conn, int(claims.get("l", 0)))
        if row is not None and row.state == "connected":
            return page(rt, 200, title="LinkedIn is connected again", tone="ok", page_id="reconnected",
                        paragraphs=["Thank you: your LinkedIn account is connected. You can close this page."])
        if result == "success":
            return page(rt, 202, title="Almost there", page_id="pending", paragraphs=[
                "LinkedIn accepted the sign-in; we are waiting for the confirmation. Reload this page in a minute."])
        return page(rt, 200, title="LinkedIn is not connected yet", tone="bad", page_id="not-reconnected", paragraphs=[
            "The sign-in did not complete. Please try again, and answer any security check LinkedIn shows you."],
            button_url=f"{rt.settings.base_url}/reconnect/{token}", button_label="Try again")


