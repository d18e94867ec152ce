"""How the simulator answers: JSON in the exact content type the SDK parses (contract §0),
HTML for the hosted-auth page, and errors in Unipile's shape (contract §5):
``{"status", "type": "errors/<kind>", "title", "detail"?}``, also for Litestar's own HTTP errors."""
from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

JSON_CT = "application/json; charset=utf-8"
HTML_CT = "text/html; charset=utf-8"


def jresp(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content=msgspec.json.encode(data), status_code=status, media_type=JSON_CT, headers=headers)


def err(status: int, kind: str, title: str, detail: str | None = None,
        headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"status": status, "type": f"errors/{kind}", "title": title}
    if detail:
        body["detail"] = detail
    return jresp(body, status, headers)


def html(text: str, status: int = 200) -> Response:
    return Response(content=text.encode(), status_code=status, media_type=HTML_CT)


class BadRequest(Exception):
    """A 400 of contract §5; raised anywhere in a handler, answered by `bad_request`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail

    def response(self) -> Response:
        titles = {"missing_parameters": "Missing parameters", "invalid_parameters": "Invalid parameters",
                  "malformed_request": "Malformed request", "invalid_request": "Invalid request",
                  "limit_too_high": "Limit too high"}
        return err(400, self.kind, titles.get(self.kind, "Bad request"), self.detail)


def not_found(what: str, ident: str) -> Response:
    return err(404, "resource_not_found", "Resource not found", f"No {what} with id {ident!r}.")


class NotFound(Exception):
    """A 404 of contract §5 for a missing resource; raised anywhere in a handler, answered by
    `missing` (`inputs.account_of`, `inputs.pop_or_404`)."""

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(what)
        self.what, self.ident = what, ident


# --- exception handlers: ours, and Litestar's own (routing, body size, bugs), in Unipile's shape
_HTTP_KINDS = {400: ("malformed_request", "Malformed request"), 401: ("missing_credentials", "Missing credentials"),
               404: ("resource_not_found", "Resource not found"), 405: ("invalid_request", "Method not allowed"),
               413: ("invalid_request", "Request too large")}


def bad_request(request: Request, exc: BadRequest) -> Response:
    return exc.response()


def missing(request: Request, exc: NotFound) -> Response:
    return not_found(exc.what, exc.ident)


def http_exception(request: Request, exc: HTTPException) -> Response:
    kind, title = _HTTP_KINDS.get(exc.status_code, ("unexpected_error", "Unexpected error"))
    return err(exc.status_code, kind, title, str(exc.detail) if exc.detail else None)


def unexpected(request: Request, exc: Exception) -> Response:
    return err(500, "unexpected_error", "Unexpected error", f"Simulator bug: {type(exc).__name__}: {exc}")
