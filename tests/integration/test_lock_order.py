"""On PostgreSQL every batch that updates several links locks them in id order, so two batches
never wait on each other in a cycle. (A new-cookie batch and the last-seen flush once did: each
time PostgreSQL broke the deadlock after deadlock_timeout, 1 s, and failed the batch.)"""
from __future__ import annotations

import asyncio
import asyncpg
import pytest

from cookiesync.db.engine import make_engine, migrate
from cookiesync.db.hot import _asyncpg_dsn
from cookiesync.db.schema import links, users, utcnow
from cookiesync.db.bulk import BulkSQL


async def _two_links(engine) -> tuple[int, int]:
    """Two links, the higher id stored first: a scan meets it first, and so does the batch below."""
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(users.insert().values(user_id="lock-user", created_at=now, updated_at=now))
        for link_id in (2002, 1001):
            await conn.execute(links.insert().values(
                id=link_id, user_id="lock-user", plain_id=str(link_id), state="connected", auto_connect=True,
                next_slot=0, attempts_in_incident=0, created_at=now, updated_at=now))
    return 1001, 2002


def test_a_new_cookie_batch_locks_its_links_in_id_order(postgres_url) -> None:
    migrate(postgres_url)

    async def go() -> None:
        engine = make_engine(postgres_url)
        holder = writer = probe = None
        try:
            low, high = await _two_links(engine)
            dsn = _asyncpg_dsn(engine)
            holder, writer, probe = [await asyncpg.connect(dsn) for _ in range(3)]
            now = utcnow()
            # the batch names `high` first: locked in that order, it would wait on `high` holding nothing
            updates = [(b"blob", "k1", "f" * 64, "UA/1", "127.0.0.1", now, link_id) for link_id in (high, low)]
            history = [(now, "lock-user", link_id, "cookie_received", None, "{}") for link_id in (high, low)]
            ((sql, (args,)),) = BulkSQL(engine.dialect.name).writes(updates, history)

            await holder.execute("BEGIN")
            await holder.execute("UPDATE links SET client_ip = 'held' WHERE id = $1", high)
            batch = asyncio.create_task(writer.execute(sql, *args))
            await asyncio.sleep(0.5)
            assert not batch.done(), "the batch should be waiting for the lock on the higher id"
            # in id order it took `low` before it waited on `high`: nobody else can lock `low` now
            with pytest.raises(asyncpg.LockNotAvailableError):
                await probe.execute("SELECT 1 FROM links WHERE id = $1 FOR UPDATE NOWAIT", low)
            await holder.execute("ROLLBACK")
            await asyncio.wait_for(batch, 10)
            written = await probe.fetch("SELECT id, client_ip FROM links ORDER BY id")
            assert [tuple(r) for r in written] == [(low, "127.0.0.1"), (high, "127.0.0.1")]
        finally:
            for conn in (holder, writer, probe):
                if conn is not None:
                    await conn.close()
            await engine.dispose()

    asyncio.run(go())
