"""Wire shapes of the integrator API."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from cookiesync.validation import REFUSED_CHARS, TEXT_RULE, text

USER_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,200}\Z"  # \Z: `$` would take a final "\n" (a second user)
_ADDR_PART = f"[^@\\s{REFUSED_CHARS}]+"
EmailAddr = Annotated[str, msgspec.Meta(max_length=320, pattern=f"^{_ADDR_PART}@{_ADDR_PART}\\.{_ADDR_PART}\\Z",
                                        description=f"an email address ({TEXT_RULE})")]


Country = Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}\\Z", description=(
    "ISO 3166-1 alpha-2 country code, upper case (`FR`)"))]
HOST_PATTERN = r"^[A-Za-z0-9.:\[\]-]{1,255}\Z"  # a DNS name, an IPv4 or a [bracketed] IPv6 address


class ProxyIn(msgspec.Struct, forbid_unknown_fields=True):
    """The integrator's own proxy for the user's sessions, as Unipile's connect takes it."""
    host: Annotated[str, msgspec.Meta(pattern=HOST_PATTERN, description="host name or address")]
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    protocol: Literal["https", "http", "socks5"] | None = None
    username: Annotated[str, text(255)] | None = None
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1000, description=(
        "kept encrypted; never shown again (responses say `password_set`)"))] | None = None


class ProxyOut(msgspec.Struct):
    host: str
    port: int
    protocol: str | None
    username: str | None
    password_set: bool


class UserIn(msgspec.Struct, forbid_unknown_fields=True):
    email: EmailAddr | None = None
    display_name: Annotated[str, text(200)] | None = None
    country: Annotated[Country | None, msgspec.Meta(description=(
        "where Unipile places the user's LinkedIn sessions, instead of the country of their sync "
        "addresses; null removes it, absent keeps it"))] | msgspec.UnsetType = msgspec.UNSET
    proxy: Annotated[ProxyIn | None, msgspec.Meta(description=(
        "the integrator's own proxy for the user's sessions (wins over `country`); null removes it, "
        "absent keeps it"))] | msgspec.UnsetType = msgspec.UNSET


class UserOut(msgspec.Struct):
    user_id: str
    email: str | None
    display_name: str | None
    created_at: datetime
    updated_at: datetime
    country: str | None
    proxy: Annotated[ProxyOut | None, msgspec.Meta(description="the user's proxy, its password never shown")]


class PairingCodeOut(msgspec.Struct):
    code: str
    expires_at: datetime


MemberCheck = Annotated[str | None, msgspec.Meta(description=(
    "whether Unipile's `GET /users/me` names the same LinkedIn member as `plain_id`: `match`, `mismatch` "
    "(the cookie went with another member; see `member_seen`), `unverified` (its answer named no member), "
    "or null before the first read"))]


class LinkedInOut(msgspec.Struct):
    """The member as Unipile describes the account, read after each connect and reconnect. A field
    is null until a read says it (a read that does not say it keeps the earlier value)."""
    name: Annotated[str | None, msgspec.Meta(description=(
        "the member's name as LinkedIn shows it (their own text: no control characters, at most 200)"))]
    public_identifier: Annotated[str | None, msgspec.Meta(description=(
        "the member's profile name in linkedin.com/in/<public_identifier>"))]
    premium: Annotated[list[str] | None, msgspec.Meta(description=(
        "premium products the account has, of `premium`, `recruiter`, `sales_navigator`; [] for none"))]
    read_at: datetime | None
    member_check: MemberCheck
    member_seen: Annotated[str | None, msgspec.Meta(description=(
        "the member number Unipile named when it is not `plain_id`"))]


class LocationOut(msgspec.Struct):
    """Where Unipile places the account's session: what every connect and reconnect sends."""
    country: Annotated[str | None, msgspec.Meta(description=(
        "ISO 3166-1 alpha-2; null: not known yet (the operator's default country, if any, is sent)"))]
    source: Annotated[str | None, msgspec.Meta(description=(
        "`geoip` (the sync addresses), `integrator` (the user's country), `proxy` (the user's proxy)"))]


class AccountOut(msgspec.Struct):
    plain_id: str
    status: str
    unipile_account_id: str | None
    date_last_cookie: datetime | None
    auto_connect: bool
    hold_reason: str | None
    last_error: str | None
    checkpoint_type: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    linkedin: LinkedInOut
    location: LocationOut


class AccountsOut(msgspec.Struct):
    items: list[AccountOut]


class EraseOut(msgspec.Struct):
    user_id: str
    links: int
    devices: int
    events: int
    unipile_accounts_deleted: list[str]


# --- the user's export (GET /v1/users/{user_id}/export) -------------------------------------
class ExportDevice(msgspec.Struct):
    device_id: str
    extension_version: str | None
    created_at: datetime
    last_seen_at: datetime | None
    last_ip: str | None
    revoked_at: datetime | None


class ExportIncident(msgspec.Struct):
    incident_id: int
    kind: str
    opened_at: datetime
    closed_at: datetime | None
    outcome: str | None
    attempts: int


class ExportLink(msgspec.Struct):
    link_id: int
    plain_id: str
    status: str
    auto_connect: bool
    hold_reason: str | None
    unipile_account_id: str | None
    user_agent: str | None
    client_ip: str | None
    date_last_cookie: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    checkpoint_type: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    linkedin: LinkedInOut
    location: LocationOut
    incidents: list[ExportIncident]


class ExportEmail(msgspec.Struct):
    email_id: int
    kind: str
    link_id: int | None
    to: str | None
    subject: str
    status: str
    created_at: datetime
    sent_at: datetime | None


class ExportNotification(msgspec.Struct):
    notification_id: int
    event_type: str
    link_id: int | None
    payload: Any
    status: str
    created_at: datetime
    delivered_at: datetime | None


class ExportPairingCode(msgspec.Struct):
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


class ExportEvent(msgspec.Struct):
    event_id: int
    at: datetime
    link_id: int | None
    kind: str
    actor: str | None
    data: Any


class UserExport(msgspec.Struct):
    """Everything held on one user. Never a cookie, token, key, proxy password or reconnect link."""
    exported_at: datetime
    user: UserOut
    devices: list[ExportDevice]
    links: list[ExportLink]
    emails: list[ExportEmail]
    notifications: list[ExportNotification]
    pairing_codes: list[ExportPairingCode]
    history: list[ExportEvent]
