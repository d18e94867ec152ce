"""The new-cookie batch's hand-written SQL, in each driver's own dialect: every statement of
the bulk write, named and described here, and nowhere else.

| name                  | dialect    | what it does                                                         |
|-----------------------|------------|----------------------------------------------------------------------|
| `PG_LINKS_BY_KEYS`    | PostgreSQL | the batch's links by (user_id, plain_id), from two arrays            |
| `sqlite_links_by_keys`| SQLite     | the same, from a VALUES list, as one JSON value                      |
| `SQLITE_SET_COOKIE`   | SQLite     | one link's cookie columns (`executemany`)                            |
| `SQLITE_ADD_HISTORY`  | SQLite     | one history row (`executemany`)                                      |
| `PG_WRITE_COOKIES`    | PostgreSQL | every link's cookie columns and every history row, one statement    |

Parameters are positional (`?` or `$n`) and bound as the driver takes them
(`db.hot.DriverValues`); columns come in the order of the tuples below.
"""
from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import msgspec

from cookiesync.db.hot import Writes


class LinkRow(NamedTuple):
    """A link as the batch's read returns it: what the policy and the answer need, no cookie
    blob, few timestamps to parse (those two come as the driver gives them)."""
    id: int
    user_id: str
    plain_id: str
    state: str
    unipile_account_id: str | None
    cookie_fingerprint: str | None
    cookie_key_id: str | None
    auto_connect: bool
    incident_started_at: datetime | None
    next_slot: int
    next_attempt_at: datetime | None
    incident_id: int | None
    hold_reason: str | None


# Not `updated_at`: that is when the link last changed (its state, account or schedule), the
# console's "last change". A refresh leaves every indexed column alone, so PostgreSQL updates
# the row in place (a HOT update: no new entry in each of the links' indexes).
COOKIE_COLUMNS = ("cookie_ciphertext", "cookie_key_id", "cookie_fingerprint", "user_agent", "client_ip",
                  "date_last_cookie")
HISTORY_COLUMNS = ("at", "user_id", "link_id", "kind", "actor", "data")
_LINK = ", ".join(f"l.{name}" for name in LinkRow._fields)

PG_LINKS_BY_KEYS = (
    f"SELECT {_LINK} FROM unnest($1::varchar[], $2::varchar[]) AS k(u, p) "
    "JOIN links l ON l.user_id = k.u AND l.plain_id = k.p")


def sqlite_links_by_keys(pairs: int) -> str:
    """For `pairs` (user_id, plain_id) pairs. A join, because SQLite scans the whole table for
    `(user_id, plain_id) IN (VALUES ...)` and looks each pair up in the unique index for a join.
    One JSON value, because the sqlite3 module lets go of the GIL at every row it steps through,
    and under load the writer thread then waits for the event loop's thread to hand it back."""
    return (f"WITH k(u, p) AS (VALUES {', '.join(['(?, ?)'] * pairs)}) "
            f"SELECT json_group_array(json_array({_LINK})) "
            "FROM k JOIN links l ON l.user_id = k.u AND l.plain_id = k.p")


# A new cookie also clears the sign-out the extension reported of the one before (migration 0012).
CLEARS_SIGN_OUT = "cookie_signed_out_at = NULL"
SQLITE_SET_COOKIE = (f"UPDATE links SET {', '.join(f'{c}=?' for c in COOKIE_COLUMNS)}, {CLEARS_SIGN_OUT} "
                     "WHERE links.id = ?")
SQLITE_ADD_HISTORY = (f"INSERT INTO events ({', '.join(HISTORY_COLUMNS)}) "
                      f"VALUES ({', '.join('?' for _c in HISTORY_COLUMNS)})")

# PostgreSQL: the whole batch in one statement over arrays, because per row of `executemany`
# PostgreSQL starts and ends an executor. The links are locked first, in id order (`l`), as the
# last-seen flush and attempt answers lock theirs: locked in whatever order the join met them, a
# batch and a last-seen flush deadlocked, and PostgreSQL broke the tie only after
# deadlock_timeout, failing the batch. Parameters: the cookie columns and link ids ($1-$7), then
# the history columns ($8-$13), each an array.
PG_WRITE_COOKIES = (
    "WITH v AS (SELECT * FROM unnest($1::bytea[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[], "
    "$6::timestamptz[], $7::int[]) "
    f"AS v({', '.join(COOKIE_COLUMNS)}, id)), "
    "l AS (SELECT links.id FROM links WHERE links.id IN (SELECT id FROM v) ORDER BY links.id FOR UPDATE), "
    f"u AS (UPDATE links SET {', '.join(f'{c} = v.{c}' for c in COOKIE_COLUMNS)}, {CLEARS_SIGN_OUT} FROM v "
    "WHERE links.id = v.id AND links.id IN (SELECT id FROM l)) "
    f"INSERT INTO events ({', '.join(HISTORY_COLUMNS)}) SELECT * FROM unnest($8::timestamptz[], $9::varchar[], "
    "$10::int[], $11::varchar[], $12::varchar[], $13::json[])")


class BulkSQL:
    """The statements above for one dialect, with their parameters as the driver takes them."""

    def __init__(self, dialect_name: str) -> None:
        self.sqlite = dialect_name == "sqlite"
        self.by_count: dict[int, str] = {}  # SQLite: one read per batch size, built once

    def links(self, keys: list[tuple[str, str]]) -> tuple[str, list]:
        """The read of these (user, member) pairs' links: one index lookup per pair."""
        if not self.sqlite:
            return PG_LINKS_BY_KEYS, [[u for u, _p in keys], [p for _u, p in keys]]
        sql = self.by_count.get(len(keys))
        if sql is None:
            sql = self.by_count[len(keys)] = sqlite_links_by_keys(len(keys))
        return sql, [v for key in keys for v in key]

    def link_rows(self, rows: list) -> list:
        """The read's rows as sequences in `LinkRow` order."""
        return msgspec.json.decode(rows[0][0]) if self.sqlite else rows

    def writes(self, updates: list[tuple], history: list[tuple]) -> Writes:
        """updates: rows of (*COOKIE_COLUMNS, link id); history: rows of HISTORY_COLUMNS."""
        if self.sqlite:
            return (SQLITE_SET_COOKIE, updates), (SQLITE_ADD_HISTORY, history)
        if not updates:
            return ()
        last = list({u[-1]: u for u in updates}.values())  # one row per link: its last cookie wins
        return ((PG_WRITE_COOKIES, [[list(column) for column in zip(*last)]
                                    + [list(column) for column in zip(*history)]]),)
