"""The reconciliation benchmark's pass at a tiny size (benchmarks/reconcile.py): 2,500 links made by
SQL, their accounts in a simulator, three lost CREDENTIALS and one account deleted without a
webhook, then the benchmark's own pass process. Checks that its accounting is right (what it found,
the Unipile calls it counts, the links it changed); the figures and any timing are the benchmark's,
not this test's."""
from __future__ import annotations

import asyncio

import msgspec
import sqlalchemy as sa

from benchmarks import data, reconcile
from cookiesync.db.engine import make_engine, migrate
from cookiesync.settings import ensure_local_secrets
from tests.support.settings import make_settings
from tests.support.simulator import sim_get


def test_a_tiny_pass_finds_every_lost_status_and_nothing_else(tmp_path, simulator, database_url) -> None:
    settings = ensure_local_secrets(make_settings(tmp_path, database_url=database_url, unipile_dsn=simulator.url,
                                                  unipile_api_key=simulator.api_key), say=lambda m: None)
    migrate(settings.database)

    async def db(fn, *args):
        engine = make_engine(settings.database)
        try:
            return await fn(engine, *args)
        finally:
            await engine.dispose()

    asyncio.run(db(data.bulk_links, 1, 2500))
    first, last = asyncio.run(db(reconcile.account_range))
    assert (first, last) == (1, 2500)
    seeded = reconcile.seed_unipile(simulator.url, simulator.control_token, first, last, ["dev-acc-5", "dev-acc-9"])
    assert seeded.lost == ["bulk-acc-7", "bulk-acc-1007", "bulk-acc-2007"] and seeded.deleted == ["bulk-acc-1003"]
    assert seeded.accounts == 2500 - 1 + 5  # dev-acc-5 .. dev-acc-9 (a range of the other ids)
    (tmp_path / "settings.json").write_bytes(msgspec.json.encode(settings))
    calls0 = sim_get(simulator, "/_sim/stats").json()["calls_total"]

    with open(tmp_path / "pass.log", "ab") as log:
        result = reconcile.end_pass(reconcile.start_pass(tmp_path / "settings.json", log))
    ok, found = reconcile.verdict(result, seeded)
    assert ok, found
    assert result["pages"] == 11 and result["cpu_s"] > 0 and result["wall_s"] > 0
    assert sim_get(simulator, "/_sim/stats").json()["calls_total"] - calls0 == result["pages"] + 1

    async def states(engine):
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT unipile_account_id, state FROM links"))).all()
        return dict(rows)

    after = asyncio.run(db(states))
    assert after["bulk-acc-1003"] == "disabled"
    assert all(after[a] == "reconnecting" for a in seeded.lost)
    # every other link kept the state data.bulk_links gave it
    by_n = {0: "connected", 90: "needs_user", 95: "reconnecting", 98: "disabled"}
    for n in range(1, 2501):
        account = f"bulk-acc-{n}"
        if account in seeded.lost or account in seeded.deleted:
            continue
        assert after[account] == by_n[max(k for k in by_n if k <= n % 100)], account
