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


def _to_json(value) -> str:
    return msgspec.json.encode(value).decode()


def make_engine(url: str, **kwargs) -> AsyncEngine:
    """`hide_parameters`: a failed statement's error (which may be logged) names no bound values:
    encrypted cookies, addresses, emails and hashes stay out of logs. History data is
    written and read as JSON by msgspec: 8x faster than the json module, per history row."""
    kwargs.setdefault("json_serializer", _to_json)
    kwargs.setdefault("json_deserializer", msgspec.json.decode)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - runs per connection
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

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


async def _keep_session(_conn) -> None:
    """asyncpg's pool resets a connection on release (a round trip); these sessions change
    nothing but read, and asyncpg still rolls back a transaction left open."""


class HotReads:
    """The sync path's one-statement reads by a unique key, each in one round trip to the driver.
    Through SQLAlchemy's adapters a read costs more: on SQLite five thread hops (cursor, execute,
    fetch, close, and a rollback as the pooled connection goes back), on PostgreSQL three round
    trips (BEGIN, the query, ROLLBACK). So on SQLite they run on an aiosqlite connection of their
    own (`execute_fetchall`: one hop), on PostgreSQL on a small asyncpg pool outside any
    transaction; both sessions are read-only. Other databases use the engine. Statements are
    built once, with a `sa.bindparam` per parameter; rows come back as tuples."""

    PG_CONNECTIONS = 8  # each read holds one for a single round trip

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.raw = None  # aiosqlite.Connection, on SQLite files
        self.pg = None   # asyncpg.Pool
        self.compiled: dict[int, tuple[str, tuple[str, ...]]] = {}

    async def start(self) -> None:
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            import aiosqlite

            self.raw = await aiosqlite.connect(url.database, timeout=30)
            await self.raw.execute_fetchall("PRAGMA query_only=ON")
        elif url.get_backend_name() == "postgresql" and url.get_driver_name() == "asyncpg":
            import asyncpg

            self.pg = await asyncpg.create_pool(
                url.set(drivername="postgresql").render_as_string(hide_password=False),
                min_size=1, max_size=self.PG_CONNECTIONS, reset=_keep_session,
                server_settings={"default_transaction_read_only": "on"})

    async def close(self) -> None:
        if self.raw is not None:
            await self.raw.close()
            self.raw = None
        if self.pg is not None:
            await self.pg.close()
            self.pg = None

    async def first(self, stmt: sa.Select, **params) -> tuple | None:
        if self.raw is None and self.pg is None:
            async with reader(self.engine) as conn:
                row = (await conn.execute(stmt, params)).first()
            return None if row is None else tuple(row)
        sql, names = self.compiled.get(id(stmt)) or self._compile(stmt)
        values = [params[name] for name in names]
        if self.raw is not None:
            rows = await self.raw.execute_fetchall(sql, values)
            return tuple(rows[0]) if rows else None
        async with self.pg.acquire() as conn:
            row = await conn.fetchrow(sql, *values)
        return None if row is None else tuple(row)

    def _compile(self, stmt: sa.Select) -> tuple[str, tuple[str, ...]]:
        """The driver's SQL and the order of its positional parameters (`?` or `$n`)."""
        compiled = stmt.compile(dialect=self.engine.dialect)
        # statements live as module constants, so their id is theirs for the process's life
        self.compiled[id(stmt)] = entry = (str(compiled), tuple(compiled.positiontup or ()))
        return entry


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

