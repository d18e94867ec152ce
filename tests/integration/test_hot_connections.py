"""The sync path's own connections (`db.hot`): its reads see every commit at once and can
never write; its writes commit whole or not at all."""
from __future__ import annotations

import asyncio
import sqlite3
from contextlib import asynccontextmanager

import asyncpg
import pytest
import sqlalchemy as sa

from cookiesync.db.engine import make_engine, migrate
from cookiesync.db.hot import HotReads, HotWrites, driver_sql
from cookiesync.db.schema import devices, links, users, utcnow
from cookiesync.domain.sync.services import DEVICE_BY_TOKEN, LINK_BY_MEMBER


@asynccontextmanager
async def started(connections, database_url: str):
    """(engine, connections(engine) started), both closed afterwards."""
    engine = make_engine(database_url)
    opened = connections(engine)
    await opened.start()
    try:
        yield engine, opened
    finally:
        await opened.close()
        await engine.dispose()


def test_hot_reads_see_each_commit_and_never_write(database_url) -> None:
    migrate(database_url)

    async def scenario() -> None:
        async with started(HotReads, database_url) as (engine, reads):
            assert (reads.raw is not None) == database_url.startswith("sqlite")
            assert (reads.pg is not None) == database_url.startswith("postgresql")
            assert await reads.first(DEVICE_BY_TOKEN, token_hash="h-1") is None
            now = utcnow()
            async with engine.begin() as conn:
                await conn.execute(users.insert().values(user_id="hr-1", created_at=now, updated_at=now))
                await conn.execute(devices.insert().values(id="d-1", user_id="hr-1", token_hash="h-1",
                                                           created_at=now))
                await conn.execute(links.insert().values(user_id="hr-1", plain_id="42", state="connected",
                                                         unipile_account_id="acc-1", cookie_fingerprint="fp",
                                                         auto_connect=True, next_slot=0, attempts_in_incident=0,
                                                         created_at=now, updated_at=now))
            assert await reads.first(DEVICE_BY_TOKEN, token_hash="h-1") == ("d-1", "hr-1")
            link = await reads.first(LINK_BY_MEMBER, user_id="hr-1", plain_id="42")
            assert link is not None and link[1:] == ("fp", "connected", "acc-1", None, None)  # incident, hold reason
            async with engine.begin() as conn:
                await conn.execute(devices.update().where(devices.c.id == "d-1").values(revoked_at=now))
            assert await reads.first(DEVICE_BY_TOKEN, token_hash="h-1") is None  # the revocation, at once
            if reads.raw is not None:
                with pytest.raises(sqlite3.OperationalError, match="readonly"):
                    await reads.raw.execute_fetchall("DELETE FROM devices")
            else:
                async with reads.pg.acquire() as conn:
                    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                        await conn.execute("DELETE FROM devices")
                    assert not conn.is_in_transaction()

    asyncio.run(scenario())


def test_hot_writes_commit_whole_or_not_at_all(database_url) -> None:
    migrate(database_url)

    async def scenario() -> None:
        async with started(HotWrites, database_url) as (engine, writes):
            assert writes.available
            insert = driver_sql(engine.dialect, users.insert().values(
                user_id=sa.bindparam("u"), created_at=sa.bindparam("c"), updated_at=sa.bindparam("m")),
                ["u", "c", "m"])
            now = utcnow()
            at = writes.value.ts(now)
            count = "SELECT count(*) FROM users"
            before = await writes.read_decide_write(count, [], lambda rows: (
                rows[0][0], [(insert, [("hw-1", at, at), ("hw-2", at, at)])]))
            assert before == 0
            async with engine.connect() as conn:
                stored = (await conn.execute(sa.select(users.c.user_id, users.c.created_at)
                                             .order_by(users.c.user_id))).all()
            assert [tuple(r) for r in stored] == [("hw-1", now), ("hw-2", now)]
            with pytest.raises(Exception):  # the second write fails: the first is rolled back with it
                await writes.read_decide_write(count, [], lambda rows: (
                    None, [(insert, [("hw-3", at, at)]), (insert, [("hw-1", at, at)])]))
            with pytest.raises(ZeroDivisionError):
                await writes.read_decide_write(count, [], lambda rows: 1 / 0)
            after = await writes.read_decide_write(count, [], lambda rows: (rows[0][0], []))
            assert after == 2, "nothing of the failed transactions was kept, and the connection still works"

    asyncio.run(scenario())
