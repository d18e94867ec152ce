"""How `cookiesync serve` runs uvicorn.

Two changes to uvicorn's HTTP protocol:
- the response head and body, which the ASGI app hands over as two messages in the same
  event-loop step, reach the socket in one write instead of two: each socket write is a
  system call, a large share of what a cached sync costs (README, Benchmarks);
- a request's head (request line and header fields) is bounded in bytes and in fields, and
  must arrive in time, as must its body (`RequestLimits`, from the settings). uvicorn's
  httptools protocol has no bound of its own: httptools gathers a header value by
  concatenating what each read brings, so a 64 MiB header was held whole (and copied over
  and over) before the app saw the request.
"""
from __future__ import annotations

import asyncio
import functools
import logging

import msgspec

from cookiesync.settings import Settings

try:  # uvloop + httptools are uvicorn's fast path ("uvicorn[standard]")
    import httptools
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
except ImportError:  # pragma: no cover
    HttpToolsProtocol = None

log = logging.getLogger("cookiesync.serving")


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


class RequestLimits(msgspec.Struct, frozen=True):
    """What a request's head and body may cost the server (the settings of the same names)."""

    max_header_bytes: int
    max_header_fields: int
    header_timeout_s: float
    body_timeout_s: float

    @classmethod
    def from_settings(cls, s: Settings) -> "RequestLimits":
        return cls(max_header_bytes=s.max_header_bytes, max_header_fields=s.max_header_fields,
                   header_timeout_s=s.header_timeout_s, body_timeout_s=s.body_timeout_s)


class _HeadTooLarge(Exception):
    """Raised in a parser callback: httptools stops parsing right there."""


if CoalescingHttpToolsProtocol is not None:
    class BoundedHttpToolsProtocol(CoalescingHttpToolsProtocol):
        """`CoalescingHttpToolsProtocol` whose requests keep to `RequestLimits`.

        Head bytes are counted before the parser sees them: outside a body, the parser is fed at
        most what is left of `max_header_bytes`, and a head still open when that is used up is
        answered 431 and the connection closed, so the excess is never read into memory. Where a
        head starts in the middle of a read (after a pipelined request), the parser cannot say
        where: its bytes are counted from the next read on (at most one read's worth more is held),
        and the head is measured when complete. The fields are counted when the head is complete:
        within the byte bound they cannot cost much. A head must be complete `header_timeout_s`
        after the read that brought its first byte (after the connection opened, for the first
        one), a body `body_timeout_s` after the read that completed its head: else 408 and close;
        a timer that ends while the wait is the server's (reading paused for the app, the client
        waiting for our 100 Continue) starts again. The timers are armed only when a read ends with a request incomplete, so a request that
        arrives in one read costs none. uvicorn's keep-alive timeout between requests is unchanged.
        """

        def __init__(self, *args, limits: RequestLimits, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.limits = limits
            self._head_bytes = 0        # read outside a body since the last message ended
            self._head_open = False     # the parser is inside a head
            self._in_body = False       # ... inside a body
            self._ended_in_read = False  # a message ended in the read being parsed
            self._mid_read = False      # the open head started after it, in the same read
            self._head_timer: asyncio.TimerHandle | None = None
            self._body_timer: asyncio.TimerHandle | None = None
            self._refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # a connection that never sends a whole head is timed like a head that trickles
            self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timers()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            self._unset_keepalive_if_required()
            self._ended_in_read = False
            limit = self.limits.max_header_bytes
            if self._in_body or self._head_bytes + len(data) <= limit:  # all of it may be parsed at once
                if not self._in_body:
                    self._head_bytes += len(data)
                if not self._feed(data):
                    return
            else:
                view = memoryview(data)  # slices without copying; httptools reads memoryviews
                while view:
                    if self._in_body:  # a body: its own bound is the app's (max_body_bytes)
                        piece, view = view, view[:0]
                    else:
                        room = limit - self._head_bytes
                        if room <= 0:
                            self._refuse_head(431, "Request Header Fields Too Large")
                            return
                        piece, view = view[:room], view[room:]
                        self._head_bytes += len(piece)
                    if not self._feed(piece):
                        return
            if self._refused or self.transport.is_closing():
                return
            if self._in_body:
                if self._body_timer is None:
                    self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timed_out)
            elif self._head_open and self._head_timer is None:
                self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

        def _feed(self, data) -> bool:
            """uvicorn's `data_received` for one piece, and 431 for a head too large. False: stop."""
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserCallbackError as exc:
                if isinstance(exc.__context__, _HeadTooLarge):
                    self._refuse_head(431, "Request Header Fields Too Large")
                else:
                    self._bad_request()
                return False
            except httptools.HttpParserError:
                self._bad_request()
                return False
            except httptools.HttpParserUpgrade:
                self._cancel_timers()  # the connection is the WebSocket protocol's from here
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
                return False
            return True

        def _bad_request(self) -> None:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)

        # parser callbacks: where a head or a body begins and ends
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_open = True
            self._mid_read = self._ended_in_read

        def on_headers_complete(self) -> None:
            if len(self.headers) > self.limits.max_header_fields or (
                    self._mid_read and self._parsed_head_bytes() > self.limits.max_header_bytes):
                raise _HeadTooLarge
            self._head_open = False
            self._in_body = True
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_body = False
            self._head_bytes = 0
            self._ended_in_read = True
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None
            super().on_message_complete()

        def _parsed_head_bytes(self) -> int:
            """The head as parsed: its URL and fields, each with its ": " and CRLF, a little less
            than it was on the wire (the method, the version, spaces around values)."""
            return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

        # refusals
        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self.flow.read_paused:  # pipelined requests wait for the app: the wait is the server's
                self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)
                return
            if not self._head_open:  # nothing of a request came: close, as an idle connection
                self._refused = True
                self.transport.close()
            else:
                self._refuse_head(408, "Request Timeout")

        def _body_timed_out(self) -> None:
            self._body_timer = None
            if self.transport.is_closing() or self.cycle is None:
                return
            if self.flow.read_paused or self.cycle.waiting_for_100_continue:
                # the wait is the server's (the app is not reading yet, or the client waits for
                # our 100 Continue), not the client's: time it again
                self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timed_out)
                return
            self._refused = True
            log.warning("request body not complete within %g s; connection closed", self.limits.body_timeout_s)
            cycle = self.cycle
            cycle.disconnected = True  # the app's receive() answers http.disconnect
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()
            else:
                self._answer_and_close(408, "Request Timeout")

        def _refuse_head(self, status: int, reason: str) -> None:
            self._refused = True
            self._cancel_timers()
            log.warning("request head refused: %d %s (limits: %d bytes, %d fields, %g s)", status, reason,
                        self.limits.max_header_bytes, self.limits.max_header_fields, self.limits.header_timeout_s)
            if self.cycle is not None and not self.cycle.response_complete:
                # an earlier request's answer is on its way (pipelining): no answer can go in its
                # middle. Read no more; the connection ends after the answers already due.
                self.cycle.keep_alive = False
                self.flow.pause_reading()
            else:
                self._answer_and_close(status, reason)

        def _answer_and_close(self, status: int, reason: str) -> None:
            body = reason.encode("ascii")
            content = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                content.extend([name, b": ", value, b"\r\n"])
            content.extend([b"content-type: text/plain; charset=utf-8\r\n",
                            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                            b"connection: close\r\n\r\n", body])
            self.transport.write(b"".join(content))
            self.transport.close()

        def _cancel_timers(self) -> None:
            for timer in (self._head_timer, self._body_timer):
                if timer is not None:
                    timer.cancel()
            self._head_timer = self._body_timer = None
else:  # pragma: no cover
    BoundedHttpToolsProtocol = None


def uvicorn_options(settings: Settings | None = None) -> dict:
    """The server options shared by `cookiesync serve` (each of its workers too), the tests'
    servers and the benchmarks. `settings`: where the request limits come from (None: the
    defaults)."""
    limits = RequestLimits.from_settings(settings or Settings())
    options: dict = dict(log_level="warning", proxy_headers=False)
    if BoundedHttpToolsProtocol is not None:
        # uvicorn calls `http` with (config, server_state, app_state): a partial carries the limits,
        # and pickles by reference, as `--workers` needs to hand the config to each worker
        options["http"] = functools.partial(BoundedHttpToolsProtocol, limits=limits)
    else:  # pragma: no cover - h11: only its bound on an incomplete head, no timers
        options["h11_max_incomplete_event_size"] = limits.max_header_bytes
    return options
