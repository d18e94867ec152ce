"""Request heads and bodies a real `cookiesync serve` bounds (cookiesync.serving.BoundedHttpToolsProtocol,
settings max_header_bytes, max_header_fields, header_timeout_s, body_timeout_s), over raw sockets:
a head too large or with too many fields is answered 431 and closed without being read whole; a head
or body that trickles is answered 408 or closed; a connection that sends nothing is closed; requests
within the limits, and its several workers, behave as before. Issue #18, item 3."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from litestar import Litestar, get

from tests.support.servers import ServerThread, free_port
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
SHORT = "1"  # seconds: header_timeout_s and body_timeout_s of the served process


class Serve:
    """`cookiesync serve` (local mode, embedded simulator, SQLite) in its own process."""

    def __init__(self, data: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("COOKIESYNC_")}
        environ.update(COOKIESYNC_DATA_DIR=str(data), COOKIESYNC_PORT=str(self.port), COOKIESYNC_HOST="127.0.0.1",
                       COOKIESYNC_WRITER_PROCESS="off", COOKIESYNC_SCHEDULER="off",
                       PYTHONPATH=os.pathsep.join([str(ROOT / "server"), str(ROOT)]), **env)
        self.log = data.parent / f"serve-{self.port}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cookiesync.cli", "serve", *args], env=environ,
                                         stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_for(self.healthy, timeout=60, what=lambda _v: f"cookiesync serve did not answer (exit {self.proc.poll()})")

    def healthy(self) -> bool:
        try:
            return httpx.get(self.base + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proc.terminate()  # SIGTERM: uvicorn's graceful shutdown
        try:
            self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    svc = Serve(tmp_path_factory.mktemp("limits") / "data",
                COOKIESYNC_HEADER_TIMEOUT_S=SHORT, COOKIESYNC_BODY_TIMEOUT_S=SHORT)
    yield svc
    svc.stop()


def status_of(sock: socket.socket) -> str:
    """The status code of the answer on `sock`, "closed" if the server ended the connection without
    one (or reset it while the client was still sending), "no answer" if it did neither in time."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except TimeoutError:  # the socket's own timeout: the server neither answered nor closed
        return "no answer"
    except (ConnectionError, OSError):
        pass
    parts = data.split(b"\r\n", 1)[0].split()
    return parts[1].decode() if len(parts) > 1 else "closed"


def send_head(port: int, fields: list[bytes], path: bytes = b"/healthz") -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n")
        return status_of(sock)


def head_of(size: int) -> list[bytes]:
    """One field that makes `GET /healthz HTTP/1.1`, its Host and itself `size` bytes in all."""
    rest = size - len(b"GET /healthz HTTP/1.1\r\nHost: t\r\n") - len(b"X-Pad: \r\n") - 2
    return [b"X-Pad: " + b"p" * rest]


def test_a_16_mib_header_is_refused_before_it_is_read(served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ")
            chunk = b"a" * 65536
            for _ in range(16 * 1024 * 1024 // len(chunk)):
                sock.sendall(chunk)
            sock.sendall(b"\r\n\r\n")
        except (ConnectionError, OSError):
            pass  # the server closed while we were still sending: what it should do
        assert status_of(sock) in ("431", "closed")
    assert served.healthy()


def test_the_head_is_bounded_at_16_kib(served) -> None:
    assert send_head(served.port, head_of(8 * 1024)) == "200"
    assert send_head(served.port, head_of(16 * 1024)) == "200"
    assert send_head(served.port, head_of(16 * 1024 + 1)) == "431"
    r = httpx.get(served.base + "/healthz", headers={f"X-Field-{i}": "v" * 120 for i in range(60)})  # 8 KiB
    assert r.status_code == 200


def test_a_head_is_bounded_at_100_fields(served) -> None:
    assert send_head(served.port, [b"X-F%d: v" % i for i in range(99)]) == "200"  # with Host: 100
    assert send_head(served.port, [b"X-F%d: v" % i for i in range(100)]) == "431"  # 101


def test_a_head_that_trickles_is_cut_off(served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=15) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        cut = False
        for _ in range(20):  # 20 bytes at 4 a second: 5 s against a 1 s allowance
            time.sleep(0.25)
            try:
                sock.sendall(b"s")
            except (ConnectionError, OSError):
                cut = True
                break
        if not cut:
            sock.sendall(b"\r\n\r\n")
        assert status_of(sock) in ("408", "closed")


def test_a_body_that_trickles_is_cut_off(served) -> None:
    body = b'{"pairing_code": "TRICKLE-000", "extension_version": "1.0"}'
    with socket.create_connection(("127.0.0.1", served.port), timeout=15) as sock:
        sock.sendall(b"POST /v1/extension/pair HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        for i in range(min(20, len(body))):  # 20 bytes at 4 a second: 5 s against a 1 s allowance
            time.sleep(0.25)
            try:
                sock.sendall(body[i:i + 1])
            except (ConnectionError, OSError):
                break
        else:
            sock.sendall(body[20:])
        assert status_of(sock) in ("408", "closed")
    # the client's own slowness is no server fault: no error line, no traceback per such connection
    time.sleep(0.5)
    log = served.log.read_text()
    assert "unhandled error" not in log and "Traceback" not in log, log[-2000:]


def test_a_connection_that_sends_nothing_is_closed(served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        assert status_of(sock) == "closed"


def test_keep_alive_and_bodies_within_the_limits_are_unchanged(served) -> None:
    with httpx.Client(base_url=served.base, timeout=10) as client:  # one connection, several requests
        for _ in range(5):
            assert client.get("/healthz").status_code == 200
        r = client.post("/v1/extension/pair", json={"pairing_code": "WRONG-1", "extension_version": "1.0"})
        assert r.status_code in (400, 404)
    # a body that comes in the same reads as its head is the body's to bound (413), not the head's
    big = b'{"pairing_code": "' + b"x" * 100_000 + b'", "extension_version": "1.0"}'
    with socket.create_connection(("127.0.0.1", served.port), timeout=15) as sock:
        sock.sendall(b"POST /v1/extension/pair HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(big) + big)
        assert status_of(sock) == "413"


def test_several_workers_keep_the_limits(tmp_path, simulator) -> None:
    svc = Serve(tmp_path / "data", "--workers", "2", COOKIESYNC_UNIPILE_DSN=simulator.url,
                COOKIESYNC_UNIPILE_API_KEY=simulator.api_key)
    try:
        for _ in range(4):  # new connections, spread over both workers
            assert send_head(svc.port, head_of(16 * 1024 + 1)) == "431"
            assert send_head(svc.port, [b"X-F%d: v" % i for i in range(100)]) == "431"
            assert send_head(svc.port, head_of(8 * 1024)) == "200"
    finally:
        svc.stop()


@get("/slow")
async def slow() -> dict:
    import asyncio

    await asyncio.sleep(0.5)
    return {"ok": True}


def test_a_pipelined_head_too_large_ends_the_connection_after_the_answer_due() -> None:
    """The earlier request's answer is being made when the next head is refused: it is sent whole,
    then the connection closes (no 431 can be put in the middle of it)."""
    with ServerThread(Litestar([slow])) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
                         b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"p" * (20 * 1024) + b"\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b'{"ok":true}')
    assert data.count(b"HTTP/1.1 ") == 1
