"""How `cookiesync serve` runs uvicorn.

One change to uvicorn's HTTP protocol: the response head and body, which the ASGI
app hands over as two messages in the same event-loop step, reach the socket in
one write instead of two: each socket write is a system call, a large share of what a
cached sync costs (README, Benchmarks).
"""
from __future__ import annotations

import asyncio

try:  # uvloop + httptools are uvicorn's fast path ("uvicorn[standard]")
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover
    HttpToolsProtocol = None


class CoalescingTransport:
    """Holds what is written during one event-loop step and writes it at the end of
    the step, joined. Everything else is the wrapped transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


if HttpToolsProtocol is not None:
    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol over a `CoalescingTransport`."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CoalescingTransport(transport, asyncio.get_running_loop()))
else:  # pragma: no cover
    CoalescingHttpToolsProtocol = None


def uvicorn_options() -> dict:
    """The server options shared by `cookiesync serve` and the benchmarks."""
    options: dict = dict(log_level="warning", proxy_headers=False)
    if CoalescingHttpToolsProtocol is not None:
        options["http"] = CoalescingHttpToolsProtocol
    return options
