"""Every error of contract §5 lands in exactly one class."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest

from cookiesync.domain.reconnect.policy import Failure
from cookiesync.unipile.client import CookieCredentials, UnipileClient, classify, expires_on

T, U, R, C = Failure.TRANSIENT, Failure.NEEDS_USER, Failure.RESTART_FLOW, Failure.CONFIGURATION

TABLE = [
    # 400: our request is wrong
    (400, "errors/invalid_parameters", C), (400, "errors/missing_parameters", C), (400, "errors/invalid_request", C),
    (400, "errors/malformed_request", C), (400, "errors/limit_too_high", C), (400, "errors/invalid_body", C),
    # 401
    (401, "errors/missing_credentials", C), (401, "errors/invalid_credentials", U),
    (401, "errors/expired_credentials", U), (401, "errors/multiple_sessions", U), (401, "errors/wrong_account", U),
    (401, "errors/invalid_proxy_credentials", C), (401, "errors/invalid_checkpoint_solution", U),
    (401, "errors/checkpoint_error", U), (401, "errors/disconnected_account", U),
    (401, "errors/disconnected_feature", U), (401, "errors/expired_link", U), (401, None, U),
    # 403
    (403, "errors/insufficient_permissions", C), (403, "errors/account_restricted", U),
    (403, "errors/account_mismatch", U), (403, "errors/session_mismatch", U),
    (403, "errors/feature_not_subscribed", U), (403, "errors/action_required", U), (403, "errors/unheard_of", U),
    # 404, 422
    (404, "errors/resource_not_found", C), (404, "errors/invalid_resource_identifier", C),
    (422, "errors/cannot_resend_yet", C), (422, "errors/invalid_account", C),
    # transient
    (407, None, T), (408, "errors/request_timeout", T), (409, None, T), (429, "errors/too_many_requests", T),
    (500, "errors/unexpected_error", T), (500, "errors/provider_error", T), (502, None, T),
    (503, "errors/no_client_session", T), (503, "errors/no_channel", T), (503, "errors/no_handler", T),
    (503, "errors/network_down", T), (503, "errors/service_unavailable", T), (504, "errors/request_timeout", T),
    (None, "ReadTimeout", T), (None, "ConnectError", T), (599, None, T),
    # restart the auth flow
    (425, None, R), (425, "errors/too_early", R), (500, "errors/authentication_intent_error", R),
    # 501: not something retrying fixes
    (501, "errors/feature_not_implemented", C),
]


@pytest.mark.parametrize("status,etype,want", TABLE)
def test_classification(status, etype, want) -> None:
    assert classify(status, etype) is want


def test_prefix_is_optional() -> None:
    assert classify(401, "wrong_account") is classify(401, "errors/wrong_account") is U


def test_expires_on_has_milliseconds_and_z() -> None:
    when = datetime(2026, 7, 1, 12, 30, 0, 123456, tzinfo=timezone.utc)
    assert expires_on(when) == "2026-07-01T12:30:00.123Z"


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
            result = await client.connect(CookieCredentials("AQEDAR-trickle-cookie", None, "UA/1.0", None))
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
        creds = CookieCredentials("AQEDAR-pooled-cookie", None, "UA/1.0", None)
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
