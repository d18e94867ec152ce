"""The Unipile client against raw servers on loopback: a call ends at its timeout however the
answer trickles in, and its keep-alive connections are reused across its pools."""
from __future__ import annotations

import asyncio
import time

from cookiesync.domain.reconnect.policy import Failure
from cookiesync.unipile.client import CookieCredentials, UnipileClient


def test_a_call_ends_at_its_timeout_even_when_the_answer_trickles_in() -> None:
    """httpx times each read on its own: a server sending a byte every 0.2 s never trips a 1 s
    read timeout. The whole call must still end at 1 s (the attempt lease relies on it)."""
    async def scenario() -> None:
        async def trickle(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n")
            try:
                for _ in range(400):
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(0.2)
            except ConnectionError:
                pass
            writer.close()

        server = await asyncio.start_server(trickle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = UnipileClient(f"http://127.0.0.1:{port}", "key", timeout_s=1.0)
        started = time.monotonic()
        try:
            result = await client.connect(CookieCredentials("AQEDAR-trickle-cookie", None, "UA/1.0"))
        finally:
            await client.aclose()
            server.close()
        assert time.monotonic() - started < 2.5, "the 400-byte answer would have taken 80 s"
        assert result.outcome == "failed" and result.http_status is None and result.failure is Failure.TRANSIENT
    asyncio.run(scenario())

def test_calls_in_flight_reuse_their_connections_across_the_pools() -> None:
    """The keep-alive connections are spread over several small pools (httpcore's cost per call
    grows with the square of a pool): together they still keep one connection per call in
    flight, so a second round of as many calls opens none."""
    async def scenario() -> None:
        peers: set[int] = set()
        gate = asyncio.Event()
        waiting = 0

        async def answer(reader, writer):
            nonlocal waiting
            peers.add(writer.get_extra_info("peername")[1])
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    waiting += 1
                    if waiting % 24 == 0:
                        gate.set()
                    await gate.wait()  # every call of a round is in flight at once
                    body = b'{"object": "AccountReconnected", "account_id": "acc"}'
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (len(body), body))
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = UnipileClient(f"http://127.0.0.1:{port}", "key", timeout_s=5.0, keep_alive=24)
        creds = CookieCredentials("AQEDAR-pooled-cookie", None, "UA/1.0")
        try:
            assert len(client.pools) == 3
            for _round in range(2):
                gate.clear()
                results = await asyncio.gather(*(client.reconnect("acc", creds) for _ in range(24)))
                assert all(r.outcome == "connected" for r in results), results[0]
        finally:
            await client.aclose()
            server.close()
        assert len(peers) == 24, f"{len(peers)} connections for 2 rounds of 24 calls"
    asyncio.run(scenario())
