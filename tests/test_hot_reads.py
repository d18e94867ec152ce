"""The sync path's reads (`db.engine.HotReads`): connections of their own (aiosqlite, an
asyncpg pool) that see every commit at once and can never write."""
from __future__ import annotations

import asyncio
import sqlite3

import asyncpg
import pytest

from cookiesync.db.engine import HotReads, make_engine, migrate
from cookiesync.db.schema import devices, links, users, utcnow
from cookiesync.domain.sync.services import DEVICE_BY_TOKEN, LINK_BY_MEMBER


def test_hot_reads_see_each_commit_and_never_write(database_url) -> None:
    migrate(database_url)

    async def scenario() -> None:
        engine = make_engine(database_url)
        reads = HotReads(engine)
        await reads.start()
        try:
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
            assert link is not None and link[1:] == ("fp", "connected", "acc-1")
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
        finally:
            await reads.close()
            await engine.dispose()

    asyncio.run(scenario())
