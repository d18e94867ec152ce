"""A real cookiesync on a loopback port (`start_service`), the `Service` handle the tests
drive it with, and what its integrator API says of a link."""
from __future__ import annotations

import asyncio

import httpx
import msgspec

from cookiesync.settings import Settings
from tests.support.servers import ServerThread, free_port
from tests.support.wait import wait_for

# every cookie value and device token the tests send: the run-wide log check (tests/conftest.py)
# fails when one of them is in any log line
USED_SECRETS: set[str] = set()


class Service:
    """A running cookiesync with its settings, an integrator API key and an httpx client."""

    def __init__(self, settings: Settings, server: ServerThread, api_key: str) -> None:
        self.settings = settings
        self.server = server
        self.url = server.url
        self.api_key = api_key
        self.http = httpx.Client(base_url=self.url, timeout=30)

    @property
    def rt(self):
        return self.server.server.config.app.state.rt  # type: ignore[attr-defined]

    def integrator(self, method: str, path: str, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}"} | kw.pop("headers", {})
        return self.http.request(method, path, headers=headers, **kw)

    def new_user(self, user_id: str, email: str | None = "user@example.com") -> None:
        r = self.integrator("PUT", f"/v1/users/{user_id}", json={"email": email, "display_name": "Test User"})
        assert r.status_code == 200, r.text

    def pair(self, user_id: str, version: str = "1.0.0") -> str:
        code = self.integrator("POST", f"/v1/users/{user_id}/pairing-codes").json()["code"]
        r = self.http.post("/v1/extension/pair", json={"pairing_code": code, "extension_version": version})
        assert r.status_code == 201, r.text
        USED_SECRETS.add(r.json()["device_token"])
        return r.json()["device_token"]

    def sync(self, token: str, **payload) -> httpx.Response:
        body = {"li_at": "AQEDAR-default-cookie-0001", "li_a": None,
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0", "plain_id": "111",
                "extension_version": "1.0.0"} | payload
        USED_SECRETS.update(v for v in (body["li_at"], body["li_a"]) if isinstance(v, str) and len(v) >= 8)
        return self.http.post("/v1/extension/sync", json=body, headers={"Authorization": f"Bearer {token}"})

    def accounts(self, user_id: str) -> list[dict]:
        r = self.integrator("GET", f"/v1/users/{user_id}/accounts")
        assert r.status_code == 200, r.text
        return r.json()["items"]

    def db(self, coro_fn):
        """Run `coro_fn(conn)` against the service's database from the test thread."""
        from cookiesync.db.engine import make_engine

        async def run():
            engine = make_engine(self.settings.database)
            try:
                async with engine.begin() as conn:
                    return await coro_fn(conn)
            finally:
                await engine.dispose()

        return asyncio.run(run())


def start_service(settings: Settings, port: int | None = None, host: str = "127.0.0.1") -> Service:
    from cookiesync.app import create_app
    from cookiesync.domain.integrator.services import create_api_key
    from cookiesync.db.engine import migrate
    from cookiesync.settings import ensure_local_secrets

    port = port or free_port()
    url_host = f"[{host}]" if ":" in host else host
    settings = msgspec.structs.replace(settings, port=port, public_url=f"http://{url_host}:{port}")
    settings = ensure_local_secrets(settings, say=lambda m: None)
    migrate(settings.database)
    key = asyncio.run(create_api_key(settings, "tests"))
    server = ServerThread(create_app(settings), port=port, host=host, settings=settings).start()
    return Service(settings, server, key)


def in_service_loop(svc, coro):
    """Run `coro` in the running service's own event loop (the one its writer and runner use)."""
    return asyncio.run_coroutine_threadsafe(coro, svc.rt.cookie_writer.task.get_loop()).result(timeout=30)


def status_of(svc, user_id: str, plain_id: str) -> str | None:
    for item in svc.accounts(user_id):
        if item["plain_id"] == plain_id:
            return item["status"]
    return None


def settled(svc, user_id, plain_id):
    return wait_for(lambda: (s := status_of(svc, user_id, plain_id)) != "pending" and s)
