"""A service run as its own process (`cookiesync serve`, the deploy entry point): whether it
answers, the local secrets it made, and its database read directly."""
from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import sqlalchemy as sa

from cookiesync.db.engine import make_engine
from cookiesync.db.schema import events, links


def run_db(url: str, fn):
    async def go():
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                return await fn(conn)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def attempt_events(url: str) -> list[dict]:
    async def q(conn):
        rows = (await conn.execute(sa.select(events).where(events.c.kind == "attempt").order_by(events.c.id))).all()
        return [dict(r._mapping) for r in rows]

    return run_db(url, q)


def link_state(url: str) -> str | None:
    async def q(conn):
        return (await conn.execute(sa.select(links.c.state))).scalar()

    return run_db(url, q)


def is_ready(base: str) -> bool:
    try:
        return httpx.get(base + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def local_secret(tmp_path: Path, name: str) -> str:
    import json

    return json.loads((tmp_path / "data" / "secrets.json").read_text())[name]
