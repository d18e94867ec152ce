"""The sync path's own connections: its reads and its new-cookie writes, each in as few hops to
the driver as it takes, without SQLAlchemy's per-statement and per-value work. Everything else
goes through the engine."""
from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Callable, Sequence, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from cookiesync.db.engine import reader, sqlite_session

R = TypeVar("R")
Writes = Sequence[tuple[str, list[tuple]]]  # (driver SQL, its rows of parameters)


def _sqlite_file(engine: AsyncEngine) -> str | None:
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return url.database
    return None


def _asyncpg_dsn(engine: AsyncEngine) -> str | None:
    url = engine.url
    if url.get_backend_name() == "postgresql" and url.get_driver_name() == "asyncpg":
        return url.set(drivername="postgresql").render_as_string(hide_password=False)
    return None


def positional_sql(dialect, stmt) -> tuple[str, tuple[str, ...]]:
    """`stmt` in the driver's own SQL (`?` or `$n`), and the order of its parameters."""
    compiled = stmt.compile(dialect=dialect)
    return str(compiled), tuple(compiled.positiontup or ())


def driver_sql(dialect, stmt, order: Sequence[str]) -> str:
    """`stmt` in the driver's own SQL, for rows of positional values in `order`."""
    sql, names = positional_sql(dialect, stmt)
    if list(names) != list(order):
        raise ValueError(f"parameters come in {names}, not {list(order)}")
    return sql


class DriverValues:
    """Values as the driver takes and gives them: what `schema.UTCDateTime` and `sa.JSON` do
    for SQLAlchemy, one call per value."""

    def __init__(self, dialect) -> None:
        self.sqlite = dialect.name == "sqlite"

    def ts(self, value: datetime):
        if value.tzinfo is not timezone.utc:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the database")
            value = value.astimezone(timezone.utc)
        # SQLite keeps SQLAlchemy's text form, and compares timestamps as text
        return value.replace(tzinfo=None).isoformat(" ", "microseconds") if self.sqlite else value

    def from_ts(self, value) -> datetime | None:
        if value is None or not self.sqlite:
            return value  # asyncpg gives aware UTC datetimes
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)


async def _keep_session(_conn) -> None:
    """asyncpg's pool resets a connection on release (a round trip, a third of a new-cookie
    batch's); these sessions set nothing, and asyncpg still rolls back a transaction left open."""


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
        if path := _sqlite_file(self.engine):
            import aiosqlite

            self.raw = await aiosqlite.connect(path, timeout=30)
            await self.raw.execute_fetchall("PRAGMA query_only=ON")
        elif dsn := _asyncpg_dsn(self.engine):
            import asyncpg

            self.pg = await asyncpg.create_pool(dsn, min_size=1, max_size=self.PG_CONNECTIONS, reset=_keep_session,
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
        entry = self.compiled.get(id(stmt))
        if entry is None:  # statements live as module constants, so their id is theirs for the process's life
            entry = self.compiled[id(stmt)] = positional_sql(self.engine.dialect, stmt)
        sql, names = entry
        values = [params[name] for name in names]
        if self.raw is not None:
            rows = await self.raw.execute_fetchall(sql, values)
            return tuple(rows[0]) if rows else None
        async with self.pg.acquire() as conn:
            row = await conn.fetchrow(sql, *values)
        return None if row is None else tuple(row)


class HotWrites:
    """The new-cookie batch on a connection of its own: read the rows, decide in Python, write.

    On SQLite the whole transaction is one call to a writer thread holding a plain sqlite3
    connection (through SQLAlchemy's aiosqlite adapter the same batch took a dozen thread hops,
    a greenlet switch per statement and two type processors per timestamp, most of a changed
    cookie's cost). On PostgreSQL it runs on an asyncpg connection of its own.
    Other databases have no such connection (`available` is False)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.value = DriverValues(engine.dialect)
        self.sqlite: sqlite3.Connection | None = None
        self.thread: ThreadPoolExecutor | None = None
        self.pg = None  # asyncpg.Pool

    @property
    def available(self) -> bool:
        return self.sqlite is not None or self.pg is not None

    async def start(self) -> None:
        if path := _sqlite_file(self.engine):
            self.thread = ThreadPoolExecutor(1, thread_name_prefix="cookiesync-writes")
            self.sqlite = await asyncio.get_running_loop().run_in_executor(self.thread, self._connect, path)
        elif dsn := _asyncpg_dsn(self.engine):
            import asyncpg

            self.pg = await asyncpg.create_pool(dsn, min_size=1, max_size=2, reset=_keep_session)

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        # a batch's read has one statement text per batch size (up to 256): keep them all prepared
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False, cached_statements=1024)
        sqlite_session(conn)
        return conn

    async def close(self) -> None:
        if self.sqlite is not None:
            await asyncio.get_running_loop().run_in_executor(self.thread, self.sqlite.close)
            self.thread.shutdown()
            self.sqlite = self.thread = None
        if self.pg is not None:
            await self.pg.close()
            self.pg = None

    async def read_decide_write(self, query: str, params: Sequence,
                                decide: Callable[[list[tuple]], tuple[R, Writes]]) -> R:
        """rows = query(params); result, writes = decide(rows); run the writes; result.

        `decide` runs between the read and the writes (on SQLite, in the writer thread): it must
        only compute. The writes are whole or not at all. On SQLite the read is in their
        transaction, which holds the write lock from the start. On PostgreSQL the read comes
        first, on its own, and a single write statement commits on its own: two round trips
        instead of five, each of which waited for the busy event loop under load. That
        is no less safe: at READ COMMITTED a read inside the writes' transaction is not protected
        either; a commit landing between the read and the write goes unseen by the decision
        both ways."""
        if self.sqlite is not None:
            return await asyncio.get_running_loop().run_in_executor(
                self.thread, self._sqlite_transaction, query, params, decide)
        if self.pg is None:
            raise RuntimeError("no connection of its own for this database")
        async with self.pg.acquire() as conn:
            result, writes = decide(await conn.fetch(query, *params))
            writes = [(sql, rows) for sql, rows in writes if rows]
            if len(writes) == 1 and len(writes[0][1]) == 1:
                await conn.execute(writes[0][0], *writes[0][1][0])  # one statement: whole or nothing
            elif writes:
                async with conn.transaction():
                    for sql, rows in writes:
                        await conn.executemany(sql, rows)
        return result

    def _sqlite_transaction(self, query: str, params: Sequence, decide) -> R:
        conn = self.sqlite
        conn.execute("BEGIN IMMEDIATE")
        try:
            result, writes = decide(conn.execute(query, params).fetchall())
            for sql, rows in writes:
                if rows:
                    conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result
