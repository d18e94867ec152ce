"""In-memory state of the Unipile simulator: members, cookies, accounts, scripted outcomes.

Everything here is plain synchronous Python; the route handlers (one module per contract
section) guard compound updates with ``SimState.lock`` and do all waiting (latency, webhooks)
outside it.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from typing import Any

import msgspec

from cookiesync.simulator.redact import fingerprint, maybe_fingerprint, scrub

CALLS_MAX = 10_000  # API calls /_sim/calls keeps, the newest (a deque: the oldest fall out)
DELIVERIES_MAX = 1_000  # webhook and notify_url deliveries /_sim/webhook-deliveries keeps, the newest


def _new_secret() -> str:
    return secrets.token_urlsafe(24)


class SimulatorConfig(msgspec.Struct, kw_only=True):
    """How the simulator behaves. Mutable at run time through ``POST /_sim/config`` (the fields of
    ``MUTABLE_CONFIG``); the rest is fixed when the simulator is made."""

    # Its Unipile API key (``X-API-KEY``) and the token of its control API (``X-Sim-Token`` on
    # every request outside ``/api/v1`` and the hosted-auth page): random unless set, so no two
    # simulators share a key; a test sets both to known values.
    api_key: str = msgspec.field(default_factory=_new_secret)
    control_token: str = msgspec.field(default_factory=_new_secret)
    calls_max: int = CALLS_MAX
    deliveries_max: int = DELIVERIES_MAX
    public_url: str = ""  # own base URL for hosted-auth pages; "" = derive from the request
    webhook_url: str | None = None
    webhook_header: str = "Unipile-Auth"
    webhook_secret: str | None = None
    latency_ms: int = 0
    timeout_s: float = 30.0  # how long the `timeout` outcome sleeps before its 504
    checkpoint_ttl_s: float = 300.0  # a pending checkpoint dies after this (contract §3: 5 min)
    auth_webhooks: bool = False  # also fire CREATION_SUCCESS / RECONNECTED after API create/reconnect


SECRET_CONFIG = ("api_key", "control_token", "webhook_secret")  # shown as fingerprints by /_sim/config
MUTABLE_CONFIG = ("latency_ms", "webhook_url", "webhook_header", "webhook_secret", "timeout_s",
                  "checkpoint_ttl_s", "auth_webhooks")

# --- errors (contract §5) ------------------------------------------------------
# outcome -> (HTTP status, type without "errors/", title, detail)
OUTCOME_ERRORS: dict[str, tuple[int, str, str, str]] = {
    "invalid_credentials": (401, "invalid_credentials", "Invalid credentials",
                            "The provided credentials are invalid."),
    "expired_credentials": (401, "expired_credentials", "Expired credentials",
                            "The provided credentials have expired."),
    "disconnected_account": (401, "disconnected_account", "Disconnected account",
                             "The account appears to be disconnected from the provider service."),
    "wrong_account": (401, "wrong_account", "Wrong account",
                      "The provided credentials do not match the correct account."),
    "account_restricted": (403, "account_restricted", "Account restricted",
                           "Access to this account has been restricted by the provider."),
    "429": (429, "too_many_requests", "Too many requests",
            "The provider is rate limiting requests. Retry later."),
    "500": (500, "provider_error", "Provider error", "The provider encountered an error. Retry later."),
    "intent_error": (500, "authentication_intent_error", "Authentication intent error",
                     "The current authentication intent was killed after failure or success. "
                     "Please start a new authentication process."),
    "503": (503, "service_unavailable", "Service unavailable", "The service is temporarily unavailable."),
    "425": (425, "authentication_in_progress", "Authentication in progress",
            "Another authentication intent is already running for these credentials."),
    "timeout": (504, "request_timeout", "Request timeout", "The provider did not answer in time."),
}
CHECKPOINT_TYPES = ("2FA", "OTP", "PHONE_REGISTER", "IN_APP_VALIDATION", "CAPTCHA", "CONTRACT_CHOOSER")
# webhook message -> account status it leaves behind (None: the account is removed)
STATUS_MESSAGES: dict[str, str | None] = {
    "OK": "OK", "ERROR": "ERROR", "STOPPED": "STOPPED", "CREDENTIALS": "CREDENTIALS",
    "CONNECTING": "CONNECTING", "DELETED": None, "CREATION_SUCCESS": "OK", "RECONNECTED": "OK",
    "SYNC_SUCCESS": "OK", "PERMISSIONS": "PERMISSIONS", "CREATION_FAIL": "ERROR",
}
CONTRACT_OPTIONS = [{"id": "sim-contract-1", "name": "Recruiter Lite (simulated)"},
                    {"id": "sim-contract-2", "name": "Recruiter Corporate (simulated)"}]
_GENERIC_ERROR = re.compile(r"^error:([0-9]{3}):([a-z_]+)\Z")
# `429:retry-after:N` sends `Retry-After: N` (seconds), `429:retry-after-date:N` an HTTP-date N seconds
# ahead; a bare `429` sends none. The contract (§5) is silent on the header: both must be handled.
_RETRY_AFTER = re.compile(r"^429:retry-after(-date)?:([0-9]{1,6})\Z")


class OutcomeError(ValueError):
    pass


def parse_outcome(raw: Any) -> str:
    """Validate one scripted outcome string; returns it unchanged."""
    if not isinstance(raw, str):
        raise OutcomeError(f"outcome must be a string, got {raw!r}")
    inner = raw.removeprefix("sticky:")
    if inner == "ok" or inner in OUTCOME_ERRORS or _GENERIC_ERROR.match(inner) or _RETRY_AFTER.match(inner):
        return raw
    if inner.startswith("checkpoint:"):
        parts = inner.split(":")
        if parts[1] in CHECKPOINT_TYPES and (len(parts) == 2 or (len(parts) == 3 and parts[1] == "2FA"
                                                                 and parts[2] in ("SMS", "APP"))):
            return raw
    raise OutcomeError(f"unknown outcome {raw!r}")


def error_for(outcome: str) -> tuple[int, str, str, str] | None:
    if outcome in OUTCOME_ERRORS:
        return OUTCOME_ERRORS[outcome]
    if _RETRY_AFTER.match(outcome):
        return OUTCOME_ERRORS["429"]
    if m := _GENERIC_ERROR.match(outcome):
        kind = m.group(2)
        return int(m.group(1)), kind, kind.replace("_", " ").capitalize(), "Scripted simulator error."
    return None


def retry_after_for(outcome: str, now: float) -> str | None:
    """The `Retry-After` value a scripted 429 sends (`now`: epoch seconds), or None."""
    m = _RETRY_AFTER.match(outcome)
    if not m:
        return None
    if not m.group(1):
        return m.group(2)
    # an HTTP-date has whole seconds: rounded up, so the wait is never shorter than scripted
    return formatdate(math.ceil(now) + int(m.group(2)), usegmt=True)


def checkpoint_body(outcome: str) -> dict:
    """`checkpoint:TYPE[:SOURCE]` -> the `checkpoint` object of contract §1."""
    parts = outcome.split(":")
    kind = parts[1]
    if kind == "2FA":
        return {"type": "2FA", "source": parts[2] if len(parts) == 3 else "APP"}
    if kind == "CAPTCHA":
        return {"type": "CAPTCHA", "public_key": "3117BF26-4762-4F5A-8ED9-A85E69209A46",
                "data": "sim-arkose-blob"}
    if kind == "CONTRACT_CHOOSER":
        return {"type": "CONTRACT_CHOOSER", "contract_options": [dict(o) for o in CONTRACT_OPTIONS]}
    return {"type": kind}


def take(queue: list[str]) -> str | None:
    """Pop the next outcome; a `sticky:` last entry stays and repeats forever."""
    if not queue:
        return None
    head = queue[0]
    if head.startswith("sticky:") and len(queue) == 1:
        return head.removeprefix("sticky:")
    queue.pop(0)
    return head.removeprefix("sticky:")


# --- identity -------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def provider_id_for(plain_id: str) -> str:
    """A stable ACoAA-style member id for a numeric plain id."""
    return "ACoAA" + _b64(hashlib.sha256(f"member:{plain_id}".encode()).digest())[:34]


def plain_id_for_cookie(li_at_fp: str) -> str:
    """An unregistered cookie gets a member derived from its fingerprint (same cookie, same member)."""
    n = int.from_bytes(hashlib.sha256(f"cookie:{li_at_fp}".encode()).digest()[:6], "big")
    return str(100_000_000 + n % 900_000_000)


def new_id() -> str:
    return secrets.token_urlsafe(16)  # 22 url-safe characters, like Unipile's ids


def iso_now() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass
class Member:
    plain_id: str
    provider_id: str
    name: str
    premium: list[str] | None = None  # premiumFeatures as set by /_sim/members; None: from the cookies

    @property
    def public_identifier(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "member"
        return slug if slug.endswith(self.plain_id) else f"{slug}-{self.plain_id}"

    def as_dict(self) -> dict:
        return {"plain_id": self.plain_id, "provider_id": self.provider_id, "name": self.name,
                "public_identifier": self.public_identifier, "premium_features": self.premium}


@dataclass
class CookieEntry:
    li_at_fp: str  # the cookie's fingerprint: its value is never kept
    plain_id: str | None = None
    outcomes: list[str] = field(default_factory=list)
    latency_ms: int | None = None

    def as_dict(self) -> dict:
        return {"li_at_fingerprint": self.li_at_fp, "plain_id": self.plain_id, "outcomes": list(self.outcomes),
                "latency_ms": self.latency_ms}


@dataclass
class Credentials:
    """What a create/reconnect body carried, its cookies and proxy password as fingerprints."""

    li_at_fp: str
    li_a_fp: str | None = None
    user_agent: str | None = None
    ip: str | None = None
    country: str | None = None
    proxy: dict | None = None
    recruiter_contract_id: str | None = None
    disabled_features: list[str] = field(default_factory=list)
    sync_limit: dict | None = None

    @classmethod
    def from_body(cls, body: dict) -> "Credentials":
        country = body.get("country")
        proxy = scrub(body["proxy"]) if body.get("proxy") else None
        return cls(li_at_fp=fingerprint(body["access_token"]), li_a_fp=maybe_fingerprint(body.get("premium_token")),
                   user_agent=body.get("user_agent"), ip=body.get("ip"), country=country.upper() if country else None,
                   proxy=proxy,
                   recruiter_contract_id=body.get("recruiter_contract_id"),
                   disabled_features=list(body.get("disabled_features") or []), sync_limit=body.get("sync_limit"))


@dataclass
class Checkpoint:
    kind: str  # "create" | "reconnect"
    body: dict  # the checkpoint object sent to the client
    creds: Credentials | None
    started: float = field(default_factory=time.monotonic)


@dataclass
class Account:
    id: str
    plain_id: str
    creds: Credentials | None
    status: str = "OK"
    created_at: str = field(default_factory=iso_now)
    connection_method: str = "cookies"
    checkpoint: Checkpoint | None = None
    reconnects: int = 0
    me_plain_id: str | None = None  # /users/me answers this member instead (/_sim/accounts/{id}/me)


@dataclass
class Webhook:
    id: str
    body: dict
    created_at: str = field(default_factory=iso_now)

    def as_dict(self) -> dict:
        b = self.body
        return {"object": "Webhook", "id": self.id, "name": b.get("name"), "source": b["source"],
                "request_url": b["request_url"], "format": b.get("format", "json"),
                "account_ids": list(b.get("account_ids") or []), "headers": list(b.get("headers") or []),
                "events": list(b.get("events") or []), "enabled": b.get("enabled", True),
                "created_at": self.created_at}


@dataclass
class HostedLink:
    token: str
    url: str
    body: dict
    expires_at: datetime
    created_at: str = field(default_factory=iso_now)
    status: str = "pending"  # pending | completed | failed
    completed_at: str | None = None
    account_id: str | None = None
    notify: dict | None = None
    webhooks: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        expired = self.status == "pending" and datetime.now(timezone.utc) > self.expires_at
        return {"token": self.token, "url": self.url, "body": scrub(self.body), "created_at": self.created_at,
                "expires_on": self.body.get("expiresOn"), "status": "expired" if expired else self.status,
                "completed_at": self.completed_at, "account_id": self.account_id or self.body.get("reconnect_account"),
                "notify": self.notify, "webhooks": self.webhooks}


class SimState:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.lock = asyncio.Lock()
        self.background: set[asyncio.Task] = set()
        self.reset()

    def reset(self) -> None:
        self.members: dict[str, Member] = {}
        self.cookies: dict[str, CookieEntry] = {}
        self.accounts: dict[str, Account] = {}
        self.account_outcomes: dict[str, list[str]] = {}
        self.global_outcomes: list[str] = []
        self.read_outcomes: list[str] = []  # the next GET /accounts/{id} and /users/me answers (/_sim/reads)
        self.list_outcomes: list[str] = []  # the next GET /accounts pages' answers (/_sim/listing)
        self.listing: tuple[list[str], dict[str, int]] | None = None  # ids and status_counts of a listing (accounts.py)
        self.webhooks: dict[str, Webhook] = {}
        self.hosted: dict[str, HostedLink] = {}
        self.calls: deque[dict] = deque(maxlen=self.config.calls_max)
        self.deliveries: deque[dict] = deque(maxlen=self.config.deliveries_max)
        self.in_progress: set[tuple[str, str]] = set()
        self.auth_in_flight = 0       # connect/reconnect calls being answered now
        self.auth_in_flight_peak = 0  # the most at once since the last reset (a client's limit shows here)
        self.seq = 0

    # --- members and cookies ---------------------------------------------------
    def member(self, plain_id: str, provider_id: str | None = None, name: str | None = None) -> Member:
        m = self.members.get(plain_id)
        if m is None:
            m = self.members[plain_id] = Member(plain_id, provider_id or provider_id_for(plain_id),
                                                name or f"Member {plain_id}")
        else:
            m.provider_id = provider_id or m.provider_id
            m.name = name or m.name
        return m

    # Cookies are known by their fingerprints (`Credentials.li_at_fp`, `redact.fingerprint`).
    def cookie(self, li_at_fp: str) -> CookieEntry:
        entry = self.cookies.get(li_at_fp)
        if entry is None:
            entry = self.cookies[li_at_fp] = CookieEntry(li_at_fp)
        return entry

    def cookie_member(self, li_at_fp: str) -> Member | None:
        entry = self.cookies.get(li_at_fp)
        return self.members.get(entry.plain_id) if entry and entry.plain_id else None

    def next_outcome(self, li_at_fp: str, account_id: str | None) -> str:
        queues = [self.cookies[li_at_fp].outcomes if li_at_fp in self.cookies else None,
                  self.account_outcomes.get(account_id) if account_id else None,
                  self.global_outcomes]
        for q in queues:
            if q:
                return take(q) or "ok"
        return "ok"

    def latency_for(self, li_at_fp: str) -> int:
        entry = self.cookies.get(li_at_fp)
        if entry and entry.latency_ms is not None:
            return entry.latency_ms
        return self.config.latency_ms

    # --- views -------------------------------------------------------------------
    def account_json(self, a: Account) -> dict:
        m = self.members[a.plain_id]
        c = a.creds or Credentials(li_at_fp="")
        features = []
        if c.li_a_fp and "linkedin_sales_navigator" not in c.disabled_features:
            features.append("sales_navigator")
        if c.recruiter_contract_id and "linkedin_recruiter" not in c.disabled_features:
            features.append("recruiter")
        if m.premium is not None:
            features = list(m.premium)
        if c.proxy:
            proxy = {"source": "USER", **c.proxy}
        else:
            proxy = {"country": c.country or "US"}
        im = {"id": m.provider_id, "publicIdentifier": m.public_identifier, "username": m.name,
              "connection_method": a.connection_method,
              "premiumId": ("sim-premium-" + c.li_a_fp.removeprefix("sha256:")[:12]) if c.li_a_fp else None,
              "premiumFeatures": features, "premiumContractId": c.recruiter_contract_id,
              "organizations": [], "proxy": proxy}
        return {"object": "Account", "type": "LINKEDIN", "id": a.id, "name": m.name, "created_at": a.created_at,
                "groups": [], "sources": [{"id": f"{a.id}_MESSAGING", "status": a.status}],
                "connection_params": {"im": im}}

    def account_internal(self, a: Account) -> dict:
        m = self.members[a.plain_id]
        c = a.creds or Credentials(li_at_fp="")
        cp = a.checkpoint
        return {"id": a.id, "status": a.status, "created_at": a.created_at, "plain_id": m.plain_id,
                "provider_id": m.provider_id, "name": m.name, "li_at_fingerprint": c.li_at_fp or None,
                "li_a_fingerprint": c.li_a_fp,
                "user_agent": c.user_agent, "ip": c.ip, "country": c.country, "proxy": c.proxy,
                "recruiter_contract_id": c.recruiter_contract_id, "disabled_features": c.disabled_features,
                "connection_method": a.connection_method, "reconnects": a.reconnects, "me_plain_id": a.me_plain_id,
                "checkpoint": {"kind": cp.kind, **cp.body} if cp else None,
                "outcomes": list(self.account_outcomes.get(a.id, []))}
