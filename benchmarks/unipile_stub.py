"""Unipile for the sweep benchmark, in its own process on loopback.

Prefers the project's simulator (``cookiesync.simulator.app``) when it exists;
until then (or with ``--stub``) a minimal ASGI stand-in answers the two calls an
attempt makes -- ``POST /api/v1/accounts`` and ``POST /api/v1/accounts/{id}`` -- and the profile
read that follows a connect (``GET /api/v1/accounts/{id}``, ``GET /api/v1/users/me``),
with success after ``latency_ms``, and takes the simulator's control call
``POST /_sim/config {"latency_ms": N}``. Both answer control calls only with ``--control-token``
in ``X-Sim-Token``.

Run: ``python -m benchmarks.unipile_stub --port P --api-key K --control-token T [--stub]``.
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import itertools
import json


def create_stub_app(api_key: str, control_token: str, latency_ms: float = 0.0):
    state = {"latency_ms": float(latency_ms), "calls": 0}
    ids = itertools.count(1)

    async def read_body(receive) -> bytes:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                return body

    async def reply(send, status: int, payload: dict) -> None:
        raw = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]})
        await send({"type": "http.response.body", "body": raw})

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path, method = scope["path"], scope["method"]
        body = await read_body(receive)
        headers = dict(scope["headers"])
        if path.startswith("/_sim/") and not hmac.compare_digest(headers.get(b"x-sim-token", b""),
                                                                  control_token.encode()):
            return await reply(send, 401, {"status": 401, "type": "errors/missing_credentials", "title": "bad token"})
        if path == "/_sim/config" and method == "POST":
            cfg = json.loads(body or b"{}")
            if "latency_ms" in cfg:
                state["latency_ms"] = float(cfg["latency_ms"])
            return await reply(send, 200, {"latency_ms": state["latency_ms"], "calls": state["calls"]})
        if path == "/_sim/stats":
            return await reply(send, 200, dict(state))
        if headers.get(b"x-api-key", b"").decode() != api_key:
            return await reply(send, 401, {"status": 401, "type": "errors/missing_credentials", "title": "bad key"})
        if method == "POST" and path.startswith("/api/v1/accounts"):
            state["calls"] += 1
            if state["latency_ms"]:
                await asyncio.sleep(state["latency_ms"] / 1000)
            rest = path[len("/api/v1/accounts"):].strip("/")
            if rest:
                return await reply(send, 200, {"object": "AccountReconnected", "account_id": rest})
            return await reply(send, 201, {"object": "AccountCreated", "account_id": f"stub-acc-{next(ids)}"})
        if method == "GET" and path.startswith("/api/v1/accounts/"):
            # the profile read after each connect (domain/profile): a name, no member to compare
            state["reads"] = state.get("reads", 0) + 1
            account_id = path.rsplit("/", 1)[1]
            return await reply(send, 200, {"object": "Account", "type": "LINKEDIN", "id": account_id,
                                           "name": "Stub Member", "sources": [{"id": account_id, "status": "OK"}],
                                           "connection_params": {"im": {"premiumFeatures": []}}})
        if method == "GET" and path == "/api/v1/users/me":
            return await reply(send, 200, {"object": "AccountOwnerProfile", "provider": "LINKEDIN"})
        return await reply(send, 404, {"status": 404, "type": "errors/resource_not_found", "title": "not found"})

    return app


def simulator_available() -> bool:
    try:
        import cookiesync.simulator.app  # noqa: F401
        return True
    except Exception:
        return False


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--api-key", required=True)
    p.add_argument("--control-token", required=True)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--stub", action="store_true", help="use the stand-in even if the simulator exists")
    args = p.parse_args()
    if not args.stub and simulator_available():
        from cookiesync.simulator.app import SimulatorConfig, create_simulator_app

        app = create_simulator_app(SimulatorConfig(api_key=args.api_key, control_token=args.control_token,
                                                   public_url=f"http://127.0.0.1:{args.port}",
                                                   latency_ms=args.latency_ms))
    else:
        app = create_stub_app(args.api_key, args.control_token, args.latency_ms)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
