"""Fixtures for every test: a real service on a loopback port, a real simulator on another,
their databases, an SMTP sink. The helpers behind them are in tests/support/."""
from __future__ import annotations

import logging

import pytest

from tests.support.postgres import fresh_postgres_database
from tests.support.servers import ServerThread, free_port
from tests.support.service import USED_SECRETS, Service, start_service
from tests.support.settings import make_settings


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


@pytest.fixture
def simulator():
    from cookiesync.simulator.app import SimulatorConfig, create_simulator_app

    port = free_port()
    app = create_simulator_app(SimulatorConfig(api_key="sim-test-key", control_token="sim-test-control-token",
                                               public_url=f"http://127.0.0.1:{port}"))
    with ServerThread(app, port=port) as srv:
        srv.api_key, srv.control_token = "sim-test-key", "sim-test-control-token"
        yield srv


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

    def factory(listen_on: str = "127.0.0.1", **overrides) -> Service:
        overrides.setdefault("database_url", database_url)
        overrides.setdefault("unipile_dsn", simulator.url)
        overrides.setdefault("unipile_api_key", simulator.api_key)
        svc = start_service(make_settings(tmp_path, **overrides), host=listen_on)
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
