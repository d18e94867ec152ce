"""A faithful, in-memory Unipile v1 simulator (SIMULATED) for tests and the local demo.

It follows the Unipile v1 contract (``../shared/docs/unipile-v1-contract.md``, relative to the
repository), one module per section:

- ``transport``: §0, the ``/api/v1`` base, the ``X-API-KEY`` check, the call log and latency;
- ``accounts``: §1, §2, §4, cookie connect/reconnect with scriptable outcomes and checkpoints,
  account list/get/delete/restart, users/me;
- ``checkpoints``: §3, solve and resend;
- ``webhooks``: §6, webhook registration and account-status webhook delivery;
- ``hosted``: §7, hosted-auth links with a clickable page;
- ``control``: the ``/_sim`` control API (its own token, ``X-Sim-Token``) that scripts and inspects it;
- ``redact``: the fingerprints it keeps and shows in place of cookies and secrets;
- ``responses`` and ``inputs``: the answer and error shapes of §5, request-body checks, paging;
- ``state``: the in-memory model all of them read and change.

``create_simulator_app(config)`` returns a Litestar app; ``run_simulator`` serves it.
"""
from __future__ import annotations

import msgspec
from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from cookiesync.simulator.accounts import (
    create_account,
    delete_account,
    get_account,
    list_accounts,
    reconnect_account,
    restart_account,
    users_me,
)
from cookiesync.simulator.checkpoints import resend_checkpoint, solve_checkpoint
from cookiesync.simulator.control import CONTROL
from cookiesync.simulator.hosted import hosted_link, hosted_page, hosted_submit
from cookiesync.simulator.responses import BadRequest, NotFound, bad_request, http_exception, missing, unexpected
from cookiesync.simulator.state import SimState, SimulatorConfig
from cookiesync.simulator.transport import SimulatorApp
from cookiesync.simulator.webhooks import create_webhook, delete_webhook, list_webhooks

__all__ = ["SimulatorConfig", "create_simulator_app", "run_simulator", "simulator_mount"]


def create_simulator_app(config: SimulatorConfig | None = None) -> Litestar:
    """A fresh simulator with its own in-memory state (``app.state.sim``)."""
    config = config if config is not None else SimulatorConfig()
    app = SimulatorApp(
        route_handlers=[
            create_account, reconnect_account, list_accounts, get_account, delete_account, restart_account,
            solve_checkpoint, resend_checkpoint, users_me, hosted_link, list_webhooks, create_webhook,
            delete_webhook, hosted_page, hosted_submit, CONTROL,
        ],
        exception_handlers={BadRequest: bad_request, NotFound: missing, HTTPException: http_exception,
                            Exception: unexpected},
        openapi_config=OpenAPIConfig(title="Unipile simulator (SIMULATED)", version="1.0.0"),
        request_max_body_size=1024 * 1024,
        logging_config=None,  # leave the host process's logging (and its redaction) alone
    )
    app.state.sim = SimState(msgspec.structs.replace(config))
    return app


def run_simulator(host: str, port: int, config: SimulatorConfig | None = None) -> None:
    """Serve the simulator with uvicorn until interrupted (blocking)."""
    import uvicorn

    uvicorn.run(create_simulator_app(config), host=host, port=port, log_level="info")


def simulator_mount(path: str, sim_app: Litestar):
    """A Litestar route handler that mounts `sim_app` at `path` inside another Litestar app.

    Example: ``route_handlers.append(simulator_mount("/unipile-sim", create_simulator_app(cfg)))``.
    Hosted-auth URLs follow the prefix even when ``public_url`` is empty.
    """
    from litestar.handlers import asgi
    from litestar.types import Receive, Scope, Send

    @asgi(path, is_mount=True, copy_scope=True, include_in_schema=False)
    async def unipile_simulator(scope: Scope, receive: Receive, send: Send) -> None:
        await sim_app(scope, receive, send)

    return unipile_simulator
