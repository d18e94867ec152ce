"""Contract §0 (transport): the ``/api/v1`` base path and the ``X-API-KEY`` check, in a thin ASGI
layer in front of the routes that also logs every API call (``/_sim/calls``), adds the configured
latency and marks each answer with ``x-unipile-simulator: 1``."""
from __future__ import annotations

import asyncio
import hmac
import re
import urllib.parse
from typing import Any

import msgspec
from litestar import Litestar
from litestar.utils.scope.state import CONNECTION_STATE_KEY

from cookiesync.simulator.responses import JSON_CT
from cookiesync.simulator.state import SimState, iso_now

API = "/api/v1"
MISSING_CREDENTIALS = {"status": 401, "type": "errors/missing_credentials", "title": "Missing credentials"}
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

        if scope["type"] != "http" or not scope["path"].startswith(API + "/"):
            await super().__call__(scope, receive, marked_send)
            return
        await self._api_call(scope, receive, marked_send)

    async def _api_call(self, scope, receive, send) -> None:
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
        path = scope["path"].rstrip("/") or "/"
        sim.seq += 1
        record = {"seq": sim.seq, "at": iso_now(), "method": scope["method"], "path": path, "status": None,
                  "body": parsed, "account_id": _account_in(path, parsed, scope.get("query_string", b"").decode())}
        sim.calls.append(record)

        key = next((v for k, v in scope["headers"] if k == b"x-api-key"), b"")
        if not hmac.compare_digest(key, sim.config.api_key.encode()):
            record["status"] = 401
            body = msgspec.json.encode(MISSING_CREDENTIALS)
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", JSON_CT.encode()), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if sim.config.latency_ms > 0 and not (scope["method"] == "POST" and AUTH_PATH.match(path)):
            await asyncio.sleep(sim.config.latency_ms / 1000)  # auth calls sleep inside their intent

        out: list[bytes] = []

        async def recording_send(message) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
            elif message["type"] == "http.response.body" and record["account_id"] is None:
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
