"""Whether this instance can do its work: what `/readyz` answers and what `cookiesync serve` checks
before it serves.

Ready means the database takes a write and, in local mode, the secrets file the instance started
with is still there. Both can go while the process runs and its open connections keep working:
a deleted SQLite file lives on under the connections that hold it open (so writes still answer
200, into a file no one will find again), and a database made read-only (a read-only file, a
PostgreSQL default of read-only transactions, a standby after a fail-over) refuses only
connections made after the change. So the write is tried on a connection of its own, opened for
the check and closed after it, and rolled back: nothing is kept, nothing waits behind it for long.
On SQLite the kernel is asked first whether the files may be written (`_sqlite_takes_write` says
why a connection of this process alone cannot tell).

The result is kept for `CACHE_S`, and callers that come while a check runs wait for it, so
`/readyz` under load costs one connection a second, not one a call.

| name          | dialect | what it does                                                            |
|---------------|---------|-------------------------------------------------------------------------|
| `TAKES_WRITE` | both    | rewrites the one `alembic_version` row with its own value; rolled back  |

A real write, not a question about permissions: SQLite learns that its file is read-only only
when it takes the write lock and writes (and root, for whom file modes do not count, still meets
`chattr +i`), and PostgreSQL refuses a read-only transaction's UPDATE whatever made it read-only.
The row exists on every migrated database, so the check needs no table of its own.
"""
from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from cookiesync.settings import Settings

TAKES_WRITE = "UPDATE alembic_version SET version_num = version_num"
CACHE_S = 1.0      # how long a check's answer stands
TIMEOUT_S = 5.0    # a write lock or a connection not had within this is an answer too


def fault(exc: BaseException) -> str:
    """One line for a database fault, from the innermost error the driver raised: its message when
    it is a fixed text (SQLite's, PostgreSQL's: they name no bound value, and statements are
    compiled with `hide_parameters`), otherwise its type. No statement, no traceback."""
    inner = exc
    while True:
        nxt = getattr(inner, "orig", None) or inner.__cause__
        if nxt is None or nxt is inner:
            break
        inner = nxt
    if isinstance(inner, (asyncio.TimeoutError, TimeoutError)):
        return f"no answer within {TIMEOUT_S:g} s"
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[0]}" if text else type(inner).__name__


def sqlite_path(url: str) -> str | None:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return parsed.database
    return None


def _sqlite_takes_write(path: str) -> None:
    # The kernel's answer first. SQLite hands a new connection a descriptor that an earlier one of
    # this process opened for writing and closed while others held locks on the file, so within
    # the process that served before the file went read-only, the rolled-back write below can
    # succeed (into the WAL) where a new process fails. `access(W_OK)` sees what the kernel
    # refuses at open: an immutable file (root included), a read-only mount, the file modes.
    # The folder too: SQLite makes its -wal and -shm files there.
    for target in (path, path + "-wal", path + "-shm", os.path.dirname(path) or "."):
        if os.path.exists(target) and not os.access(target, os.W_OK):
            raise PermissionError(f"{os.path.basename(target) or target} is read-only")
    # mode=rw: a file that is gone is reported, not made again empty
    conn = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=rw", uri=True, timeout=TIMEOUT_S,
                           isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(TAKES_WRITE)
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()


class Readiness:
    """`problem()`: None when ready, else why not, in one line that holds no secret."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.database
        self.sqlite = sqlite_path(self.url)
        # Local mode keeps its secrets in the data folder; a folder that loses them while the
        # database lives on loses every stored cookie at the next start. Only a file there at
        # start is watched: secrets given as variables need none.
        path = Path(settings.data_dir) / "secrets.json"
        self.secrets_file = path if settings.mode == "local" and path.is_file() else None
        self._engine = None
        self._lock = asyncio.Lock()
        self._answer: str | None = None
        self._at = float("-inf")

    async def problem(self) -> str | None:
        async with self._lock:
            if time.monotonic() - self._at >= CACHE_S:
                self._answer = await self.check()
                self._at = time.monotonic()
            return self._answer

    async def check(self) -> str | None:
        """The same, asked now. Names files, not paths: `/readyz` may be reachable from outside."""
        if self.secrets_file is not None and not self.secrets_file.is_file():
            return "the local secrets file (secrets.json) is gone from the data folder"
        if self.sqlite is not None and not Path(self.sqlite).is_file():
            return f"the database file ({Path(self.sqlite).name}) is gone"
        try:
            await asyncio.wait_for(self.takes_write(), TIMEOUT_S + 1)
        except Exception as exc:
            return f"database does not take writes ({fault(exc)})"
        return None

    async def takes_write(self) -> None:
        if self.sqlite is not None:
            await asyncio.to_thread(_sqlite_takes_write, self.sqlite)
            return
        if self._engine is None:
            # NullPool: every check gets a new session, as a new worker would
            self._engine = create_async_engine(self.url, poolclass=NullPool, hide_parameters=True,
                                               connect_args=_connect_timeout(self.url))
        async with self._engine.connect() as conn:
            await conn.exec_driver_sql(TAKES_WRITE)
            await conn.rollback()

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()


def _connect_timeout(url: str) -> dict:
    return {"timeout": TIMEOUT_S} if sa.engine.make_url(url).get_driver_name() == "asyncpg" else {}


def _driver_errors() -> tuple[type[BaseException], ...]:
    from alembic.util import CommandError  # a database newer than this code, a broken history

    errors: list[type[BaseException]] = [sa.exc.SQLAlchemyError, sqlite3.Error, OSError, asyncio.TimeoutError,
                                         CommandError]
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - a SQLite-only install
        pass
    else:
        errors.append(asyncpg.PostgresError)
    return tuple(errors)


@contextmanager
def start_faults(settings: Settings) -> Iterator[None]:
    """Around `cookiesync serve`'s start-up (migrate, check, demo rows): a database that cannot be
    reached, refuses the migration or takes no write ends it with one line and exit status 1, as a
    configuration error does. Other errors are bugs and keep their traceback."""
    try:
        yield
    except _driver_errors() as exc:
        raise SystemExit(f"cannot start: database {_safe_url(settings.database)}: {fault(exc)}") from None


def _safe_url(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def check_at_start(settings: Settings) -> None:
    """Before serving: the database takes a write, or SystemExit with one line saying why."""
    async def run() -> str | None:
        readiness = Readiness(settings)
        try:
            return await readiness.check()
        finally:
            await readiness.close()

    problem = asyncio.run(run())
    if problem is not None:
        raise SystemExit(f"cannot start: {problem}; database: {_safe_url(settings.database)}")
