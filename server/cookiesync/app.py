"""The app factory. `create_app(settings)` is all a test or a server needs."""
from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cookiesync.db.engine import current_revision, head_revision, make_engine
from cookiesync.db.hot import HotReads, HotWrites
from cookiesync.domain.email.outbox import Mailer
from cookiesync.domain.integrator.controllers import IntegratorController
from cookiesync.domain.notifications.services import Notifier
from cookiesync.domain.reconnect.controllers import ReconnectController
from cookiesync.domain.reconnect.services import AttemptRunner
from cookiesync.domain.support.api import SupportAPI
from cookiesync.domain.support.pages import SupportPages
from cookiesync.domain.sync.controllers import ExtensionController
from cookiesync.domain.sync.services import RevocationWatcher, Toucher
from cookiesync.domain.sync.writer import cookie_writer
from cookiesync.domain.sync.writer_process import WriterProcess
from cookiesync.domain.webhooks.controllers import WebhookController
from cookiesync.logs import configure_logging, request_id_middleware
from cookiesync.metrics import Metrics
from cookiesync.runtime import Runtime
from cookiesync.scheduler.sweep import Scheduler
from cookiesync.security import KeyRing
from cookiesync.settings import Settings, ensure_local_secrets
from cookiesync.unipile.client import UnipileClient

log = logging.getLogger("cookiesync")
SIM_MOUNT = "/unipile-sim"
SIM_API_KEY = "sim-api-key"


class Health(msgspec.Struct):
    status: str
    detail: str | None = None


class RuntimeProvider:
    """Hands handlers the runtime this app's lifespan built. It takes no request
    arguments, so Litestar resolves it without parsing anything per request."""

    def __init__(self) -> None:
        self.rt: Runtime | None = None

    def __call__(self) -> Runtime:
        return self.rt


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def healthz() -> Health:
    return Health("ok")


@get("/readyz", include_in_schema=False)
async def readyz(rt: Runtime) -> Response[Health]:
    try:
        current = await current_revision(rt.engine)
    except Exception as exc:
        return Response(Health("unavailable", f"database: {type(exc).__name__}"), status_code=503)
    if current != head_revision():
        return Response(Health("unavailable", f"migrations not current ({current} != {head_revision()})"),
                        status_code=503)
    return Response(Health("ok"))


@get("/metrics", include_in_schema=False)
async def metrics(rt: Runtime) -> Response[bytes]:
    from cookiesync.domain.support.stats import refresh_gauges

    await refresh_gauges(rt)
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def internal_error(request: Request, exc: Exception) -> Response:
    """Log it (the redaction filter applies), answer Litestar's JSON shape, never a trace."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Response({"status_code": 500, "detail": "Internal Server Error"}, status_code=500)


def unipile_target(settings: Settings) -> tuple[str, str]:
    if settings.unipile_simulated:
        return settings.base_url + SIM_MOUNT, settings.unipile_api_key or SIM_API_KEY
    return settings.unipile_dsn, settings.unipile_api_key


def app_from_env() -> Litestar:
    """Factory for `uvicorn --factory` / several workers: settings from the environment."""
    return create_app(Settings.from_env())


def create_app(settings: Settings, *, start_background: bool = True) -> Litestar:
    settings = ensure_local_secrets(settings, say=log.warning)
    configure_logging(settings.log_level, settings.effective_log_format)
    provide_runtime = RuntimeProvider()
    route_handlers: list = [ExtensionController, IntegratorController, WebhookController, ReconnectController,
                            healthz, readyz, metrics, SupportPages, SupportAPI]
    if settings.unipile_simulated:
        from cookiesync.simulator.app import SimulatorConfig, create_simulator_app, simulator_mount

        sim = create_simulator_app(SimulatorConfig(
            api_key=settings.unipile_api_key or SIM_API_KEY, public_url=settings.base_url + SIM_MOUNT,
            webhook_url=settings.base_url + "/v1/webhooks/unipile/account-status",
            webhook_header=settings.webhook_header, webhook_secret=settings.webhook_secret,
        ))
        route_handlers.append(simulator_mount(SIM_MOUNT, sim))

    @asynccontextmanager
    async def lifespan(app: Litestar):
        engine = make_engine(settings.database)
        dsn, key = unipile_target(settings)
        metrics_ = Metrics()
        # keep a connection per attempt in flight, and a few for calls outside the runner
        unipile = UnipileClient(dsn, key, timeout_s=settings.unipile_timeout_s, on_call=metrics_.unipile_call,
                                keep_alive=max(20, settings.unipile_concurrency + 8))
        rt = Runtime(settings=settings, engine=engine, keyring=KeyRing(settings.encryption_keys), unipile=unipile,
                     metrics=metrics_)
        rt.runner = AttemptRunner(rt)
        rt.mailer = Mailer(settings, engine, rt.instance_id)
        rt.toucher = Toucher(engine, settings.cookie_repeat_window_s, settings.touch_flush_s)
        rt.cookie_writer = cookie_writer(rt)
        rt.reads = HotReads(engine)
        await rt.reads.start()
        rt.writes = HotWrites(engine)
        await rt.writes.start()
        if settings.writer_process == "on" and rt.writes.available:
            rt.writer_process = WriterProcess(settings)
        rt.notifier = Notifier(rt)
        watcher = RevocationWatcher(rt)
        app.state.rt = rt
        provide_runtime.rt = rt
        scheduler = Scheduler(rt)
        if settings.unipile_simulated:
            log.warning("Unipile is SIMULATED (no COOKIESYNC_UNIPILE_DSN set): %s", dsn)
        if not settings.smtp_enabled:
            log.info("no SMTP configured: emails stay in the outbox")
        if start_background:
            rt.runner.start()
            rt.toucher.start()
            rt.cookie_writer.start()
            watcher.start()
            if settings.scheduler == "on":
                scheduler.start()
        # What import and start-up allocated lives as long as the process: move it out of the
        # collector's reach, so a full collection scans only what requests allocate since
        # (full collections otherwise paused the loop 70-100 ms under load; benchmarks/README).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if start_background:
                if settings.scheduler == "on":
                    await scheduler.stop()
                await rt.cookie_writer.stop()
                await rt.runner.stop()
                await rt.toucher.stop()
                await watcher.stop()
            gc.unfreeze()  # an app built again in this process (tests) must not pin this one's objects
            for task in list(rt.background):
                task.cancel()
            await unipile.aclose()
            await rt.notifier.aclose()
            await rt.reads.close()
            await rt.writes.close()
            if rt.writer_process is not None:
                await rt.writer_process.close()
            await engine.dispose()

    return Litestar(
        route_handlers=route_handlers,
        dependencies={"rt": Provide(provide_runtime, sync_to_thread=False)},
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        exception_handlers={HTTP_500_INTERNAL_SERVER_ERROR: internal_error},
        logging_config=None,
        middleware=[request_id_middleware],  # ours (cookiesync.logs) stays in charge, with its redaction
        openapi_config=OpenAPIConfig(title="cookiesync", version="0.1.0", path="/schema"),
        debug=False,
    )


__all__ = ["create_app"]
