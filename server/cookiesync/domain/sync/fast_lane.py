"""The sync fast lane: an ASGI middleware in front of the sync handler.

It serves a good sync (a known device under its limit, a valid body) straight from the
ASGI messages, through the same `services.admit` and `services.sync` as the handler,
without the request object, dependency resolution and response object Litestar builds per
request: that machinery cost more CPU than the whole of an unchanged sync. Anything else
(no token, a bad body, an unknown device, a limit, a body too large) goes on to the handler
untouched, which words every error, so the two never answer differently.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from cookiesync.domain.sync import services
from cookiesync.domain.sync.schemas import SyncIn, SyncOut
from cookiesync.http import bearer_from, read_body, replay

if TYPE_CHECKING:
    from cookiesync.runtime import Runtime

_decode = msgspec.json.Decoder(SyncIn).decode
_encode = msgspec.json.Encoder().encode
_HEADERS = [(b"content-type", b"application/json")]


def sync_fast_lane(app: ASGIApp) -> ASGIApp:
    async def lane(scope: Scope, receive: Receive, send: Send) -> None:
        rt: Runtime = scope["app"].state.rt
        messages: list[Message] = []
        body = await read_body(receive, messages, rt.settings.max_body_bytes)
        out = None if body is None else await serve(rt, scope, body)
        if out is None:
            await app(scope, replay(messages, receive), send)
            return
        payload = _encode(out)
        await send({"type": "http.response.start", "status": 200,
                    "headers": _HEADERS + [(b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    return lane


async def serve(rt: Runtime, scope: Scope, body: bytes) -> SyncOut | None:
    """The sync's answer, or None to leave the request to the handler."""
    authorization = forwarded = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"x-forwarded-for":
            forwarded = value
    token = bearer_from(authorization.decode("latin-1"))
    if token is None:
        return None
    try:
        data = _decode(body)
    except msgspec.DecodeError:
        return None
    client = scope.get("client")
    try:
        device, ip = await services.admit(rt, token, client[0] if client else None,
                                          lambda: forwarded.decode("latin-1"))
    except HTTPException:
        return None
    return await services.sync(rt, device, data, ip)
