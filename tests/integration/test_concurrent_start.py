"""Instances that start together from one data folder and one database (local mode) agree on
the local secrets and both come up: the demo staff member and rows are written once, whichever
instance gets there first (tests/integration/test_multi_instance.py once failed to start its second one)."""
from __future__ import annotations

import asyncio
import multiprocessing
import secrets

import msgspec
import sqlalchemy as sa

from cookiesync.db.engine import make_engine, migrate
from cookiesync.db.schema import staff
from cookiesync.domain.support.staff import add_staff
from cookiesync.settings import local_secrets
from tests.support.settings import make_settings


def _read_secrets(data_dir: str, start, out) -> None:
    start.wait()
    stored, _created = local_secrets(data_dir, {"demo_api_key": lambda: secrets.token_urlsafe(16),
                                                "signing_secret": lambda: secrets.token_urlsafe(16)})
    out.put((stored["demo_api_key"], stored["signing_secret"]))


def test_processes_starting_together_get_the_same_local_secrets(tmp_path) -> None:
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_read_secrets, args=(str(tmp_path), start, out)) for _ in range(6)]
    for p in procs:
        p.start()
    start.set()
    seen = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(p.exitcode == 0 for p in procs)
    assert len(set(seen)) == 1
    stored = msgspec.json.decode((tmp_path / "secrets.json").read_bytes())
    assert (stored["demo_api_key"], stored["signing_secret"]) == seen[0]
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600


def test_the_same_staff_member_added_at_once_by_five_is_one_row(tmp_path, database_url) -> None:
    settings = msgspec.structs.replace(make_settings(tmp_path), database_url=database_url)
    migrate(settings.database)

    async def go() -> int:
        await asyncio.gather(*(add_staff(settings, "admin@localhost.test", "operator", f"password-{i}",
                                         migrate_first=False) for i in range(5)))
        engine = make_engine(settings.database)
        try:
            async with engine.connect() as conn:
                return (await conn.execute(sa.select(sa.func.count()).select_from(staff))).scalar_one()
        finally:
            await engine.dispose()

    assert asyncio.run(go()) == 1
