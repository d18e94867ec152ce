"""Everything one running app holds: settings, database, key ring, Unipile client,
the attempt runner. Built in the app's lifespan, injected into handlers."""
from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from cookiesync.domain.reconnect import policy
from cookiesync.metrics import Metrics
from cookiesync.security import KeyRing, Signer
from cookiesync.settings import Settings
from cookiesync.unipile.client import UnipileClient

log = logging.getLogger("cookiesync")


class BackgroundLoop:
    """A task running `_loop()` for the app's lifetime, cancelled cleanly at shutdown."""

    task: asyncio.Task | None = None

    async def _loop(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def cancel_loop(self) -> None:
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass


class NamedCaches:
    caches: dict

    def cache(self, name: str, factory):
        """The named per-instance cache, built by `factory` only the first time."""
        found = self.caches.get(name)
        if found is None:
            found = self.caches[name] = factory()
        return found


@dataclass
class Runtime(NamedCaches):
    settings: Settings
    engine: AsyncEngine
    keyring: KeyRing
    unipile: UnipileClient
    metrics: Metrics
    instance_id: str = field(default_factory=lambda: secrets.token_hex(8))
    runner: "object | None" = None      # domain.reconnect.services.AttemptRunner
    mailer: "object | None" = None      # domain.email.outbox.Mailer
    toucher: "object | None" = None     # domain.sync.services.Toucher
    cookie_writer: "object | None" = None  # db.batch.GroupCommit for new cookies (domain.sync.writer)
    reads: "object | None" = None       # db.hot.HotReads, the sync path's reads
    writes: "object | None" = None      # db.hot.HotWrites, its new-cookie writes
    writer_process: "object | None" = None  # domain.sync.writer_process.WriterProcess, the same in a child
    notifier: "object | None" = None    # domain.notifications.services.Notifier
    caches: dict = field(default_factory=dict)
    background: set = field(default_factory=set)
    trusted_proxies: list = field(init=False)

    def __post_init__(self) -> None:
        # parsed once: the sync hot path asks for it on every request
        self.trusted_proxies = self.settings.trusted_proxy_networks

    @property
    def policy_config(self) -> policy.Config:
        return policy_config(self.settings)

    @property
    def reconnect_signer(self) -> Signer:
        return Signer(self.settings.signing_secret, "reconnect-link")

    def spawn(self, coro) -> asyncio.Task:
        """Fire-and-forget work that must not be garbage collected mid-flight."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed: %s", type(task.exception()).__name__, exc_info=task.exception())


def policy_config(s: Settings) -> policy.Config:
    return policy.Config(
        retry_interval=timedelta(seconds=s.retry_interval_s),
        retry_count=s.retry_count,
        max_incident_age=timedelta(seconds=s.max_incident_age_s),
    )
