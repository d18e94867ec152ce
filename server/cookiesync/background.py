"""A task that runs for the app's lifetime: the base of every loop the runtime starts."""
from __future__ import annotations

import asyncio
import logging


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


class KickedLoop(BackgroundLoop):
    """A loop that sleeps until `kick()`, then runs `run_once()`; kicks that come while it runs fold
    into one more pass (an `asyncio.Event`, not a queue). A pass that fails is logged and the loop
    waits a second before it listens again, so a broken database does not spin it."""

    failure_message = "background pass failed"
    gather_s = 0.0  # wait this long after a kick before the pass, so the kicks of that time share it
    logger = logging.getLogger("cookiesync")

    def __init__(self) -> None:
        self.wake = asyncio.Event()

    def kick(self) -> None:
        self.wake.set()

    async def run_once(self) -> object:
        raise NotImplementedError

    async def _loop(self) -> None:
        while True:
            await self.wake.wait()
            if self.gather_s:
                await asyncio.sleep(self.gather_s)
            self.wake.clear()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.logger.exception(self.failure_message)
                await asyncio.sleep(1)
