"""A task that runs for the app's lifetime: the base of every loop the runtime starts."""
from __future__ import annotations

import asyncio


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
