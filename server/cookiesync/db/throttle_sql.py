"""The attempt throttles' hand-written SQL (table `throttles`, used by domain/throttle/services.py):
every statement named and described here, and nowhere else. All but the clean-up are the same
text on SQLite (3.35+, for RETURNING) and PostgreSQL.

| name                   | dialect    | what it does                                                        |
|------------------------|------------|---------------------------------------------------------------------|
| `READ`                 | both       | a key's state and version                                           |
| `CLAIM_NEW`            | both       | the first reservation of a key: INSERT .. ON CONFLICT DO NOTHING     |
| `CLAIM`                | both       | a further reservation: UPDATE .. WHERE version = the version read    |
| `RELEASE`              | both       | give one reserved attempt back (a success), in the same window only |
| `FORGET`               | both       | drop a key (a staff sign-in that succeeded resets its delay)        |
| `FORGET_SUBJECT`       | both       | drop every key of one staff account (`cookiesync staff unlock`)     |
| `SQLITE_DROP_EXPIRED`  | SQLite     | drop up to :batch rows whose window is over                         |
| `PG_DROP_EXPIRED`      | PostgreSQL | the same, skipping rows another transaction holds                   |

Why a reservation is safe under concurrency: the decision is made by the pure policy
(domain/throttle/policy.py) on the state `READ` returned, and written by `CLAIM_NEW` or `CLAIM`,
each one statement that writes only if nobody wrote the key since it was read (the insert finds no
row; the update finds the same `version`). Of N requests that read the same state, one writes and
the others see no row RETURNING and read again, so no two reservations are made from one state:
at most the limit are granted, however many arrive together, on one instance or many. SQLite also
serialises the writers (BEGIN IMMEDIATE, db/engine.py); PostgreSQL needs no lock beyond the row's.
"""
from __future__ import annotations

import sqlalchemy as sa

from cookiesync.db.schema import UTCDateTime

_TIMES = ("window_start", "next_at", "expires_at", "now")
_COLUMNS = "attempts, window_start, next_at, expires_at, version"


def _sql(text: str) -> sa.TextClause:
    """The statement with its timestamps bound and read as aware UTC (schema.UTCDateTime)."""
    clause = sa.text(text).bindparams(*(sa.bindparam(n, type_=UTCDateTime) for n in _TIMES if f":{n}" in text))
    if text.startswith("SELECT"):
        clause = clause.columns(attempts=sa.Integer, window_start=UTCDateTime, next_at=UTCDateTime,
                                expires_at=UTCDateTime, version=sa.Integer)
    return clause


READ = _sql(f"SELECT {_COLUMNS} FROM throttles WHERE key = :key")
CLAIM_NEW = _sql(
    f"INSERT INTO throttles (key, subject, {_COLUMNS}) "
    "VALUES (:key, :subject, :attempts, :window_start, :next_at, :expires_at, 1) "
    "ON CONFLICT (key) DO NOTHING RETURNING key")
CLAIM = _sql(
    "UPDATE throttles SET attempts = :attempts, window_start = :window_start, next_at = :next_at, "
    "expires_at = :expires_at, subject = :subject, version = version + 1 "
    "WHERE key = :key AND version = :version RETURNING key")
# Only in the window the attempt was reserved in: a new window has already forgotten it.
RELEASE = _sql(
    "UPDATE throttles SET attempts = attempts - 1, version = version + 1 "
    "WHERE key = :key AND window_start = :window_start AND attempts > 0")
FORGET = _sql("DELETE FROM throttles WHERE key = :key")
FORGET_SUBJECT = _sql("DELETE FROM throttles WHERE subject = :subject")
# Bounded (:batch rows, found by the expires_at index), so a write never pays for a backlog.
# PostgreSQL: SKIP LOCKED, so two clean-ups running at once never wait on (or deadlock over) the
# same rows; SQLite has one writer at a time and no such clause.
SQLITE_DROP_EXPIRED = _sql(
    "DELETE FROM throttles WHERE key IN (SELECT key FROM throttles WHERE expires_at < :now LIMIT :batch)")
PG_DROP_EXPIRED = _sql(
    "DELETE FROM throttles WHERE key IN "
    "(SELECT key FROM throttles WHERE expires_at < :now LIMIT :batch FOR UPDATE SKIP LOCKED)")


def drop_expired(dialect_name: str) -> sa.TextClause:
    return SQLITE_DROP_EXPIRED if dialect_name == "sqlite" else PG_DROP_EXPIRED
