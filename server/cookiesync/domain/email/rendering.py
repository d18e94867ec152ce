"""What end users read, in the integrator's name: the brand (product name, sender, support contact,
logo, app link) and the email templates, built in or the operator's.

The operator's folder (`COOKIESYNC_EMAIL_TEMPLATES_DIR`) replaces the built-in templates file by file
(a Jinja2 `ChoiceLoader`: the folder first, the package second, so an override may also `{% extends %}`
a built-in one). Every template renders under `StrictUndefined`, and each override is rendered once
when `EmailTemplates` is made, at start, with sample values that take every branch we know of (both
kinds, stale or not, every optional value set or empty): a misspelled variable or a syntax error is a
configuration error naming the file, not an email that fails at send time. The templates are loaded
once and never reloaded, so what was checked is what is sent. `.html` templates are autoescaped.
"""
from __future__ import annotations

import email.utils
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jinja2

from cookiesync.domain.reconnect.policy import Email
from cookiesync.settings import PREFIX, Settings, SettingsError

# Said where the product's name goes while COOKIESYNC_PRODUCT_NAME is unset (local mode; production
# with SMTP refuses to start without it): true of any integrator, and it reads in every sentence.
NEUTRAL_PRODUCT = "the app you connected LinkedIn to"

SUBJECT, TEXT, HTML = "subject.txt", "reconnect.txt", "reconnect.html"
TEMPLATES = (SUBJECT, TEXT, HTML)

SUBJECTS = {
    Email.GAVE_UP: "Your LinkedIn account needs to be reconnected",
    Email.CHECKPOINT: "LinkedIn asks you to confirm it's you",
}
WHAT_HAPPENED = {
    Email.GAVE_UP: "LinkedIn ended the session we use, and the newest cookie from your browser was refused "
                   "each time we tried over the last hours.",
    Email.CHECKPOINT: "LinkedIn asked for a security check (a code or a confirmation in the LinkedIn app) "
                      "that only you can answer.",
}


@dataclass(frozen=True)
class Brand:
    """The integrator as its users know it; "" for what is not set."""
    product_name: str     # NEUTRAL_PRODUCT when unset
    named: bool           # COOKIESYNC_PRODUCT_NAME is set (a page title may carry it)
    support_contact: str  # as shown: the address or the URL
    support_url: str      # mailto:address, or the URL
    logo_url: str
    app_url: str
    sender: str           # the From header

    @classmethod
    def of(cls, s: Settings) -> "Brand":
        name = s.product_name.strip()
        support = s.support_contact.strip()
        display, addr = email.utils.parseaddr(s.email_from)
        return cls(
            product_name=name or NEUTRAL_PRODUCT, named=bool(name), support_contact=support,
            support_url=support if "://" in support or not support else f"mailto:{support}",
            logo_url=s.logo_url, app_url=s.app_url,
            # an address without a name is sent as the product's (formataddr quotes and encodes it)
            sender=s.email_from if display or not name else email.utils.formataddr((name, addr)),
        )

    def variables(self) -> dict[str, object]:
        return dict(product_name=self.product_name, support_contact=self.support_contact,
                    support_url=self.support_url, logo_url=self.logo_url, app_url=self.app_url)


# Every variable a template gets, with what it holds: README (Emails to your users) lists the same.
VARIABLES = {
    "kind": "`gave_up` (we stopped retrying) or `checkpoint` (LinkedIn asks the user to confirm)",
    "subject": "the built-in subject for the kind (subject.txt is `{{ subject }}`)",
    "product_name": "COOKIESYNC_PRODUCT_NAME, or \"" + NEUTRAL_PRODUCT + "\" while it is unset",
    "support_contact": "COOKIESYNC_SUPPORT_CONTACT as set (an address or a URL), or \"\"",
    "support_url": "the same as a link: `mailto:…` or the URL, or \"\"",
    "logo_url": "COOKIESYNC_LOGO_URL, or \"\"",
    "app_url": "COOKIESYNC_APP_URL, or \"\"",
    "name": "the user's display name, or none",
    "identity": "which LinkedIn account: its member's name as LinkedIn shows it (e.g. `Jane Doe`), or "
                "`LinkedIn member 1234` while the name is not known",
    "linkedin_name": "the LinkedIn member's name as read from Unipile, or none",
    "linkedin_member": "the member's number, as `LinkedIn member 1234`",
    "reconnect_url": "the reconnect link; it must appear in reconnect.txt and reconnect.html",
    "what_happened": "one sentence on what LinkedIn did, for the kind",
    "link_days": "days the reconnect link works (a number)",
    "stale": "true when the browser extension has not synced for COOKIESYNC_STALE_COOKIE_S",
    "last_cookie": "when it last did, `YYYY-MM-DD HH:MM UTC`, or `never`",
    "signed_out": "true when the browser extension reported the user signed out of LinkedIn in its browser "
                  "(the newest cookie is gone there)",
}

_SAMPLE_URL = "https://sample.invalid/reconnect/[reconnect-token]"  # as outbox.reconnect_url makes it


def _samples() -> list[dict[str, object]]:
    """Values for the start-up render: each kind, with every optional value set and stale, then with
    none set and not stale, so both sides of the branches we know of are rendered."""
    out = []
    for kind in Email:
        for full in (True, False):
            out.append(dict(
                kind=kind.value, subject=SUBJECTS[kind], what_happened=WHAT_HAPPENED[kind],
                product_name="Sample Product" if full else NEUTRAL_PRODUCT,
                support_contact="help@sample.invalid" if full else "",
                support_url="mailto:help@sample.invalid" if full else "",
                logo_url="https://sample.invalid/logo.png" if full else "",
                app_url="https://sample.invalid/app" if full else "",
                name="Sample User" if full else None,
                identity="Sample Member" if full else "LinkedIn member 1234",
                linkedin_name="Sample Member" if full else None, linkedin_member="LinkedIn member 1234",
                reconnect_url=_SAMPLE_URL, link_days=7, stale=full,
                last_cookie="2026-01-02 03:04 UTC" if full else "never", signed_out=full))
    assert all(set(s) == set(VARIABLES) for s in out)
    return out


class EmailTemplates:
    """The brand and the three templates, checked and loaded once. Raises SettingsError (one line,
    naming the file) for an override that names no template, does not parse or does not render."""

    def __init__(self, settings: Settings) -> None:
        self.brand = Brand.of(settings)
        folder = Path(settings.email_templates_dir) if settings.email_templates_dir else None
        loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader("cookiesync.domain.email", "templates")]
        if folder is not None:
            loaders.insert(0, jinja2.FileSystemLoader(folder))
        env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=jinja2.select_autoescape(["html"]),
                                 trim_blocks=True, undefined=jinja2.StrictUndefined, auto_reload=False)
        if folder is not None:
            for extra in sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")):
                if extra not in TEMPLATES:
                    raise _error(folder / extra, None, f"names no template (they are {', '.join(TEMPLATES)})")
        self._templates: dict[str, jinja2.Template] = {}
        for name in TEMPLATES:
            try:
                self._templates[name] = env.get_template(name)
            except jinja2.TemplateSyntaxError as exc:
                raise _error(Path(exc.filename or name), exc.lineno, exc.message or "syntax error") from None
        if folder is not None:
            for name in TEMPLATES:
                if (folder / name).is_file():
                    self._check(name, folder / name)

    def _check(self, name: str, path: Path) -> None:
        template = self._templates[name]
        for ctx in _samples():
            try:
                out = template.render(ctx)
            except Exception as exc:
                raise _error(path, _line_in(exc, template.filename), f"{type(exc).__name__}: {exc}") from None
            if name == SUBJECT and not out.strip():
                raise _error(path, None, f"renders an empty subject (kind {ctx['kind']})")
            if name != SUBJECT and _SAMPLE_URL not in out:
                raise _error(path, None, "does not show {{ reconnect_url }} as it is: the email would have "
                                         "no working reconnect link")

    def render(self, kind: Email, *, linkedin_name: str | None, plain_id: str, name: str | None,
               reconnect_url: str, link_ttl_s: float, stale: bool,
               last_cookie: datetime | None, signed_out: bool = False) -> tuple[str, str, str]:
        """Subject (one line), plain-text body and HTML body. `linkedin_name` is the member's
        name as read from Unipile (domain/profile), None while it is not known."""
        member = f"LinkedIn member {plain_id}"
        ctx = self.brand.variables() | dict(
            kind=kind.value, subject=SUBJECTS[kind], what_happened=WHAT_HAPPENED[kind],
            name=name, identity=linkedin_name or member, linkedin_name=linkedin_name or None,
            linkedin_member=member, reconnect_url=reconnect_url,
            link_days=max(1, int(link_ttl_s // 86400)), stale=stale,
            last_cookie=last_cookie.strftime("%Y-%m-%d %H:%M UTC") if last_cookie else "never",
            signed_out=signed_out,
        )
        subject = " ".join(self._templates[SUBJECT].render(ctx).split())  # a header is one line
        return subject, self._templates[TEXT].render(ctx), self._templates[HTML].render(ctx)


def _line_in(exc: BaseException, filename: str | None) -> int | None:
    """The template's line the error was raised on: Jinja2 rewrites the traceback to show it."""
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if filename and f.filename == filename]
    return lines[-1] if lines else None


def _error(path: Path, line: int | None, message: str) -> SettingsError:
    where = f"{path}:{line}" if line else str(path)
    return SettingsError(f"{PREFIX}EMAIL_TEMPLATES_DIR: {where}: {' '.join(message.split())}")
