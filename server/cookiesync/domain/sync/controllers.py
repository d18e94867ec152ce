"""The extension's API: pair, sync, unpair."""
from __future__ import annotations

import msgspec
from litestar import Controller, Request, delete, post
from litestar.exceptions import NotAuthorizedException, ValidationException
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from cookiesync.domain.sync import services
from cookiesync.domain.sync.schemas import PairIn, PairOut, SyncIn, SyncOut
from cookiesync.http import TooManyRequests, bearer_from, bearer_token, client_ip, client_ip_from
from cookiesync.runtime import Runtime


async def _device(rt: Runtime, request: Request) -> services.Device:
    device = await services.device_for_token(rt, bearer_token(request))
    if device is None:
        raise NotAuthorizedException(detail="unknown or revoked device token: pair the extension again")
    return device


def sync_fast_lane(app: ASGIApp) -> ASGIApp:
    """Serves a good sync (a known device under its limit, a valid body) straight from the
    ASGI messages, calling the same `services.sync` as the handler, without the request
    object, dependency resolution and response object Litestar builds per request: that
    machinery cost more CPU than the whole of an unchanged sync. Anything else (an
    unknown token, a bad body, a limit, a body too large) goes on to the handler
    untouched, which words every error, so the two never answer differently."""
    decode = msgspec.json.Decoder(SyncIn).decode
    encode = msgspec.json.Encoder().encode

    async def lane(scope: Scope, receive: Receive, send: Send) -> None:
        rt: Runtime = scope["app"].state.rt
        messages: list[Message] = []
        body = await _read_body(receive, messages, rt.settings.max_body_bytes)
        out = None if body is None else await _serve(rt, scope, body, decode)
        if out is None:
            await app(scope, _replay(messages, receive), send)
            return
        payload = encode(out)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    return lane


async def _serve(rt: Runtime, scope: Scope, body: bytes, decode) -> SyncOut | None:
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
        data = decode(body)
    except msgspec.DecodeError:
        return None
    device = await services.device_for_token(rt, token)
    if device is None or services.sync_limiter(rt).check(device.id) is not None:
        return None
    client = scope.get("client")
    ip = client_ip_from(client[0] if client else None, lambda: forwarded.decode("latin-1"), rt.trusted_proxies)
    return await services.sync(rt, device, data, ip)


async def _read_body(receive: Receive, messages: list[Message], limit: int) -> bytes | None:
    """The whole body, or None when it is over `limit` or the client left; every message
    read is kept in `messages`, for the handler to read again."""
    chunks, size = [], 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` again from the start: the messages already read, then the rest."""
    pending = iter(messages)

    async def replayed() -> Message:
        return next(pending, None) or await receive()

    return replayed


class ExtensionController(Controller):
    path = "/v1/extension"
    tags = ["extension"]

    @post("/pair", status_code=HTTP_201_CREATED, summary="Trade a pairing code for a device token")
    async def pair(self, data: PairIn, request: Request, rt: Runtime) -> PairOut:
        ip = client_ip(request, rt.trusted_proxies)
        limiter = rt.cache("pair_limiter", lambda: services.RateLimiter(limit=10, window_s=600))
        wait = limiter.check(f"pair:{ip}", cost=0)
        if wait is not None:
            raise TooManyRequests(wait, "too many pairing attempts from this address; try again later")
        try:
            token, user_id = await services.pair(rt, data.pairing_code, data.extension_version, ip)
        except services.PairingError as exc:
            limiter.check(f"pair:{ip}")  # only failures count towards the limit
            raise ValidationException(detail=str(exc)) from None
        return PairOut(device_token=token, user_id=user_id, next_sync_in_s=rt.settings.sync_interval_s)

    @post("/sync", status_code=200, summary="Post the browser's LinkedIn cookies",
          middleware=[sync_fast_lane])
    async def sync(self, data: SyncIn, request: Request, rt: Runtime) -> SyncOut:
        device = await _device(rt, request)
        wait = services.sync_limiter(rt).check(device.id)
        if wait is not None:
            raise TooManyRequests(wait)
        return await services.sync(rt, device, data, client_ip(request, rt.trusted_proxies))

    @delete("/device", status_code=HTTP_204_NO_CONTENT, summary="Unpair: revoke this device's token")
    async def unpair(self, request: Request, rt: Runtime) -> None:
        device = await _device(rt, request)
        await services.revoke_device(rt, device, actor=f"device:{device.id}")
