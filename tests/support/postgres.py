"""The PostgreSQL server the tests use (COOKIESYNC_TEST_POSTGRES_URL, default 127.0.0.1:5432):
whether it answers, admin statements, and a fresh database per test."""
from __future__ import annotations

import asyncio
import contextlib
import os

from tests.support.components import need

POSTGRES_URL = os.environ.get("COOKIESYNC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pg_admin(sql: str) -> None:
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
        pg_admin("SELECT 1")
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
    pg_admin(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
