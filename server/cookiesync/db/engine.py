"""Engine creation and migrations. SQLite runs in WAL mode; PostgreSQL as is."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def to_json(value) -> str:
    return msgspec.json.encode(value).decode()


def sqlite_session(dbapi_conn) -> None:
    """Every SQLite connection of ours, SQLAlchemy's or a driver's own: WAL, commits that survive a
    crash of the process (not of the machine), foreign keys, and a wait rather than an error
    while another connection writes. We issue BEGIN ourselves."""
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str, **kwargs) -> AsyncEngine:
    """`hide_parameters`: a failed statement's error (which may be logged) names no bound values:
    encrypted cookies, addresses, emails and hashes stay out of logs. History data is
    written and read as JSON by msgspec, several times faster than the json module per history row."""
    kwargs.setdefault("json_serializer", to_json)
    kwargs.setdefault("json_deserializer", msgspec.json.decode)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - runs per connection
            sqlite_session(dbapi_conn)

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(conn):  # pragma: no cover
            # Writers take the write lock up front: no failed read-to-write upgrades
            # between concurrent writers. Readers (see `reader`) stay deferred and concurrent.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("read_only") else "BEGIN IMMEDIATE")

        return engine
    # Enough connections for the attempts in flight plus request traffic; recycle instead of
    # pinging before every use (a round trip per checkout).
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    return create_async_engine(url, pool_recycle=1800, hide_parameters=True, **kwargs)


@asynccontextmanager
async def reader(engine: AsyncEngine):
    """A connection for reads only: on SQLite it does not take the write lock."""
    async with engine.connect() as conn:
        await conn.execution_options(read_only=True)
        yield conn


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` (blocking; run before serving)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


async def migrate_async(url: str) -> None:
    await asyncio.to_thread(migrate, url)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with reader(engine) as conn:
        try:
            return (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
        except Exception:
            return None
