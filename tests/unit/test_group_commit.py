"""Group commit (`db.batch.GroupCommit`), on its own: stopping finishes the batch in flight
and answers each item, and after the stop each item is written alone."""
from __future__ import annotations

import asyncio

import pytest

from cookiesync.db.batch import GroupCommit


def test_group_commit_stop_finishes_the_batch_in_flight_and_answers_each_item() -> None:
    async def scenario() -> None:
        writing, calls = asyncio.Event(), []

        async def together(items):
            calls.append(list(items))
            writing.set()
            await asyncio.sleep(0.2)
            return [ValueError(item) if item == "bad" else item.upper() for item in items]

        async def alone(item):
            return "alone:" + item

        group = GroupCommit("test", together, alone)
        group.start()
        first = asyncio.ensure_future(group.submit("a"))
        await writing.wait()
        queued = [asyncio.ensure_future(group.submit(item)) for item in ("b", "bad")]
        await asyncio.sleep(0)
        await group.stop()  # while "a" is being written, "b" and "bad" queued behind it
        assert await first == "A" and await queued[0] == "B"
        with pytest.raises(ValueError):
            await queued[1]
        assert calls == [["a"], ["b", "bad"]], "nothing cut off, nothing written twice"
        assert await group.submit("c") == "alone:c", "after stop, each item is written alone"

    asyncio.run(scenario())
