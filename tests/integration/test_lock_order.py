"""On PostgreSQL every batch that updates several links locks them in id order, so two batches
never wait on each other in a cycle. (A new-cookie batch and the last-seen flush once did: each
time PostgreSQL broke the deadlock after deadlock_timeout, 1 s, and failed the batch.)"""
from __future__ import annotations

import asyncio

import asyncpg
import pytest
import sqlalchemy as sa

from cookiesync.db.bulk import BulkSQL
from cookiesync.db.engine import make_engine, migrate
from cookiesync.db.hot import _asyncpg_dsn
from cookiesync.db.schema import incidents, links, users, utcnow


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


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_an_erasure_takes_its_links_first_as_an_attempt_answer_does(service, simulator) -> None:
    """An attempt's answer locks its link, then writes the incident. An erasure that deleted the
    incident before it locked the link waited on the answer while the answer waited on it: PostgreSQL
    broke the cycle after deadlock_timeout and the erasure answered 500 (seen in CI: the revocation
    test erasing a user whose first connect was being recorded)."""
    import threading

    from tests.support.service import settled

    svc = service
    svc.new_user("lock-erase")
    token = svc.pair("lock-erase")
    assert svc.sync(token, plain_id="88001").status_code == 200
    assert settled(svc, "lock-erase", "88001") == "connected"

    async def open_incident(conn):
        link_id = (await conn.execute(sa.select(links.c.id).where(links.c.plain_id == "88001"))).scalar_one()
        incident = await conn.execute(incidents.insert().values(link_id=link_id, kind="reconnect",
                                                                opened_at=utcnow(), attempts=0))
        return link_id, incident.inserted_primary_key[0]
    link_id, incident_id = svc.db(open_incident)

    async def answer_while_erasing() -> tuple[int, str | None]:
        answer = await asyncpg.connect(_asyncpg_dsn(make_engine(svc.settings.database)))
        erased: dict = {}
        try:
            await answer.execute("BEGIN")
            await answer.execute("SELECT id FROM links WHERE id = $1 FOR UPDATE", link_id)  # as the answer's read
            eraser = threading.Thread(target=lambda: erased.update(
                r=svc.integrator("DELETE", "/v1/users/lock-erase")))
            eraser.start()
            await asyncio.sleep(0.5)  # the erasure is now waiting on a lock
            failed = None
            try:
                await answer.execute("UPDATE incidents SET attempts = attempts + 1 WHERE id = $1", incident_id)
                await answer.execute("COMMIT")
            except asyncpg.DeadlockDetectedError as exc:
                failed = type(exc).__name__
            await asyncio.to_thread(eraser.join, 30)
            return erased["r"].status_code, failed
        finally:
            await answer.close()

    status, failed = asyncio.run(answer_while_erasing())
    assert failed is None and status == 200, (status, failed)
