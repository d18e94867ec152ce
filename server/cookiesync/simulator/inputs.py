"""How the handlers read a request: the simulator's state, a JSON-object body whose fields are
checked the way Unipile answers 400 (contract §5), http(s) URLs, and the ``cursor``/``limit``
paging of list endpoints (contract §4)."""
from __future__ import annotations

import base64
import re
import urllib.parse
from typing import Any

import msgspec
from litestar import Request

from cookiesync.simulator.responses import BadRequest, NotFound
from cookiesync.simulator.state import Account, SimState


def sim_of(request: Request) -> SimState:
    return request.app.state.sim


def account_of(sim: SimState, account_id: str) -> Account:
    """The account, or the 404 Unipile answers for an unknown id."""
    account = sim.accounts.get(account_id)
    if account is None:
        raise NotFound("account", account_id)
    return account


def pop_or_404(items: dict, what: str, ident: str):
    """Take `ident` out of `items`, or answer the 404 Unipile answers for an unknown id."""
    if ident not in items:
        raise NotFound(what, ident)
    return items.pop(ident)


async def json_object(request: Request) -> dict:
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("missing_parameters", "A JSON body is required.")
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise BadRequest("malformed_request", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("invalid_request", "The body must be a JSON object.")
    return body


def check_fields(body: dict, allowed: set[str], required: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest("invalid_parameters", f"Unknown field(s): {', '.join(unknown)}.")
    missing = [f for f in required if body.get(f) in (None, "")]
    if missing:
        raise BadRequest("missing_parameters", f"Missing required field(s): {', '.join(missing)}.")


def want(body: dict, name: str, kind: type | tuple[type, ...], *, nullable: bool = True) -> Any:
    value = body.get(name)
    if value is None and nullable:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BadRequest("invalid_parameters", f"Field {name!r} has the wrong type.")
    return value


def check_url(value: Any, name: str) -> None:
    if value is None:
        return
    if not isinstance(value, str) or urllib.parse.urlsplit(value).scheme not in ("http", "https"):
        raise BadRequest("invalid_parameters", f"{name} must be an http(s) URL.")


# --- paging: the cursor is the next offset, base64url without padding ----------------------------
def _integer(text: str) -> int:
    """`int()` of ASCII digits only: `int()` itself also takes "١٢", " 5" and "5\n"."""
    if not re.fullmatch(r"-?[0-9]{1,9}", text):
        raise ValueError(text)
    return int(text)


def read_cursor(params: Any) -> tuple[int, int]:
    raw_limit = params.get("limit")
    try:
        limit = _integer(raw_limit) if raw_limit is not None else 100
    except ValueError:
        raise BadRequest("invalid_parameters", "limit must be an integer.") from None
    if limit > 250:
        raise BadRequest("limit_too_high", "limit must be between 1 and 250.")
    if limit < 1:
        raise BadRequest("invalid_parameters", "limit must be between 1 and 250.")
    offset = 0
    if cursor := params.get("cursor"):
        try:
            offset = _integer(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("invalid_parameters", "cursor is not valid.") from None
    return offset, limit


def cut_page(items: list, offset: int, limit: int) -> tuple[list, str | None]:
    chunk = items[offset:offset + limit]
    nxt = offset + limit
    return chunk, (base64.urlsafe_b64encode(str(nxt).encode()).decode().rstrip("=") if nxt < len(items) else None)
