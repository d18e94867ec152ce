"""Our account-status webhook at Unipile: made sure of by `cookiesync unipile register-webhook`,
and at start-up in production (`WebhookRegistration`), so a new deploy or a changed public URL
never leaves the service without the webhooks that tell it an account disconnected."""
from __future__ import annotations

import asyncio
import hmac
import logging

from cookiesync.background import BackgroundLoop
from cookiesync.scheduler.sweep import acquire_lease, release_lease
from cookiesync.settings import Settings
from cookiesync.unipile.client import UnipileError

log = logging.getLogger("cookiesync.webhooks")

LEASE = "register_webhook"  # one instance registers at a time: two listing at once would both create
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 300.0


def webhook_url(s: Settings) -> str:
    return f"{s.base_url}/v1/webhooks/unipile/account-status"


async def register_webhook(s: Settings, unipile) -> str:
    """Make sure exactly one account-status webhook points here, with our secret header. Idempotent:
    one already pointing at our URL with our headers is kept (contract §6, `GET /webhooks`); others
    at our URL (an old secret, disabled) are removed; a new one is made only when none is right."""
    url = webhook_url(s)
    want_headers = {"content-type": "application/json", s.webhook_header.lower(): s.webhook_secret}
    ours = [w for w in await unipile.list_webhooks()
            if w.get("source") == "account_status" and w.get("request_url") == url]

    def good(w: dict) -> bool:
        headers = {str(h.get("key", "")).lower(): h.get("value") for h in (w.get("headers") or [])}
        # the secret header's value is compared in constant time, as every secret is
        same = all(hmac.compare_digest(str(headers.get(k) or "").encode(), v.encode())
                   for k, v in want_headers.items())
        return same and w.get("enabled", True) is not False

    keep = next((w for w in ours if good(w)), None)
    for w in ours:
        if w is not keep:
            await unipile.delete_webhook(w["id"])
    if keep is not None:
        return f"kept webhook {keep['id']} -> {url}" + (f" (removed {len(ours) - 1} stale)" if len(ours) > 1 else "")
    webhook_id = await unipile.create_webhook(request_url=url, name="cookiesync account status",
                                              header=s.webhook_header, secret=s.webhook_secret)
    return f"created webhook {webhook_id} -> {url}" + (f" (replaced {len(ours)})" if ours else "")


def wanted_at_start(s: Settings) -> bool:
    """Production with a public URL Unipile can reach, unless turned off."""
    return s.mode == "production" and bool(s.public_url) and s.register_webhook == "on"


class WebhookRegistration(BackgroundLoop):
    """Registers once at start-up, beside serving: a failure (Unipile down, a refused key) is one
    log line and a retry after 1, 2, 4 … 300 s, until it works or the service stops."""

    def __init__(self, rt) -> None:
        self.rt = rt
        self.result: str | None = None
        self.failures = 0

    async def stop(self) -> None:
        await self.cancel_loop()

    async def _loop(self) -> None:
        delay = FIRST_RETRY_S
        while True:
            try:
                if await self._once():
                    return
                log.info("Unipile webhook registration: another instance is at it; looking again in %.0f s", delay)
            except UnipileError as exc:  # the message holds status, type and title: no secret
                self.failures += 1
                log.error("Unipile webhook registration failed: %s; retrying in %.0f s", exc, delay)
            except Exception as exc:  # the database, say: the service serves on, this retries
                self.failures += 1
                log.error("Unipile webhook registration failed: %s; retrying in %.0f s", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(MAX_RETRY_S, delay * 2)

    async def _once(self) -> bool:
        rt = self.rt
        if not await acquire_lease(rt, LEASE):
            return False
        try:
            self.result = await register_webhook(rt.settings, rt.unipile)
        finally:
            await release_lease(rt, LEASE)
        log.info("Unipile webhook registration: %s", self.result)
        return True
