"""Request helpers shared by the controllers and the ASGI middleware: client IP, bearer
tokens, the rate limit's answer, reading a body from ASGI messages and replaying it, and the
`no_store` middleware of the controllers whose answers carry personal data."""
from __future__ import annotations

import ipaddress

from litestar import Request
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

MISSING_BEARER = "missing bearer token (Authorization: Bearer <token>)"


class TooManyRequests(HTTPException):
    status_code = 429

    def __init__(self, retry_after: float, detail: str = "too many requests; slow down") -> None:
        super().__init__(detail=detail, headers={"Retry-After": str(int(retry_after + 0.999))})


def client_ip(request: Request, trusted) -> str | None:
    """The peer address, or the first untrusted hop of X-Forwarded-For when the
    peer is a configured trusted proxy."""
    peer = request.client.host if request.client else None
    return client_ip_from(peer, lambda: request.headers.get("x-forwarded-for", ""), trusted)


def client_ip_from(peer: str | None, forwarded_for, trusted) -> str | None:
    """`client_ip` from the raw parts: `forwarded_for()` gives the header, read only when needed."""
    if not peer or not trusted:
        return peer
    try:
        chain = [ipaddress.ip_address(peer)]
    except ValueError:
        return peer
    if not any(chain[0] in net for net in trusted):
        return peer
    hops = [h.strip() for h in forwarded_for().split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            addr = ipaddress.ip_address(hop)
        except ValueError:
            return str(chain[-1])
        if not any(addr in net for net in trusted):
            return str(addr)
        chain.append(addr)
    return str(chain[-1])


def bearer_token(request: Request) -> str:
    token = bearer_from(request.headers.get("authorization", ""))
    if token is None:
        raise NotAuthorizedException(detail=MISSING_BEARER)
    return token


def bearer_from(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def read_body(receive: Receive, messages: list[Message], limit: int) -> bytes | None:
    """The whole body, or None when it is over `limit` or the client left; every message
    read is kept in `messages`, for `replay` to hand on."""
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


def replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` again from the start: the messages already read, then the rest."""
    pending = iter(messages)

    async def replayed() -> Message:
        return next(pending, None) or await receive()

    return replayed


_NO_STORE = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))


def no_store(app: ASGIApp) -> ASGIApp:
    """Controller middleware: every answer without a Cache-Control of its own gets `no-store` (and
    HTTP/1.0's `Pragma: no-cache`), so no browser or proxy cache keeps the emails, addresses and user
    agents the support console shows. As route middleware it sits outside Litestar's per-route
    exception handler, so error answers get it too; a handler that chose its own caching (the
    console's static files) keeps it."""
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    message = dict(message, headers=headers + list(_NO_STORE))
            await send(message)

        await app(scope, receive, send_no_store)

    return middleware
