"""Group commit: many small writes that arrive together share one transaction."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Generic, TypeVar

from cookiesync.background import BackgroundLoop

log = logging.getLogger("cookiesync.db")

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(BackgroundLoop, Generic[Item, Result]):
    """Items submitted while one transaction runs are written together by the next.
    Each caller gets its own result only after the commit that holds its item, so
    nothing is acted on before it is durable. `together` may answer an exception for
    an item (it failed alone); if it raises, nothing of the batch was written, and its
    items are retried one transaction each, so one bad item cannot fail its neighbours."""

    def __init__(self, name: str, together: Callable[[list[Item]], Awaitable[list[Result | Exception]]],
                 alone: Callable[[Item], Awaitable[Result]], max_batch: int = 256) -> None:
        self.name = name
        self.together = together
        self.alone = alone
        self.max_batch = max_batch
        self.queue: list[tuple[Item, asyncio.Future]] = []
        self.wake = asyncio.Event()
        self.stopping = False

    async def submit(self, item: Item) -> Result:
        if self.task is None or self.task.done():  # not running (tests, shutdown): write it alone
            return await self.alone(item)
        future = asyncio.get_running_loop().create_future()
        self.queue.append((item, future))
        self.wake.set()
        return await future

    async def stop(self) -> None:
        """Write what is queued, then end. A batch is never cut off mid-transaction: whether
        it was written would be unknown, and writing it again would write it twice."""
        self.stopping = True
        self.wake.set()
        if self.task is not None:
            try:
                await self.task
            except Exception:
                log.exception("%s: the writer ended with an error", self.name)
        queued, self.queue = self.queue, []
        await self._one_by_one(queued)

    async def _loop(self) -> None:
        while not self.stopping:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                batch, self.queue = self.queue[:self.max_batch], self.queue[self.max_batch:]
                await self._write(batch)

    async def _write(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        try:
            results = await self.together([item for item, _f in batch])
        except asyncio.CancelledError:
            for _item, future in batch:
                future.cancel()
            raise
        except Exception:
            log.info("%s: group write of %d failed; writing them one by one", self.name, len(batch), exc_info=True)
            await self._one_by_one(batch)
            return
        for (_item, future), result in zip(batch, results):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _one_by_one(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        for item, future in batch:
            if future.done():
                continue
            try:
                future.set_result(await self.alone(item))
            except Exception as exc:
                future.set_exception(exc)
