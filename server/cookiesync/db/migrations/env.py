"""Alembic environment: runs migrations over the async engine of the URL given."""
import asyncio

from alembic import context

from cookiesync.db.engine import make_engine
from cookiesync.db.schema import UTCDateTime, metadata

config = context.config


def render_item(type_, obj, autogen_context):
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def do_run(connection):
    context.configure(connection=connection, target_metadata=metadata, render_item=render_item,
                      render_as_batch=True, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_async():
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    async with engine.connect() as conn:
        await conn.run_sync(do_run)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      render_item=render_item, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_async())
