"""Shared fixtures: a real service on a loopback port, a real simulator on another."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import httpx
import msgspec
import pytest

from cookiesync.settings import Settings
from tests.support.servers import ServerThread, free_port

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
USED_SECRETS: set[str] = set()  # every cookie value and device token the tests send


class _RunLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.lines.append(str(record.msg))


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_the_whole_run_log():
    """Every log line of the whole run, from every thread, is kept; at the end none may hold
    a cookie value or device token that any test sent."""
    handler = _RunLog()
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    yield
    root.removeHandler(handler)
    root.setLevel(old_level)
    text = "\n".join(handler.lines)
    if USED_SECRETS:  # services ran, so the handler must have seen their lines
        assert handler.lines, "the run-wide log handler captured nothing"
    leaked = sorted(s for s in USED_SECRETS if s in text)
    assert not leaked, f"{len(leaked)} secret(s) found in the run's logs, e.g. {leaked[0][:6]}…"


def need(condition: bool, reason: str) -> None:
    """Skip on a laptop that lacks a component; fail under CI, where it must be there."""
    if not condition:
        if CI:
            pytest.fail(f"required under CI=true: {reason}")
        pytest.skip(reason)


@pytest.fixture
def simulator():
    from cookiesync.simulator.app import SimulatorConfig, create_simulator_app

    port = free_port()
    app = create_simulator_app(SimulatorConfig(api_key="sim-test-key", public_url=f"http://127.0.0.1:{port}"))
    with ServerThread(app, port=port) as srv:
        srv.api_key = "sim-test-key"
        yield srv


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


def make_settings(tmp_path: Path, **overrides) -> Settings:
    base = dict(mode="local", data_dir=str(tmp_path / "data"), unipile_timeout_s=3.0, sweep_interval_s=0.2,
                retry_interval_s=3600.0, log_level="INFO")
    return msgspec.convert(base | overrides, Settings)


def start_service(settings: Settings, port: int | None = None) -> Service:
    from cookiesync.app import create_app
    from cookiesync.domain.integrator.services import create_api_key
    from cookiesync.db.engine import migrate
    from cookiesync.settings import ensure_local_secrets

    port = port or free_port()
    settings = msgspec.structs.replace(settings, port=port, public_url=f"http://127.0.0.1:{port}")
    settings = ensure_local_secrets(settings, say=lambda m: None)
    migrate(settings.database)
    key = asyncio.run(create_api_key(settings, "tests"))
    server = ServerThread(create_app(settings), port=port).start()
    return Service(settings, server, key)


POSTGRES_URL = os.environ.get("COOKIESYNC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin(sql: str) -> None:
    import asyncpg

    async def run():
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def postgres_available() -> tuple[bool, str]:
    try:
        _pg_admin("SELECT 1")
        return True, ""
    except Exception as exc:  # no server, no driver, refused
        return False, f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}"


@contextlib.contextmanager
def fresh_postgres_database():
    """A new PostgreSQL database for one test, dropped afterwards."""
    ok, reason = postgres_available()
    need(ok, reason)
    import secrets as _secrets

    name = f"cstest_{_secrets.token_hex(6)}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    """Each test gets its own database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'cookiesync.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_url():
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def service_factory(tmp_path, simulator, database_url):
    started: list[Service] = []

    def factory(**overrides) -> Service:
        overrides.setdefault("database_url", database_url)
        overrides.setdefault("unipile_dsn", simulator.url)
        overrides.setdefault("unipile_api_key", simulator.api_key)
        svc = start_service(make_settings(tmp_path, **overrides))
        started.append(svc)
        return svc

    yield factory
    for svc in started:
        svc.http.close()
        svc.server.stop()


@pytest.fixture
def service(service_factory) -> Service:
    return service_factory()


class SMTPSink:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                import email

                import email.policy

                sink.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> "SMTPSink":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


@pytest.fixture
def smtp():
    with SMTPSink() as sink:
        yield sink
