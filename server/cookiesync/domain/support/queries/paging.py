"""Keyset pagination, the one way every list of the console pages.

A list is ordered by a unique key (the row id, or (updated_at, id) for links) and a page is the
first `limit` rows past the cursor, the key of the previous page's last row. An index on the key
makes page 500 cost what page 1 costs (an OFFSET would read and drop every row before it). A page is
fetched as `limit + 1` rows: the extra row says whether a next page exists without counting.

`NewestFirst` is the list and the detail of a table shown newest first by id, filtered on
equality: the outbox and the integrator notifications, which differ only in table, columns and filters."""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, NamedTuple, Sequence

import sqlalchemy as sa

from cookiesync.db.engine import reader
from cookiesync.validation import row_id

MALFORMED = "malformed cursor: pass back the next_cursor of the previous page"


class BadQuery(ValueError):
    """A filter or cursor the caller sent is malformed; the message says which."""


def clamp(limit: int, most: int = 200) -> int:
    return max(1, min(most, limit))


def cut(rows: Sequence[Any], limit: int, cursor_of: Callable[[Any], Any]) -> tuple[list[Any], Any | None]:
    """`rows` were fetched as `limit + 1`: the page, and the cursor of its last row if more follow."""
    page = list(rows[:limit])
    return page, cursor_of(page[-1]) if len(rows) > limit and page else None


class Paged(NamedTuple):
    rows: list[Any]
    limit: int                 # the page size used (the one asked for, within bounds)
    next_cursor: str | None    # None on the last page


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


@dataclass(frozen=True)
class Keyset:
    """The sort key of a list and its cursor's text form (`encode` a row, `decode` a cursor)."""

    columns: tuple[sa.Column, ...]
    encode: Callable[[Any], str]
    decode: Callable[[str], tuple]

    @classmethod
    def by_id(cls, column: sa.Column) -> Keyset:
        """By the row id; the cursor is the id as text."""
        return cls((column,), lambda row: str(row.id), lambda text: (row_id(text),))

    @classmethod
    def by_time_and_id(cls, at: sa.Column, id_column: sa.Column) -> Keyset:
        """By a timestamp, ties broken by the id; the cursor is both, base64url (opaque to callers)."""
        def encode(row: Any) -> str:
            return _b64(f"{getattr(row, at.key).astimezone(timezone.utc).isoformat()}|{row.id}")

        def decode(text: str) -> tuple:
            when, _, number = _unb64(text).partition("|")
            return datetime.fromisoformat(when), row_id(number)

        return cls((at, id_column), encode, decode)

    def decode_cursor(self, cursor: str) -> tuple:
        try:
            return self.decode(cursor)
        except Exception:
            raise BadQuery(MALFORMED) from None

    def after(self, query: sa.Select, mark: tuple | None, order: str = "desc") -> sa.Select:
        """`query` ordered by the key, from just past `mark` (key values) on."""
        if mark is not None:
            if len(self.columns) == 1:
                key, past = self.columns[0], sa.literal(mark[0], self.columns[0].type)
            else:
                key = sa.tuple_(*self.columns)
                past = sa.tuple_(*(sa.literal(v, c.type) for c, v in zip(self.columns, mark)))
            query = query.where(key < past if order == "desc" else key > past)
        return query.order_by(*(c.desc() if order == "desc" else c.asc() for c in self.columns))

    async def page(self, conn, query: sa.Select, cursor: str | None, limit: int, order: str = "desc") -> Paged:
        """One page of `query` past the cursor (at most 200 rows)."""
        mark = self.decode_cursor(cursor) if cursor else None
        limit = clamp(limit)
        rows = (await conn.execute(self.after(query, mark, order).limit(limit + 1))).all()
        rows, next_cursor = cut(rows, limit, self.encode)
        return Paged(rows, limit, next_cursor)


@dataclass(frozen=True)
class ListQuery:
    """What a list was asked for: filters (column name → wanted value, None for any), cursor, page size."""

    filters: dict[str, Any] = field(default_factory=dict)
    cursor: str | None = None
    limit: int = 50

    def args(self) -> dict[str, str]:
        """The filters in force as query-string arguments (for the pager's links)."""
        return {k: str(v) for k, v in self.filters.items() if v is not None and v != ""}


@dataclass(frozen=True)
class NewestFirst:
    """A table listed newest first by id and filtered on equality, and one row of it."""

    table: sa.Table
    columns: tuple[sa.Column, ...]   # what a list row needs (never a body)

    @property
    def keyset(self) -> Keyset:
        return Keyset.by_id(self.table.c.id)

    def query(self, **filters: Any) -> sa.Select:
        return sa.select(*self.columns).where(*(self.table.c[k] == v for k, v in filters.items()
                                                if v is not None and v != ""))

    def newest(self, limit: int, **filters: Any) -> sa.Select:
        """The newest `limit` rows that match, as a query for a connection already open."""
        return self.keyset.after(self.query(**filters), None).limit(limit)

    async def page(self, rt, q: ListQuery) -> Paged:
        async with reader(rt.engine) as conn:
            return await self.keyset.page(conn, self.query(**q.filters), q.cursor, q.limit)

    async def one(self, rt, row_id: int, *columns: Any) -> Any | None:
        """The row `row_id`: its list columns, or the `columns` asked for (a whole table, say)."""
        async with reader(rt.engine) as conn:
            return (await conn.execute(sa.select(*(columns or self.columns))
                                       .where(self.table.c.id == row_id))).first()
