"""Request helpers shared by the controllers: client IP, bearer tokens, rate limits."""
from __future__ import annotations

import ipaddress

from litestar import Request
from litestar.exceptions import HTTPException, NotAuthorizedException


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
        raise NotAuthorizedException(detail="missing bearer token (Authorization: Bearer <token>)")
    return token


def bearer_from(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
