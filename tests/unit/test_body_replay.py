"""The sync fast lane's body reading, on its own: a body that comes in several ASGI messages
is read whole, one over the limit is left unread, and what was read is handed on, in order,
to the handler."""
from __future__ import annotations

from cookiesync.http import read_body, replay


def test_the_lane_reads_a_body_in_many_messages_and_hands_every_one_on() -> None:
    """Over loopback a small body comes in one message; here it comes in three."""
    import asyncio

    messages = [{"type": "http.request", "body": b"ab", "more_body": True},
                {"type": "http.request", "body": b"cd", "more_body": True},
                {"type": "http.request", "body": b"e", "more_body": False}]

    async def scenario() -> None:
        source = iter(messages)

        async def receive():
            return next(source)

        kept: list = []
        assert await read_body(receive, kept, 10) == b"abcde" and kept == messages
        # over the limit: the lane stops reading; the handler gets what was read, then the rest, in order
        source = iter(messages)
        kept = []
        assert await read_body(receive, kept, 3) is None and kept == messages[:2]
        replayed = replay(kept, receive)
        assert [await replayed() for _ in messages] == messages

    asyncio.run(scenario())
