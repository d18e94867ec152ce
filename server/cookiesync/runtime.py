"""Everything one running app holds, built in one place.

`open_runtime(settings)` builds every part on an `AsyncExitStack`: each part's close is
pushed as the part is made, so shutdown runs in the reverse order of construction (the
loops that write stop before the connections they write on close, the engine last)
without a second list to keep in step. The app's lifespan enters it; handlers get the
`Runtime` injected as `rt`.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import AsyncIterator

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine

# The parts, imported at run time, not only for type checkers: Litestar resolves the
# annotations of an injected dataclass. None of them imports this module back.
from cookiesync.caches import RateLimiter, TTLCache
from cookiesync.db.batch import GroupCommit
from cookiesync.db.bulk import BulkSQL
from cookiesync.db.engine import make_engine
from cookiesync.db.hot import HotReads, HotWrites
from cookiesync.domain.email.outbox import Mailer
from cookiesync.domain.email.rendering import EmailTemplates
from cookiesync.domain.location.services import Locator
from cookiesync.domain.notifications.services import Notifier
from cookiesync.domain.profile.services import ProfileReader
from cookiesync.domain.reconnect import policy
from cookiesync.domain.reconnect.services import AttemptRunner, policy_config
from cookiesync.domain.sync import writer
from cookiesync.domain.unipile_backoff import policy as backoff_policy
from cookiesync.domain.webhooks.registration import WebhookRegistration, wanted_at_start
from cookiesync.domain.unipile_backoff.services import Backoff
from cookiesync.domain.sync.models import CachedLink, CookieResult, Device, NewCookie
from cookiesync.domain.sync.revocations import RevocationWatcher
from cookiesync.domain.sync.touches import Toucher
from cookiesync.domain.sync.writer import CookieWrites
from cookiesync.domain.sync.writer_process import WriterProcess
from cookiesync.metrics import Metrics
from cookiesync.readiness import Readiness
from cookiesync.scheduler.sweep import Scheduler
from cookiesync.security import KeyRing, Signer
from cookiesync.settings import Settings, local_secrets
from cookiesync.unipile.client import UnipileClient

log = logging.getLogger("cookiesync")

# Longer than the extension's sync interval (900 s), with room for its jitter, so a device
# syncing on schedule finds itself cached (its sync then reads only its link). Known devices
# can stay cached this long because the RevocationWatcher evicts revoked and erased ones
# within token_cache_ttl_s on every instance; unknown tokens are remembered only briefly.
DEVICE_CACHE_TTL_S = 7200.0


@dataclass(eq=False)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    keyring: KeyRing
    unipile: UnipileClient
    metrics: Metrics
    instance_id: str = field(default_factory=lambda: secrets.token_hex(8))

    # The parts, made by `open_runtime` once the runtime they serve exists.
    reads: HotReads = field(init=False)             # the sync path's reads
    writes: HotWrites = field(init=False)           # its new-cookie bulk writes
    writer_process: WriterProcess | None = field(init=False, default=None)  # the same in a child
    cookie_writes: CookieWrites = field(init=False)  # how a batch of new cookies is written
    cookie_writer: GroupCommit[NewCookie, CookieResult] = field(init=False)  # batches them
    toucher: Toucher = field(init=False)
    revocations: RevocationWatcher = field(init=False)
    runner: AttemptRunner = field(init=False)
    profiles: ProfileReader = field(init=False)     # reads the LinkedIn profile after each connect
    emails: EmailTemplates = field(init=False)     # what users read: the brand, the email templates
    mailer: Mailer = field(init=False)
    notifier: Notifier = field(init=False)
    scheduler: Scheduler = field(init=False)
    readiness: Readiness = field(init=False)        # what /readyz answers
    webhook_registration: WebhookRegistration | None = field(init=False, default=None)  # production start-up

    # This instance's memory, each by name (none is looked up by a string).
    device_cache: TTLCache[str, Device] = field(init=False)       # token hash -> device
    unknown_tokens: TTLCache[str, bool] = field(init=False)       # token hashes that found no device
    link_cache: TTLCache[tuple[str, str], CachedLink] = field(init=False)  # (user, member) -> link
    api_key_cache: TTLCache[str, str] = field(init=False)         # key hash -> actor ("" for refused)
    sync_limiter: RateLimiter = field(init=False)                 # syncs per device
    bulk_sql: BulkSQL = field(init=False)
    trusted_proxies: list = field(init=False)
    policy_config: policy.Config = field(init=False)
    locator: Locator = field(init=False)           # country of an address, the location policy's settings
    reconnect_signer: Signer = field(init=False)
    background: set[asyncio.Task] = field(default_factory=set)

    def __post_init__(self) -> None:
        s = self.settings
        self.device_cache = TTLCache(DEVICE_CACHE_TTL_S)
        self.unknown_tokens = TTLCache(s.token_cache_ttl_s)
        self.link_cache = TTLCache(s.link_cache_ttl_s)
        self.api_key_cache = TTLCache(s.token_cache_ttl_s)
        self.sync_limiter = RateLimiter(limit=120, window_s=60)
        self.bulk_sql = BulkSQL(self.engine.dialect.name)
        # parsed once: the sync hot path asks for it on every request
        self.trusted_proxies = s.trusted_proxy_networks
        self.policy_config = policy_config(s)
        self.locator = Locator(s)
        self.reconnect_signer = Signer(s.signing_secret, "reconnect-link")

    def memory(self) -> dict[str, int]:
        """How many entries each cache and limiter holds (benchmarks, diagnostics)."""
        return {name: len(getattr(self, name)) for name in (
            "device_cache", "unknown_tokens", "link_cache", "api_key_cache", "sync_limiter")}

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

    async def cancel_background(self) -> None:
        for task in list(self.background):
            task.cancel()


SIM_MOUNT = "/unipile-sim"  # where the app mounts the simulator when Unipile is simulated
# The mounted simulator's control token (its X-Sim-Token), by this name in the local secrets file;
# its Unipile API key is COOKIESYNC_UNIPILE_API_KEY, which local mode generates there too.
SIM_CONTROL_TOKEN = "unipile_sim_control_token"


def sim_control_token(settings: Settings) -> str:
    """The mounted simulator's control token: made once into the local secrets file (a test that
    wants its own writes it there first)."""
    stored, _created = local_secrets(settings.data_dir, {SIM_CONTROL_TOKEN: lambda: secrets.token_urlsafe(32)})
    return stored[SIM_CONTROL_TOKEN]


# How a handler (or a dependency) asks for the app's runtime: `rt: RT`, injected by name from the
# app's `dependencies["rt"]` (app.create_app). The one idiom of every controller.
RT = NamedDependency[Runtime]


def unipile_target(settings: Settings) -> tuple[str, str]:
    """Unipile's address and API key: the mounted simulator's when Unipile is simulated."""
    if settings.unipile_simulated:
        return settings.base_url + SIM_MOUNT, settings.unipile_api_key
    return settings.unipile_dsn, settings.unipile_api_key


def unipile_client(settings: Settings, metrics: Metrics) -> UnipileClient:
    dsn, key = unipile_target(settings)
    backoff = Backoff(backoff_policy.Config(
        burst=settings.unipile_backoff_burst, window=timedelta(seconds=settings.unipile_backoff_window_s),
        first_pause=min(timedelta(seconds=2), timedelta(seconds=settings.unipile_backoff_max_s)),
        max_pause=timedelta(seconds=settings.unipile_backoff_max_s)),
        on_pause=lambda pause: metrics.unipile_backoffs.inc())
    # keep a connection per attempt in flight, and a few for calls outside the runner
    return UnipileClient(dsn, key, timeout_s=settings.unipile_timeout_s, on_call=metrics.unipile_call,
                         keep_alive=max(20, settings.unipile_concurrency + 8), backoff=backoff)


@asynccontextmanager
async def open_runtime(settings: Settings, *, start_background: bool = True,
                       emails: EmailTemplates | None = None) -> AsyncIterator[Runtime]:
    """The runtime with every part made, and its loops started unless `start_background` is
    False (tests that drive the parts themselves); every part closed on the way out. `emails`:
    the templates `create_app` already checked (made here otherwise)."""
    async with AsyncExitStack() as stack:
        engine = make_engine(settings.database)
        stack.push_async_callback(engine.dispose)
        metrics = Metrics()
        unipile = unipile_client(settings, metrics)
        stack.push_async_callback(unipile.aclose)
        rt = Runtime(settings=settings, engine=engine, keyring=KeyRing(settings.encryption_keys), unipile=unipile,
                     metrics=metrics)
        stack.callback(rt.locator.close)

        rt.readiness = Readiness(settings)
        stack.push_async_callback(rt.readiness.close)
        rt.reads = HotReads(engine)
        await rt.reads.start()
        stack.push_async_callback(rt.reads.close)
        rt.writes = HotWrites(engine)
        await rt.writes.start()
        stack.push_async_callback(rt.writes.close)

        # How new cookies are written, chosen once: in bulk in the child process (the server's
        # own bulk write while the child starts or after it is lost), in bulk in the server, or,
        # on a database without a connection of its own, one by one.
        bulk: writer.Bulk | None = writer.InProcess(rt) if rt.writes.available else None
        if bulk is not None and settings.writer_process == "on":
            rt.writer_process = bulk = WriterProcess(settings, fallback=bulk)
            stack.push_async_callback(rt.writer_process.close)
        rt.cookie_writes = writer.CookieWrites(rt, bulk)

        rt.notifier = Notifier(rt)
        stack.push_async_callback(rt.notifier.aclose)
        rt.emails = emails or EmailTemplates(settings)
        rt.mailer = Mailer(settings, engine, rt.instance_id, rt.reconnect_signer, rt.emails)
        stack.push_async_callback(rt.cancel_background)  # after every loop below has stopped

        rt.revocations = RevocationWatcher(engine, rt.device_cache, poll_s=max(0.2, settings.token_cache_ttl_s / 2))
        rt.toucher = Toucher(engine, settings.cookie_repeat_window_s, settings.touch_flush_s, rt.locator)
        rt.runner = AttemptRunner(rt)
        rt.profiles = ProfileReader(rt)
        rt.cookie_writer = GroupCommit("new cookies", rt.cookie_writes.together, rt.cookie_writes.alone)
        rt.scheduler = Scheduler(rt)
        if start_background:
            # Started in this order, stopped in the reverse: the sweep first (no new attempts), then
            # the queued cookies are written, the attempts in flight end, last-seen times flush.
            loops = [rt.revocations, rt.toucher, rt.profiles, rt.runner, rt.cookie_writer]
            if settings.scheduler == "on":
                loops.append(rt.scheduler)
            if wanted_at_start(settings):
                rt.webhook_registration = WebhookRegistration(rt)
                loops.append(rt.webhook_registration)
            for loop in loops:
                loop.start()
                stack.push_async_callback(loop.stop)
        yield rt
