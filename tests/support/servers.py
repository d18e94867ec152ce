"""Run an ASGI app under uvicorn on a real loopback port, in its own thread and loop.

Tests talk to it over real sockets, exactly as the extension, Unipile or an
integrator would.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from benchmarks.processes import free_port  # never the same port twice in one process
from cookiesync.serving import uvicorn_options

__all__ = ["ServerThread", "free_port"]


class ServerThread:
    """Context manager: `with ServerThread(app) as srv: httpx.get(srv.url + "/x")`."""

    def __init__(self, app: Any, port: int | None = None, host: str = "127.0.0.1", settings: Any = None) -> None:
        self.host = host
        self.port = port or free_port()
        # the production server's options (cookiesync.serving): every test runs on them, with the
        # request limits of `settings` (None: the defaults)
        config = uvicorn.Config(app, host=host, port=self.port, lifespan="on", **uvicorn_options(settings))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 listener, e.g. [::1]
        return f"http://{host}:{self.port}"

    def start(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("server thread died during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start within 15 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
