"""What the console's overview and `/metrics` show of retention: the last prune, and table sizes.

Sizes stay cheap on a large database: PostgreSQL's planner estimate (`pg_class.reltuples`, kept by
autovacuum's ANALYZE) and `pg_total_relation_size`, read from the catalogue at each look, never a
count of a big table; a table the estimate does not cover yet (never analysed) and smaller than
`EXACT_BELOW_BYTES` is counted. SQLite keeps no such estimate: its tables are counted once, at the end
of each prune, and recorded with it (`sizes_at`), so no page load or scrape counts a million rows.
"""
from __future__ import annotations

from datetime import datetime

import msgspec
import sqlalchemy as sa

from cookiesync.db.schema import leases
from cookiesync.domain.retention.policy import PRUNE

# The tables the overview sizes: the ones the prune keeps bounded, and the ones that grow with users.
TABLES = ("events", "webhook_receipts", "incidents", "attempt_counts", "outbox", "notifications",
          "links", "devices", "users")
EXACT_BELOW_BYTES = 8 << 20

PG_SIZES = sa.text(
    "SELECT c.relname, c.reltuples, pg_total_relation_size(c.oid), pg_relation_size(c.oid) FROM pg_class c "
    "WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace AND c.relname IN :names"
).bindparams(sa.bindparam("names", expanding=True))


class TableSize(msgspec.Struct):
    table: str
    rows: int
    bytes: int | None       # with its indexes and TOAST (PostgreSQL); None on SQLite
    estimated: bool         # rows is the planner's estimate


class PruneStatus(msgspec.Struct):
    last_run_at: datetime | None          # when the last prune finished
    last_started_at: str | None
    last_duration_ms: int | None
    removed: dict[str, int]               # per table, by the last prune (outbox: bodies blanked)
    running: bool                         # an instance holds the prune now
    owner: str | None
    tables: list[TableSize]
    sizes_at: datetime | None = None      # when `tables` was read: now (PostgreSQL), the last prune's end (SQLite)


async def table_sizes(conn) -> list[TableSize]:
    if conn.dialect.name == "postgresql":
        found = {name: (tuples, total, heap) for name, tuples, total, heap
                 in (await conn.execute(PG_SIZES, {"names": list(TABLES)})).all()}
        out = []
        for name in TABLES:
            if name not in found:
                continue
            tuples, total, heap = found[name]
            if tuples < 0 and heap < EXACT_BELOW_BYTES:  # never analysed, and small enough to count
                rows = (await conn.execute(sa.text(f"SELECT count(*) FROM {name}"))).scalar_one()
                out.append(TableSize(name, rows, total, False))
            else:
                out.append(TableSize(name, max(0, int(tuples)), total, True))
        return out
    return [TableSize(name, (await conn.execute(sa.text(f"SELECT count(*) FROM {name}"))).scalar_one(), None, False)
            for name in TABLES]


def recorded_sizes(sizes: list[TableSize]) -> list:
    """The sizes as the prune's record keeps them (JSON)."""
    return msgspec.to_builtins(sizes)


async def prune_status(conn, now: datetime) -> PruneStatus:
    row = (await conn.execute(sa.select(leases).where(leases.c.name == PRUNE))).first()
    result = (row.last_result if row is not None else None) or {}
    if conn.dialect.name == "postgresql":
        tables, sizes_at = await table_sizes(conn), now
    else:
        tables = msgspec.convert(result.get("tables") or [], list[TableSize])
        sizes_at = row.last_run_at if tables else None
    return PruneStatus(
        last_run_at=row.last_run_at if row else None, last_started_at=result.get("started_at"),
        last_duration_ms=row.last_duration_ms if row else None, removed=result.get("removed") or {},
        running=bool(row is not None and row.until > now), owner=row.owner if row else None,
        tables=tables, sizes_at=sizes_at)


def set_gauges(metrics, status: PruneStatus) -> None:
    """The same figures for /metrics, from the database, so every instance shows the leader's prune."""
    if status.last_run_at is not None:
        metrics.prune_last_run.set(status.last_run_at.timestamp())
        metrics.prune_last_duration.set((status.last_duration_ms or 0) / 1000)
    for table, n in status.removed.items():
        metrics.prune_last_removed.labels(table).set(n)
    for size in status.tables:
        metrics.table_rows.labels(size.table).set(size.rows)
        if size.bytes is not None:
            metrics.table_bytes.labels(size.table).set(size.bytes)
