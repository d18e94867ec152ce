"""Contract §0 (transport): the ``/api/v1`` base path and the ``X-API-KEY`` check, in a thin ASGI
layer in front of the routes that also logs every API call (``/_sim/calls``, cookies and secrets
as fingerprints), adds the configured latency and marks each answer with ``x-unipile-simulator: 1``.

The same layer asks the control token (``X-Sim-Token``) of every other request but the hosted-auth
page, so the control API (and any route added later) cannot be reached without it. Both checks
read the path as the router will (repeated slashes and dot segments resolved): the router treats
``/api//v1/accounts`` as ``/api/v1/accounts``, so a check on the raw path could be walked around."""
from __future__ import annotations

import asyncio
import hmac
import posixpath
import re
import urllib.parse
from typing import Any

import msgspec
from litestar import Litestar
from litestar.utils.scope.state import CONNECTION_STATE_KEY

from cookiesync.simulator.redact import fingerprint, scrub
from cookiesync.simulator.responses import JSON_CT
from cookiesync.simulator.state import SimState, iso_now

API = "/api/v1"
HOSTED = "/hosted/"  # the page a user's browser opens: no key, like account.unipile.com (contract §7)
CONTROL_TOKEN_HEADER = "X-Sim-Token"
MISSING_CREDENTIALS = {"status": 401, "type": "errors/missing_credentials", "title": "Missing credentials"}
MISSING_CONTROL_TOKEN = MISSING_CREDENTIALS | {
    "detail": f"The simulator's control API needs its token in the {CONTROL_TOKEN_HEADER} header."}
AUTH_PATH = re.compile(r"^/api/v1/accounts(?:/(?!checkpoint/?\Z)[^/]+)?/?\Z")
ACCOUNT_IN_PATH = re.compile(r"^/api/v1/accounts/(?!checkpoint(?:/|\Z))([^/]+)")


def _account_in(path: str, body: Any, query: str) -> str | None:
    if m := ACCOUNT_IN_PATH.match(path):
        return urllib.parse.unquote(m.group(1))
    if isinstance(body, dict) and isinstance(body.get("account_id"), str):
        return body["account_id"]
    if isinstance(body, dict) and isinstance(body.get("reconnect_account"), str):
        return body["reconnect_account"]
    return (urllib.parse.parse_qs(query).get("account_id") or [None])[0]


def routed_path(path: str) -> str:
    """The path as the router matches it: one slash between segments, ``.``/``..`` resolved."""
    return "/" + posixpath.normpath(path).lstrip("/") if path else "/"


def _header(scope: dict, name: bytes) -> bytes:
    return next((v for k, v in scope["headers"] if k == name), b"")


def _authorized(given: bytes, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given, expected.encode())


async def _refuse(send, answer: dict) -> None:
    body = msgspec.json.encode(answer)
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", JSON_CT.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _mount_prefix(scope: dict) -> str:
    """When mounted inside another app, the part of the raw path the outer router stripped."""
    raw = scope.get("raw_path")
    if not raw:
        return ""
    raw_path = urllib.parse.unquote(raw.decode("latin-1")).rstrip("/")
    inner = scope["path"].rstrip("/")
    if inner and raw_path.endswith(inner) and raw_path != inner:
        return raw_path[: len(raw_path) - len(inner)]
    return ""


class SimulatorApp(Litestar):
    """Litestar plus a thin ASGI layer in front of the routes (see `__call__`)."""

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[override]
        if scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
            return
        # When mounted inside cookiesync, don't inherit the outer app's cached connection state.
        scope = dict(scope)
        scope["state"] = {k: v for k, v in (scope.get("state") or {}).items() if k != CONNECTION_STATE_KEY}
        scope["sim.prefix"] = _mount_prefix(scope)

        async def marked_send(message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"x-unipile-simulator", b"1")]
            await send(message)

        if scope["type"] != "http":
            return  # no websocket routes: a connection nobody accepts is closed by the server
        path = routed_path(scope["path"])
        if path == API or path.startswith(API + "/"):
            await self._api_call(scope, receive, marked_send, path)
            return
        if not path.startswith(HOSTED) and not _authorized(_header(scope, CONTROL_TOKEN_HEADER.lower().encode()),
                                                           self.state.sim.config.control_token):
            await _refuse(marked_send, MISSING_CONTROL_TOKEN)
            return
        await super().__call__(scope, receive, marked_send)

    async def _api_call(self, scope, receive, send, path: str) -> None:
        sim: SimState = self.state.sim
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        try:
            parsed: Any = msgspec.json.decode(raw) if raw.strip() else None
        except msgspec.DecodeError:
            parsed = raw.decode(errors="replace")
        sim.seq += 1
        # The log keeps the body as /_sim/calls shows it: an unparsed one only as its fingerprint,
        # since a cookie may be anywhere in it.
        query = scope.get("query_string", b"").decode()
        record = {"seq": sim.seq, "at": iso_now(), "method": scope["method"], "path": path, "query": query,
                  "status": None,
                  "body": scrub(parsed) if not isinstance(parsed, str) else {"unparsed": fingerprint(parsed)},
                  "account_id": _account_in(path, parsed, query)}
        sim.calls.append(record)

        if not _authorized(_header(scope, b"x-api-key"), sim.config.api_key):
            record["status"] = 401
            await _refuse(send, MISSING_CREDENTIALS)
            return
        if sim.config.latency_ms > 0 and not (scope["method"] == "POST" and AUTH_PATH.match(path)):
            await asyncio.sleep(sim.config.latency_ms / 1000)  # auth calls sleep inside their intent

        out: list[bytes] = []

        async def recording_send(message) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
            elif message["type"] == "http.response.body" and record["account_id"] is None and scope["method"] == "POST":
                # only a POST answers a new account's id (a connect): a listing's body is not kept
                out.append(message.get("body", b""))
            await send(message)

        await super().__call__(scope, replay, recording_send)
        if record["account_id"] is None and out:
            try:
                answer = msgspec.json.decode(b"".join(out))
                if isinstance(answer, dict) and isinstance(answer.get("account_id"), str):
                    record["account_id"] = answer["account_id"]
            except msgspec.DecodeError:
                pass
