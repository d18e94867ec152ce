"""The production server's one-write transport (`cookiesync.serving.CoalescingTransport`): the
writes of one loop step reach the socket's transport as one, and close flushes first. A
transport that records its writes stands in for the socket."""
from __future__ import annotations

import asyncio

from cookiesync.serving import CoalescingTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


async def test_writes_of_one_loop_step_reach_the_transport_as_one() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"ok")
    assert inner.writes == []
    assert transport.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    await asyncio.sleep(0)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    transport.write(b"tail")
    transport.close()  # close flushes first
    assert inner.writes[-1] == b"tail" and inner.closed
    assert transport.get_write_buffer_size() == 0  # nothing left pending for the flush scheduled earlier
    await asyncio.sleep(0)
    assert len(inner.writes) == 2  # the scheduled flush found nothing left
