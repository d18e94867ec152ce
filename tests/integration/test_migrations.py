"""The migrations build exactly the schema the code queries, on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cookiesync.db.engine import current_revision, head_revision, make_engine, migrate
from cookiesync.db.schema import metadata


def test_migrations_match_the_schema(database_url) -> None:
    migrate(database_url)
    migrate(database_url)  # idempotent

    async def diff():
        engine = make_engine(database_url)
        try:
            async with engine.connect() as conn:
                changes = await conn.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
            return changes, await current_revision(engine)
        finally:
            await engine.dispose()

    changes, revision = asyncio.run(diff())
    assert revision == head_revision()
    assert changes == [], changes
