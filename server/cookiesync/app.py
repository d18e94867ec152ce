"""The app factory. `create_app(settings)` is all a test or a server needs."""
from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.di import Provide
from litestar.exceptions import InternalServerException, NotAuthorizedException, NotFoundException
from litestar.openapi import OpenAPIConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cookiesync.apidocs import schema as apidocs
from cookiesync.apidocs.ui import LocalSwaggerUI
from cookiesync.db.engine import current_revision, head_revision
from cookiesync.domain.email.rendering import EmailTemplates
from cookiesync.domain.integrator.controllers import IntegratorController
from cookiesync.domain.reconnect.controllers import ReconnectController
from cookiesync.domain.support.api import SupportAPI
from cookiesync.domain.support.pages import SupportPages
from cookiesync.domain.sync.controllers import ExtensionController
from cookiesync.domain.webhooks.controllers import WebhookController
from cookiesync.logs import configure_logging, request_id_middleware
from cookiesync.metrics import metrics_access
from cookiesync.runtime import RT, SIM_MOUNT, Runtime, open_runtime, sim_control_token, unipile_target
from cookiesync.settings import Settings, ensure_local_secrets

log = logging.getLogger("cookiesync")


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
async def readyz(rt: RT) -> Response[Health]:
    try:
        current = await current_revision(rt.engine)
    except Exception as exc:
        return Response(Health("unavailable", f"database: {type(exc).__name__}"), status_code=503)
    if current != head_revision():
        return Response(Health("unavailable", f"migrations not current ({current} != {head_revision()})"),
                        status_code=503)
    problem = await rt.readiness.problem()
    if problem is not None:
        return Response(Health("unavailable", problem), status_code=503)
    return Response(Health("ok"))


@get("/metrics", include_in_schema=False)
async def metrics(rt: RT, request: Request) -> Response[bytes]:
    from cookiesync.domain.support.stats import refresh_gauges

    refused = metrics_access(rt.settings.mode, rt.settings.metrics_token, request.headers.get("authorization", ""))
    if refused == 404:
        raise NotFoundException()
    if refused is not None:
        raise NotAuthorizedException(detail="metrics need Authorization: Bearer <COOKIESYNC_METRICS_TOKEN>",
                                     headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    await refresh_gauges(rt)
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# Litestar's words when the client went away before its body was all read (it left, or the
# server's body_timeout_s cut it off): the client's doing, not a server fault, and an attacker
# could otherwise buy one logged traceback per slow connection.
CLIENT_GONE = "client disconnected prematurely"


def internal_error(request: Request, exc: Exception) -> Response:
    """Log it (the redaction filter applies), answer Litestar's JSON shape, never a trace."""
    if isinstance(exc, InternalServerException) and exc.detail == CLIENT_GONE:
        log.info("%s %s: the client left before its body was read", request.method, request.url.path)
        return Response({"status_code": 400, "detail": "the request's body did not arrive"}, status_code=400)
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Response({"status_code": 500, "detail": "Internal Server Error"}, status_code=500)


def app_from_env() -> Litestar:
    """Factory for `uvicorn --factory` / several workers: settings from the environment."""
    return create_app(Settings.from_env())


def create_app(settings: Settings, *, start_background: bool = True) -> Litestar:
    settings = ensure_local_secrets(settings, say=log.warning)
    configure_logging(settings.log_level, settings.effective_log_format)
    emails = EmailTemplates(settings)  # the operator's templates: checked now, before anything serves
    provide_runtime = RuntimeProvider()
    route_handlers: list = [ExtensionController, IntegratorController, WebhookController, ReconnectController,
                            healthz, readyz, metrics, SupportPages, SupportAPI]
    if settings.unipile_simulated:
        from cookiesync.simulator.app import SimulatorConfig, create_simulator_app, simulator_mount

        sim = create_simulator_app(SimulatorConfig(
            api_key=settings.unipile_api_key, control_token=sim_control_token(settings),
            public_url=settings.base_url + SIM_MOUNT,
            webhook_url=settings.base_url + "/v1/webhooks/unipile/account-status",
            webhook_header=settings.webhook_header, webhook_secret=settings.webhook_secret,
        ))
        route_handlers.append(simulator_mount(SIM_MOUNT, sim))

    @asynccontextmanager
    async def lifespan(app: Litestar):
        async with open_runtime(settings, start_background=start_background, emails=emails) as rt:
            app.state.rt = rt
            provide_runtime.rt = rt
            if settings.unipile_simulated:
                log.warning("Unipile is SIMULATED (no COOKIESYNC_UNIPILE_DSN set): %s", unipile_target(settings)[0])
            if not settings.smtp_enabled:
                log.info("no SMTP configured: emails stay in the outbox")
            # What import and start-up allocated lives as long as the process: move it out of the
            # collector's reach, so a full collection scans only what requests allocate since
            # (full collections otherwise paused the loop under load; README, Benchmarks).
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()  # an app built again in this process (tests) must not pin this one's objects

    app = Litestar(
        route_handlers=route_handlers,
        dependencies={"rt": Provide(provide_runtime, sync_to_thread=False)},
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        exception_handlers={HTTP_500_INTERNAL_SERVER_ERROR: internal_error},
        logging_config=None,
        middleware=[request_id_middleware],  # ours (cookiesync.logs) stays in charge, with its redaction
        openapi_config=OpenAPIConfig(title="cookiesync", version="0.1.0", path="/schema",
                                     components=apidocs.components(settings), render_plugins=[LocalSwaggerUI()]),
        debug=False,
    )
    apidocs.complete(app, settings)
    return app


__all__ = ["create_app"]
