"""Unipile API v1 client: the calls cookiesync makes, and what their answers mean.

One `httpx.AsyncClient` per app (injected). Every call has a timeout. Answers
are branched on their `object` field (contract §1/§2: accept any 2xx), and
every failure is sorted into one `Failure` class by `classify()` (contract §5),
so the reconnect policy never looks at HTTP codes itself.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx
import msgspec

from cookiesync.domain.reconcile.schemas import AccountPage
from cookiesync.domain.reconnect.policy import Failure
from cookiesync.domain.unipile_backoff import policy as backoff_policy
from cookiesync.domain.unipile_backoff.services import Backoff

# --- error classification (contract §5) -----------------------------------
NEEDS_USER_TYPES = frozenset({
    "invalid_credentials", "expired_credentials", "disconnected_account", "wrong_account",
    "checkpoint_error", "invalid_checkpoint_solution", "multiple_sessions", "expired_link",
    "account_restricted", "account_mismatch", "session_mismatch", "action_required",
    "disconnected_feature", "feature_not_subscribed",
})
CONFIGURATION_TYPES = frozenset({
    "missing_credentials", "invalid_proxy_credentials", "insufficient_permissions",
    "invalid_parameters", "missing_parameters", "invalid_request", "malformed_request",
    "invalid_body", "limit_too_high", "resource_not_found", "invalid_resource_identifier",
    "feature_not_implemented", "invalid_account",
})
RESTART_FLOW_TYPES = frozenset({"authentication_intent_error"})


def classify(status: int | None, error_type: str | None) -> Failure:
    """Sort a failed call into whose problem it is.

    `status` None means no HTTP answer at all (timeout, refused connection).
    Unknown 401/403 types count as the user's (a LinkedIn session problem);
    unknown 4xx otherwise as ours (configuration); 5xx and timeouts as transient.
    """
    kind = (error_type or "").removeprefix("errors/")
    if status is None:
        return Failure.TRANSIENT
    if status == 425 or kind in RESTART_FLOW_TYPES:
        return Failure.RESTART_FLOW
    if status in (407, 408, 409, 429, 502, 503, 504) or kind in ("too_many_requests", "request_timeout"):
        return Failure.TRANSIENT
    if status == 401 and kind == "missing_credentials":
        return Failure.CONFIGURATION
    if kind in NEEDS_USER_TYPES:
        return Failure.NEEDS_USER
    if kind in CONFIGURATION_TYPES:
        return Failure.CONFIGURATION
    if status in (401, 403):
        return Failure.NEEDS_USER
    if status >= 500:
        return Failure.TRANSIENT
    return Failure.CONFIGURATION


# A Retry-After beyond this is taken as this: a day is longer than any incident waits by default,
# and a misread date must not park a link for years.
MAX_RETRY_AFTER = timedelta(days=1)
HELD_BACK = "instance_backoff"  # error_type of a call this instance did not make (a 429 burst)


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """`Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, as a wait from `now`.
    None when absent or unreadable; a date in the past is no wait."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        wait = timedelta(seconds=int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; a legacy one without a zone is too
            when = when.replace(tzinfo=timezone.utc)
        wait = max(timedelta(0), when - now)
    return min(wait, MAX_RETRY_AFTER)


# --- shapes -------------------------------------------------------------------
class CookieCredentials(msgspec.Struct, frozen=True):
    li_at: str
    li_a: str | None
    user_agent: str
    # where Unipile places the session: {"country": "FR"} or {"proxy": {...}} or nothing
    # (domain/location/policy.body); never the client's address
    location: dict = msgspec.field(default_factory=dict)


class AuthResult(msgspec.Struct, frozen=True):
    """What a connect/reconnect came to. Never carries a cookie."""

    outcome: Literal["connected", "checkpoint", "failed"]
    http_status: int | None
    duration_ms: int
    account_id: str | None = None
    object: str | None = None
    checkpoint_type: str | None = None
    failure: Failure | None = None
    error_type: str | None = None
    error_title: str | None = None
    rate_limited: bool = False  # a 429, or held back by this instance's backoff
    retry_after_s: float | None = None  # no attempt before this many seconds from the answer


class UnipileError(Exception):
    def __init__(self, status: int | None, error_type: str | None, title: str | None,
                 retry_after: timedelta | None = None) -> None:
        super().__init__(f"Unipile answered {status or 'nothing'} {error_type or ''} {title or ''}".strip())
        self.status = status
        self.error_type = error_type
        self.title = title
        self.failure = classify(status, error_type)
        self.retry_after = retry_after
        self.rate_limited = status == 429 or error_type == HELD_BACK

    @property
    def brief(self) -> str:
        """Status and type only, for history rows: "503 service_unavailable", "no answer ConnectTimeout"."""
        return f"{self.status or 'no answer'} {self.error_type or ''}".strip()


def _error_fields(resp: httpx.Response) -> tuple[str | None, str | None]:
    try:
        body = resp.json()
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    etype = body.get("type")
    return (str(etype) if etype else None), (str(body.get("title"))[:200] if body.get("title") else None)


def expires_on(when: datetime) -> str:
    """Unipile wants milliseconds and a Z: 2026-07-01T12:30:00.000Z (contract §7)."""
    when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


POOL_SIZE = 8
LIST_LIMIT = 250  # the largest page GET /accounts allows (contract §4)


class UnipileClient:
    def __init__(self, dsn: str, api_key: str, timeout_s: float = 20.0,
                 transport: httpx.AsyncBaseTransport | None = None, on_call=None, keep_alive: int = 20,
                 backoff: Backoff | None = None) -> None:
        """`keep_alive`: connections kept open between calls. Fewer than the calls in flight, and
        every call over it opens a new connection (a TCP and TLS handshake each, for both sides).

        They are spread over pools of at most `POOL_SIZE`, taken in turn: httpcore walks its
        pool's connections for every call that starts or ends, and for each idle one the whole
        pool again, so its cost grows with the square of the pool (at 40 connections, a third
        of a reconnect sweep's CPU)."""
        base = dsn if dsn.startswith(("http://", "https://")) else f"https://{dsn}"
        self.dsn_url = base.rstrip("/")
        self.base_url = self.dsn_url + "/api/v1"
        pools = 1 if transport is not None else max(1, -(-keep_alive // POOL_SIZE))
        self.pools = [httpx.AsyncClient(
            base_url=self.base_url,
            headers={"X-API-KEY": api_key, "accept": "application/json"},
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(max_connections=max(100, keep_alive) // pools,
                                max_keepalive_connections=-(-keep_alive // pools)),
            transport=transport,
        ) for _ in range(pools)]
        self.next_pool = itertools.cycle(self.pools).__next__
        self.on_call = on_call  # (endpoint, status|None, seconds) -> None, for metrics
        self.timeout_s = timeout_s
        # one per instance: every call waits out a pause a burst of 429s started (unipile_backoff)
        self.backoff = backoff or Backoff()

    async def aclose(self) -> None:
        for pool in self.pools:
            await pool.aclose()

    async def _request(self, method: str, path: str, endpoint: str, **kw: Any) -> httpx.Response:
        if pause := self.backoff.paused_for():
            # not sent: Unipile asked this key to slow down; answered as a 429 would be
            raise UnipileError(None, HELD_BACK, "held back: Unipile rate limits this instance", retry_after=pause)
        started = time.perf_counter()
        status = None
        try:
            # httpx times each phase (connect, each read) on its own; this bounds the whole call,
            # which the attempt lease must outlast (see Settings)
            async with asyncio.timeout(self.timeout_s):
                resp = await self.next_pool().request(method, path, **kw)
            status = resp.status_code
            self.backoff.saw(backoff_policy.RateLimited(self._retry_after(resp)) if status == 429
                             else backoff_policy.Answered())
            return resp
        except httpx.HTTPError as exc:
            raise UnipileError(None, type(exc).__name__, "no answer from Unipile") from None
        except TimeoutError:
            raise UnipileError(None, "ReadTimeout", "no whole answer from Unipile in time") from None
        finally:
            if self.on_call:
                self.on_call(endpoint, status, time.perf_counter() - started)

    @staticmethod
    def _retry_after(resp: httpx.Response) -> timedelta | None:
        return retry_after(resp.headers.get("retry-after"), datetime.now(timezone.utc))

    async def _json(self, method: str, path: str, endpoint: str, **kw: Any) -> dict:
        resp = await self._request(method, path, endpoint, **kw)
        if not resp.is_success:
            raise UnipileError(resp.status_code, *_error_fields(resp), retry_after=self._retry_after(resp))
        try:
            return resp.json()
        except ValueError:
            raise UnipileError(resp.status_code, "invalid_json", "Unipile sent a body that is not JSON") from None

    # --- cookie auth -----------------------------------------------------
    @staticmethod
    def _cookie_body(creds: CookieCredentials) -> dict:
        body: dict[str, Any] = {"provider": "LINKEDIN", "access_token": creds.li_at, "user_agent": creds.user_agent}
        if creds.li_a:
            body["premium_token"] = creds.li_a
        body.update(creds.location)
        return body

    async def connect(self, creds: CookieCredentials) -> AuthResult:
        return await self._auth("POST", "/accounts", "accounts.create", self._cookie_body(creds))

    async def reconnect(self, account_id: str, creds: CookieCredentials) -> AuthResult:
        return await self._auth("POST", f"/accounts/{account_id}", "accounts.reconnect", self._cookie_body(creds))

    async def _auth(self, method: str, path: str, endpoint: str, body: dict) -> AuthResult:
        started = time.perf_counter()

        def ms() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            data = await self._json(method, path, endpoint, json=body)
        except UnipileError as err:
            return AuthResult(outcome="failed", http_status=err.status, duration_ms=ms(), failure=err.failure,
                              error_type=err.error_type, error_title=err.title, rate_limited=err.rate_limited,
                              retry_after_s=err.retry_after.total_seconds() if err.retry_after is not None else None)
        obj = data.get("object")
        account_id = data.get("account_id")
        if obj in ("AccountCreated", "AccountReconnected") and account_id:
            return AuthResult(outcome="connected", http_status=200, duration_ms=ms(), account_id=account_id, object=obj)
        if obj == "Checkpoint":
            checkpoint = data.get("checkpoint") or {}
            return AuthResult(outcome="checkpoint", http_status=200, duration_ms=ms(), account_id=account_id,
                              object=obj, checkpoint_type=str(checkpoint.get("type") or "UNKNOWN"))
        return AuthResult(outcome="failed", http_status=200, duration_ms=ms(), failure=Failure.TRANSIENT,
                          error_type="unexpected_object", error_title=f"unexpected answer object {obj!r}")

    # --- accounts ----------------------------------------------------------
    async def get_account(self, account_id: str) -> dict:
        return await self._json("GET", f"/accounts/{account_id}", "accounts.get")

    async def list_accounts(self, cursor: str | None, limit: int = LIST_LIMIT) -> AccountPage:
        """One page of the account list (contract §4: `cursor`, `limit` 1-250), decoded straight
        into the fields the reconciliation reads."""
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        resp = await self._request("GET", "/accounts", "accounts.list", params=params)
        if not resp.is_success:
            raise UnipileError(resp.status_code, *_error_fields(resp), retry_after=self._retry_after(resp))
        try:
            return msgspec.json.decode(resp.content, type=AccountPage)
        except msgspec.DecodeError as exc:
            raise UnipileError(resp.status_code, "invalid_json", f"not an account list: {exc}"[:200]) from None

    async def get_me(self, account_id: str) -> dict:
        """The account's own member (contract §4: `AccountOwnerProfile`, with `object_urn`)."""
        return await self._json("GET", "/users/me", "users.me", params={"account_id": account_id})

    async def restart_account(self, account_id: str) -> dict:
        return await self._json("POST", f"/accounts/{account_id}/restart", "accounts.restart")

    async def delete_account(self, account_id: str) -> dict:
        return await self._json("DELETE", f"/accounts/{account_id}", "accounts.delete")

    async def hosted_reconnect_link(self, account_id: str, *, name: str, notify_url: str,
                                    success_url: str, failure_url: str, ttl: timedelta) -> str:
        body = {
            "type": "reconnect",
            "reconnect_account": account_id,
            "api_url": self.dsn_url,
            "expiresOn": expires_on(datetime.now(timezone.utc) + ttl),
            "name": name,
            "notify_url": notify_url,
            "success_redirect_url": success_url,
            "failure_redirect_url": failure_url,
        }
        data = await self._json("POST", "/hosted/accounts/link", "hosted.link", json=body)
        url = data.get("url")
        if not url:
            raise UnipileError(200, "unexpected_object", "hosted auth answer without url")
        return url

    # --- webhooks ----------------------------------------------------------
    async def list_webhooks(self) -> list[dict]:
        items: list[dict] = []
        cursor = None
        while True:
            params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
            data = await self._json("GET", "/webhooks", "webhooks.list", params=params)
            items.extend(data.get("items") or [])
            cursor = data.get("cursor")
            if not cursor:
                return items

    async def create_webhook(self, *, request_url: str, name: str, header: str, secret: str) -> str:
        body = {
            "request_url": request_url, "source": "account_status", "name": name, "format": "json",
            "headers": [{"key": "Content-Type", "value": "application/json"}, {"key": header, "value": secret}],
        }
        data = await self._json("POST", "/webhooks", "webhooks.create", json=body)
        return data["webhook_id"]

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._json("DELETE", f"/webhooks/{webhook_id}", "webhooks.delete")
