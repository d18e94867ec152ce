"""The production server's HTTP protocol (cookiesync.serving), whose responses reach the
socket in one write (tests/unit/test_coalescing_transport.py), on a real socket: HTTP/1.1
still behaves: keep-alive, pipelining, Connection: close, large bodies."""
from __future__ import annotations

import socket

import httpx
from litestar import Litestar, get, post

from cookiesync.serving import BoundedHttpToolsProtocol, uvicorn_options
from tests.support.servers import ServerThread


@get("/small", sync_to_thread=False)
def small() -> dict:
    return {"ok": True}


@get("/large", sync_to_thread=False)
def large() -> str:
    return "x" * (2 * 1024 * 1024)


@post("/echo", sync_to_thread=False)
def echo(data: dict) -> dict:
    return data


def _read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """Read `count` responses that carry a content-length, from one socket."""
    buf, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, "connection closed early"
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = int([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0])
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed early"
            rest += chunk
        out.append(head + b"\r\n\r\n" + rest[:length])
        buf = rest[length:]
    return out


def test_production_protocol_speaks_http11() -> None:
    assert uvicorn_options()["http"].func is BoundedHttpToolsProtocol  # a subclass of the coalescing one
    app = Litestar([small, large, echo])
    with ServerThread(app) as srv:
        with httpx.Client(base_url=srv.url) as client:  # keep-alive: several requests, one connection
            for i in range(20):
                assert client.post("/echo", json={"i": i}).json() == {"i": i}
            body = client.get("/large").text
            assert len(body) == 2 * 1024 * 1024 and set(body) == {"x"}
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:  # pipelined
            sock.sendall(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n" * 3)
            responses = _read_responses(sock, 3)
            assert all(r.startswith(b"HTTP/1.1 200") and r.endswith(b'{"ok":true}') for r in responses)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:  # Connection: close
            sock.sendall(b"GET /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200") and data.endswith(b'{"ok":true}')
