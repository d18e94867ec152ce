"""Support console page speed: ``python -m benchmarks.console [--quick] [--backends sqlite,postgres]``.

Also a step of ``python -m benchmarks.run`` (its rows are added to the final table).

For each database kind and size (quick: 100k links / 200k attempt events; full run: that, then
1M links / 1M attempt events):

- **Data**, generated inside the database in one statement per table (SQLite: recursive CTE;
  PostgreSQL: ``generate_series``), deterministic: users and links (90 % connected, the rest
  reconnecting / needs_user / pending / disabled; 256-byte cookie ciphertext as real rows carry;
  last activity spread over 30 days), an open incident per reconnecting link, the week's attempt
  events in time order (ids rising with time, as the service writes them), 1 % as many
  "email queued" events, an outbox of one email per ten links, and one "hot" link with
  5,000 events of every kind (plus device events of its user, 20 incidents, 30 emails).
  The data is written at migration 0003 and the database then upgraded to the head, so the
  hourly attempt counters the overview reads are filled by migration 0004's own backfill from
  those attempt events (as an upgraded deployment's are; new attempts bump them as they are made).
  PostgreSQL is then ANALYZEd, as autovacuum would; SQLite is left as the service leaves it.
- **Server**: the real ``create_app(settings)`` under uvicorn (one worker, the options of
  ``cookiesync serve``) in its own process on 127.0.0.1, scheduler on (no attempt is due, so
  sweeps are idle), Unipile a closed port. A staff operator is created with
  ``add_staff(settings, ...)``; the client signs in as a browser does (GET the login form: pre-login
  cookie + CSRF field; POST the form; 303 + session cookie) and keeps the session cookie.
- **Figures**: wall time of each request as the client sees it on loopback (send to last byte,
  keep-alive connection), ~10 loads per page; median and max. Goal: well under a second, so a
  page passes when its *slowest* load is < 1 s. "Overview, cold" is the first overview after the
  server (re)starts: empty caches, including the 7-day figures' two-minute cache; it is taken over
  several restarts. Every load must answer 200 with the expected content (checked).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import msgspec

from benchmarks.data import _pg_admin
from benchmarks.processes import free_port
from benchmarks.report import Row, print_table

ROOT = Path(__file__).resolve().parent.parent
DEAD_UNIPILE = "http://127.0.0.1:9"   # nothing listens; no attempt is due anyway
STAFF_EMAIL, STAFF_PASSWORD = "bench-operator@example.com", "console bench password 1"
GOAL_S = 1.0
LOADS = 10
HOT_EVENTS = 5_000
WEEK_S = 7 * 86400
MONTH_S = 30 * 86400
BEFORE_COUNTERS = "0003"  # the data is written at this revision; the upgrade to the head backfills the counters


@dataclass(frozen=True)
class Size:
    links: int
    events: int   # attempt events over the last 7 days
    est_s: float  # about how long one backend takes at this size (fill, start, loads, clean-up)

    @property
    def label(self) -> str:
        return f"{_k(self.links)} links / {_k(self.events)} attempts"


def _k(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


# budget_s: the step's own time limit; a (size, backend) whose estimate would overrun it is skipped
QUICK = {"sizes": [Size(100_000, 200_000, 15)], "loads": LOADS, "cold": 2, "budget_s": 90}
FULL = {"sizes": [Size(100_000, 200_000, 15), Size(1_000_000, 1_000_000, 90)], "loads": LOADS, "cold": 3,
        "budget_s": 420}


@dataclass
class Result:
    backend: str
    size: Size
    page: str
    path: str
    times: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.times) and max(self.times) < GOAL_S

    def value(self) -> str:
        if self.error:
            return f"failed: {self.error[:140]}"
        t = sorted(self.times)
        return (f"median {statistics.median(t) * 1000:.1f} ms, max {t[-1] * 1000:.1f} ms "
                f"({len(t)} load{'s' if len(t) > 1 else ''})")


def say(msg: str) -> None:
    print(f"[console {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- data --------------------------------------------------------------------------------
def _sqlite_ts(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def populate_sqlite(path: Path, size: Size, now: datetime) -> int:
    """Fill a migrated SQLite database; returns the hot link's id."""
    n, e = size.links, size.events
    hot = n // 2 + 1
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    seq = "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < :last) "
    # datetimes as UTCDateTime stores them on SQLite: 'YYYY-MM-DD HH:MM:SS.ffffff'
    def ago(expr: str) -> str:
        return f"(strftime('%Y-%m-%d %H:%M:%S', :now, '-' || ({expr}) || ' seconds') || '.000000')"

    p = {"now": _sqlite_ts(now)[:19], "nowf": _sqlite_ts(now), "later": _sqlite_ts(now + timedelta(days=1))}
    updated = ago(f"(i * 2654435761) % {MONTH_S}")
    db.execute(seq + "INSERT INTO users (user_id, email, display_name, created_at, updated_at) "
               "SELECT 'cu' || i, 'cu' || i || '@example.com', 'Console user ' || i, :nowf, :nowf FROM seq",
               p | {"last": n - 1})
    db.execute(seq + "INSERT INTO links (id, user_id, plain_id, state, auto_connect, unipile_account_id, "
               "cookie_ciphertext, cookie_key_id, cookie_fingerprint, user_agent, client_ip, date_last_cookie, "
               "incident_id, incident_started_at, next_slot, next_attempt_at, attempt_trigger, "
               "attempts_in_incident, last_attempt_at, last_error, created_at, updated_at) "
               "SELECT i + 1, 'cu' || i, CAST(100000000 + i AS TEXT), "
               "CASE WHEN i % 100 < 90 THEN 'connected' WHEN i % 100 < 95 THEN 'reconnecting' "
               "WHEN i % 100 < 98 THEN 'needs_user' WHEN i % 100 = 98 THEN 'pending' ELSE 'disabled' END, "
               "1, 'acc-' || i, randomblob(256), 'k1', hex(randomblob(32)), 'Mozilla/5.0 (bench)', '127.0.0.1', "
               f"{updated}, "
               "CASE WHEN i % 100 BETWEEN 90 AND 94 THEN i + 1 END, "
               f"CASE WHEN i % 100 BETWEEN 90 AND 94 THEN {updated} END, 0, "
               "CASE WHEN i % 100 BETWEEN 90 AND 94 THEN :later END, "
               "CASE WHEN i % 100 BETWEEN 90 AND 94 THEN 'scheduler' END, "
               "CASE WHEN i % 100 BETWEEN 90 AND 94 THEN i % 4 ELSE 0 END, "
               f"CASE WHEN i % 100 >= 90 THEN {updated} END, "
               "CASE WHEN i % 100 BETWEEN 90 AND 97 THEN 'network: connection refused' END, "
               f":nowf, {updated} FROM seq", p | {"last": n - 1})
    # an open incident per reconnecting link (id = link id), a closed one per 50 links
    db.execute(seq + "INSERT INTO incidents (id, link_id, kind, opened_at, closed_at, outcome, attempts) "
               f"SELECT i + 1, i + 1, 'reconnect', {updated}, NULL, NULL, i % 4 FROM seq "
               "WHERE i % 100 BETWEEN 90 AND 94", p | {"last": n - 1})
    db.execute(seq + "INSERT INTO incidents (id, link_id, kind, opened_at, closed_at, outcome, attempts) "
               f"SELECT {n} + i + 1, i + 1, 'reconnect', {updated}, {updated}, 'connected', 1 + i % 3 FROM seq "
               "WHERE i % 50 = 0", p | {"last": n - 1})
    # the week's attempts, in time order (ids rise with time)
    at = (f"(strftime('%Y-%m-%d %H:%M:%S', :now, '-{WEEK_S} seconds', '+' || CAST(i * {WEEK_S}.0 / :e AS INTEGER) "
          "|| ' seconds') || '.000000')")
    link = "((i * 7919) % :n)"
    db.execute(seq + "INSERT INTO events (at, user_id, link_id, kind, actor, data) "
               f"SELECT {at}, 'cu' || {link}, {link} + 1, "
               "CASE WHEN i % 100 = 0 THEN 'email_queued' ELSE 'attempt' END, NULL, "
               "CASE WHEN i % 100 = 0 THEN json_object('email_kind', CASE WHEN i % 300 = 0 THEN 'gave_up' "
               "ELSE 'reconnect_needed' END, 'stale_extension', json('false'), 'to_set', json('true')) "
               "ELSE json_object('kind', CASE WHEN i % 5 = 0 THEN 'connect' ELSE 'reconnect' END, "
               "'attempt', 1 + i % 4, 'outcome', CASE WHEN i % 10 < 6 THEN 'connected' WHEN i % 10 < 9 "
               "THEN 'failed' ELSE 'checkpoint' END, 'trigger', 'scheduler', 'duration_ms', 80 + i % 900, "
               "'http_status', CASE WHEN i % 10 BETWEEN 6 AND 8 THEN 503 END) END FROM seq",
               p | {"last": e + e // 100 - 1, "e": e + e // 100, "n": n})
    # the outbox: one email per ten links
    db.execute(seq + "INSERT INTO outbox (id, dedupe_key, kind, user_id, link_id, to_addr, subject, body_text, "
               "body_html, message_id, status, attempts, created_at, sent_at, last_error) "
               "SELECT i + 1, 'bench-' || i, 'reconnect_needed', 'cu' || (i * 10), i * 10 + 1, "
               "'cu' || (i * 10) || '@example.com', 'Your LinkedIn connection needs you', "
               "'Hello,' || char(10) || substr(hex(zeroblob(200)), 1, 400), "
               "'<p>Hello,</p><p>' || substr(hex(zeroblob(400)), 1, 800) || '</p>', "
               "'<bench-' || i || '@cookiesync>', "
               "CASE WHEN i % 20 = 0 THEN 'failed' WHEN i % 20 = 1 THEN 'held' ELSE 'sent' END, 1, "
               f"{ago(f'{WEEK_S} - i * {WEEK_S} / :m')}, "
               f"CASE WHEN i % 20 > 1 THEN {ago(f'{WEEK_S} - i * {WEEK_S} / :m')} END, "
               "CASE WHEN i % 20 = 0 THEN 'smtp: 550 mailbox unavailable' END FROM seq",
               p | {"last": n // 10 - 1, "m": n // 10})
    _hot_sqlite(db, hot, n, p)
    db.commit()
    db.close()
    return hot


def _hot_sqlite(db, hot: int, n: int, p: dict) -> None:
    """One link with a long history: HOT_EVENTS events of every kind in the last day, device events of
    its user (no link), 20 closed incidents, 30 emails."""
    uid = f"cu{hot - 1}"
    seq = "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < :last) "
    at = "(strftime('%Y-%m-%d %H:%M:%S', :now, '-86400 seconds', '+' || (i * 86400 / :h) || ' seconds') || '.000000')"
    db.execute(seq + "INSERT INTO events (at, user_id, link_id, kind, actor, data) "
               f"SELECT {at}, :uid, :hot, CASE i % 5 WHEN 0 THEN 'attempt' WHEN 1 THEN 'attempt_started' "
               "WHEN 2 THEN 'cookie_received' WHEN 3 THEN 'webhook' ELSE 'staff_action' END, "
               "CASE WHEN i % 5 = 4 THEN 'staff:ops@example.com' END, "
               "CASE i % 5 WHEN 0 THEN json_object('kind', 'reconnect', 'attempt', 1 + i % 4, 'outcome', "
               "CASE WHEN i % 2 = 0 THEN 'failed' ELSE 'connected' END, 'trigger', 'scheduler', 'duration_ms', 120, "
               "'from_state', 'reconnecting', 'to_state', 'reconnecting') "
               "WHEN 1 THEN json_object('kind', 'reconnect', 'attempt', 1 + i % 4, 'trigger', 'scheduler', "
               "'cookie_fingerprint', 'ab12cd34ef56') "
               "WHEN 2 THEN json_object('fingerprint', 'ab12cd34ef56', 'ip', '127.0.0.1', "
               "'extension_version', '1.4.2', 'from_state', 'connected', 'to_state', 'connected') "
               "WHEN 3 THEN json_object('message', 'CREDENTIALS', 'from_state', 'connected', "
               "'to_state', 'reconnecting') "
               "ELSE json_object('action', 'retry', 'note', 'bench', 'from_state', 'reconnecting', "
               "'to_state', 'reconnecting') END FROM seq",
               p | {"last": HOT_EVENTS - 1, "h": HOT_EVENTS, "uid": uid, "hot": hot})
    db.execute(seq + "INSERT INTO events (at, user_id, link_id, kind, actor, data) "
               "SELECT :nowf, :uid, NULL, 'device_paired', NULL, json_object('device_id', 'dev' || i, "
               "'extension_version', '1.4.2', 'ip', '127.0.0.1') FROM seq", p | {"last": 19, "uid": uid})
    db.execute(seq + "INSERT INTO incidents (id, link_id, kind, opened_at, closed_at, outcome, attempts) "
               "SELECT :base + i, :hot, 'reconnect', :nowf, :nowf, 'connected', 2 FROM seq",
               p | {"last": 19, "hot": hot, "base": 3 * n})
    db.execute(seq + "INSERT INTO outbox (dedupe_key, kind, user_id, link_id, to_addr, subject, body_text, "
               "body_html, message_id, status, attempts, created_at, sent_at) "
               "SELECT 'hot-' || i, 'reconnect_needed', :uid, :hot, :uid || '@example.com', 'Reconnect', "
               "'text', '<p>html</p>', '<hot-' || i || '@cookiesync>', 'sent', 1, :nowf, :nowf FROM seq",
               p | {"last": 29, "uid": uid, "hot": hot})


async def populate_postgres(dsn: str, size: Size, now: datetime) -> int:
    import asyncpg

    n, e = size.links, size.events
    hot = n // 2 + 1
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute("SET synchronous_commit = off")

        def ago(expr: str) -> str:
            return f"($1::timestamptz - make_interval(secs => ({expr})::double precision))"

        updated = ago(f"(i::bigint * 2654435761) % {MONTH_S}")
        later = "($1::timestamptz + interval '1 day')"
        await conn.execute(
            "INSERT INTO users (user_id, email, display_name, created_at, updated_at) "
            "SELECT 'cu' || i, 'cu' || i || '@example.com', 'Console user ' || i, $1, $1 "
            "FROM generate_series(0, $2::int - 1) AS s(i)", now, n)
        await conn.execute(
            "INSERT INTO links (id, user_id, plain_id, state, auto_connect, unipile_account_id, "
            "cookie_ciphertext, cookie_key_id, cookie_fingerprint, user_agent, client_ip, date_last_cookie, "
            "incident_id, incident_started_at, next_slot, next_attempt_at, attempt_trigger, "
            "attempts_in_incident, last_attempt_at, last_error, created_at, updated_at) "
            "SELECT i + 1, 'cu' || i, (100000000 + i)::text, "
            "CASE WHEN i % 100 < 90 THEN 'connected' WHEN i % 100 < 95 THEN 'reconnecting' "
            "WHEN i % 100 < 98 THEN 'needs_user' WHEN i % 100 = 98 THEN 'pending' ELSE 'disabled' END, "
            "true, 'acc-' || i, decode(repeat(md5(i::text), 16), 'hex'), 'k1', md5(i::text) || md5((i * 7)::text), "
            f"'Mozilla/5.0 (bench)', '127.0.0.1', {updated}, "
            "CASE WHEN i % 100 BETWEEN 90 AND 94 THEN i + 1 END, "
            f"CASE WHEN i % 100 BETWEEN 90 AND 94 THEN {updated} END, 0, "
            f"CASE WHEN i % 100 BETWEEN 90 AND 94 THEN {later} END, "
            "CASE WHEN i % 100 BETWEEN 90 AND 94 THEN 'scheduler' END, "
            "CASE WHEN i % 100 BETWEEN 90 AND 94 THEN i % 4 ELSE 0 END, "
            f"CASE WHEN i % 100 >= 90 THEN {updated} END, "
            "CASE WHEN i % 100 BETWEEN 90 AND 97 THEN 'network: connection refused' END, "
            f"$1, {updated} FROM generate_series(0, $2::int - 1) AS s(i)", now, n)
        await conn.execute(
            "INSERT INTO incidents (id, link_id, kind, opened_at, closed_at, outcome, attempts) "
            f"SELECT i + 1, i + 1, 'reconnect', {updated}, NULL, NULL, i % 4 "
            "FROM generate_series(0, $2::int - 1) AS s(i) WHERE i % 100 BETWEEN 90 AND 94", now, n)
        await conn.execute(
            "INSERT INTO incidents (id, link_id, kind, opened_at, closed_at, outcome, attempts) "
            f"SELECT $2::int + i + 1, i + 1, 'reconnect', {updated}, {updated}, 'connected', 1 + i % 3 "
            "FROM generate_series(0, $2::int - 1) AS s(i) WHERE i % 50 = 0", now, n)
        total = e + e // 100
        link = "((i::bigint * 7919) % $3::int)"
        await conn.execute(
            "INSERT INTO events (at, user_id, link_id, kind, actor, data) "
            f"SELECT $1::timestamptz - interval '{WEEK_S} seconds' + make_interval(secs => floor(i::double precision "
            f"* {WEEK_S} / $2::int)), 'cu' || {link}, {link} + 1, "
            "CASE WHEN i % 100 = 0 THEN 'email_queued' ELSE 'attempt' END, NULL, "
            "CASE WHEN i % 100 = 0 THEN json_build_object('email_kind', CASE WHEN i % 300 = 0 THEN 'gave_up' "
            "ELSE 'reconnect_needed' END, 'stale_extension', false, 'to_set', true) "
            "ELSE json_build_object('kind', CASE WHEN i % 5 = 0 THEN 'connect' ELSE 'reconnect' END, "
            "'attempt', 1 + i % 4, 'outcome', CASE WHEN i % 10 < 6 THEN 'connected' WHEN i % 10 < 9 "
            "THEN 'failed' ELSE 'checkpoint' END, 'trigger', 'scheduler', 'duration_ms', 80 + i % 900, "
            "'http_status', CASE WHEN i % 10 BETWEEN 6 AND 8 THEN 503 END) END "
            "FROM generate_series(0, $2::int - 1) AS s(i)", now, total, n)
        m = n // 10
        sent_at = ago(f"{WEEK_S} - i::double precision * {WEEK_S} / $2::int")
        await conn.execute(
            "INSERT INTO outbox (id, dedupe_key, kind, user_id, link_id, to_addr, subject, body_text, "
            "body_html, message_id, status, attempts, created_at, sent_at, last_error) "
            "SELECT i + 1, 'bench-' || i, 'reconnect_needed', 'cu' || (i * 10), i * 10 + 1, "
            "'cu' || (i * 10) || '@example.com', 'Your LinkedIn connection needs you', "
            "'Hello,' || chr(10) || repeat('0', 400), '<p>Hello,</p><p>' || repeat('0', 800) || '</p>', "
            "'<bench-' || i || '@cookiesync>', "
            "CASE WHEN i % 20 = 0 THEN 'failed' WHEN i % 20 = 1 THEN 'held' ELSE 'sent' END, 1, "
            f"{sent_at}, CASE WHEN i % 20 > 1 THEN {sent_at} END, "
            "CASE WHEN i % 20 = 0 THEN 'smtp: 550 mailbox unavailable' END "
            "FROM generate_series(0, $2::int - 1) AS s(i)", now, m)
        # identity sequences past the explicit ids (the service inserts after us)
        for table in ("links", "incidents", "outbox"):
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT max(id) FROM {table}) + 1000)")
        await _hot_postgres(conn, hot, n, now)
        for table in ("users", "links", "incidents", "events", "outbox"):
            await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()
    return hot


async def _hot_postgres(conn, hot: int, n: int, now: datetime) -> None:
    uid = f"cu{hot - 1}"
    await conn.execute(
        "INSERT INTO events (at, user_id, link_id, kind, actor, data) "
        "SELECT $1::timestamptz - interval '1 day' + make_interval(secs => i * 86400.0 / $2::int), $3, $4::int, "
        "CASE i % 5 WHEN 0 THEN 'attempt' WHEN 1 THEN 'attempt_started' WHEN 2 THEN 'cookie_received' "
        "WHEN 3 THEN 'webhook' ELSE 'staff_action' END, CASE WHEN i % 5 = 4 THEN 'staff:ops@example.com' END, "
        "CASE i % 5 WHEN 0 THEN json_build_object('kind', 'reconnect', 'attempt', 1 + i % 4, 'outcome', "
        "CASE WHEN i % 2 = 0 THEN 'failed' ELSE 'connected' END, 'trigger', 'scheduler', 'duration_ms', 120, "
        "'from_state', 'reconnecting', 'to_state', 'reconnecting') "
        "WHEN 1 THEN json_build_object('kind', 'reconnect', 'attempt', 1 + i % 4, 'trigger', 'scheduler', "
        "'cookie_fingerprint', 'ab12cd34ef56') "
        "WHEN 2 THEN json_build_object('fingerprint', 'ab12cd34ef56', 'ip', '127.0.0.1', "
        "'extension_version', '1.4.2', 'from_state', 'connected', 'to_state', 'connected') "
        "WHEN 3 THEN json_build_object('message', 'CREDENTIALS', 'from_state', 'connected', "
        "'to_state', 'reconnecting') "
        "ELSE json_build_object('action', 'retry', 'note', 'bench', 'from_state', 'reconnecting', "
        "'to_state', 'reconnecting') END FROM generate_series(0, $2::int - 1) AS s(i)", now, HOT_EVENTS, uid, hot)
    await conn.execute(
        "INSERT INTO events (at, user_id, link_id, kind, actor, data) "
        "SELECT $1, $2, NULL, 'device_paired', NULL, json_build_object('device_id', 'dev' || i, "
        "'extension_version', '1.4.2', 'ip', '127.0.0.1') FROM generate_series(0, 19) AS s(i)", now, uid)
    await conn.execute(
        "INSERT INTO incidents (link_id, kind, opened_at, closed_at, outcome, attempts) "
        "SELECT $2::int, 'reconnect', $1, $1, 'connected', 2 FROM generate_series(0, 19) AS s(i)", now, hot)
    await conn.execute(
        "INSERT INTO outbox (dedupe_key, kind, user_id, link_id, to_addr, subject, body_text, body_html, "
        "message_id, status, attempts, created_at, sent_at) "
        "SELECT 'hot-' || i, 'reconnect_needed', $2::text, $3::int, $2::text || '@example.com', 'Reconnect', 'text', "
        "'<p>html</p>', '<hot-' || i || '@cookiesync>', 'sent', 1, $1, $1 FROM generate_series(0, 29) AS s(i)",
        now, uid, hot)


def postgres_reachable() -> bool:
    try:
        asyncio.run(_pg_admin("SELECT 1"))
        return True
    except Exception:
        return False


# --- the service -------------------------------------------------------------------------


class Console:
    """A database of one kind filled to one size, and the real service on it."""

    def __init__(self, kind: str, size: Size) -> None:
        self.kind, self.size = kind, size
        self.workdir = Path(tempfile.mkdtemp(prefix=f"cs-bench-console-{kind}-"))
        self.pg_name: str | None = None
        self.proc: subprocess.Popen | None = None
        self.http: httpx.Client | None = None

    def prepare(self) -> float:
        """Create, migrate and fill the database; returns the seconds it took."""
        from cookiesync.db.engine import migrate
        from cookiesync.settings import Settings, ensure_local_secrets

        t = time.monotonic()
        if self.kind == "postgres":
            self.pg_name = f"cs_bench_console_{secrets.token_hex(5)}"
            asyncio.run(_pg_admin(f'CREATE DATABASE "{self.pg_name}"'))
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.pg_name}"
        else:
            url = f"sqlite+aiosqlite:///{self.workdir / 'data' / 'cookiesync.db'}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = Settings(mode="local", data_dir=str(self.workdir / "data"), database_url=url, port=self.port,
                            public_url=self.url, unipile_dsn=DEAD_UNIPILE, unipile_api_key="bench-console",
                            unipile_timeout_s=2.0, scheduler="on", log_level="INFO")
        self.settings = ensure_local_secrets(settings, say=lambda m: None)
        migrate(url, BEFORE_COUNTERS)
        now = datetime.now(timezone.utc)
        if self.kind == "postgres":
            self.hot = asyncio.run(populate_postgres(f"postgresql://postgres@127.0.0.1:5432/{self.pg_name}",
                                                     self.size, now))
        else:
            self.hot = populate_sqlite(self.workdir / "data" / "cookiesync.db", self.size, now)
        migrate(url)  # 0004 fills attempt_counts from the attempt events just written
        from cookiesync.domain.support.staff import add_staff

        asyncio.run(add_staff(self.settings, STAFF_EMAIL, "operator", STAFF_PASSWORD))
        (self.workdir / "settings.json").write_bytes(msgspec.json.encode(self.settings))
        return time.monotonic() - t

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        log = open(self.workdir / "server.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.console", "serve", "--settings",
                                      str(self.workdir / "settings.json"), "--port", str(self.port)],
                                     cwd=ROOT, env=env, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("service did not answer /healthz within 60 s")

    def stop_server(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        self.stop_server()
        if self.pg_name:
            try:
                asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)'))
            except Exception as exc:  # pragma: no cover
                print(f"could not drop {self.pg_name}: {exc}", file=sys.stderr)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def login(self) -> None:
        """Sign in as the browser does: the form (pre-login cookie + CSRF field), then the POST."""
        self.http = httpx.Client(base_url=self.url, timeout=60, follow_redirects=False)
        page = self.http.get("/support/login")
        page.raise_for_status()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = self.http.post("/support/login", data={"email": STAFF_EMAIL, "password": STAFF_PASSWORD,
                                                   "csrf_token": token, "next": "/support/"})
        if r.status_code != 303 or "cookiesync_staff" not in self.http.cookies:
            raise RuntimeError(f"sign-in failed: {r.status_code} {r.text[:200]}")


# --- measuring ---------------------------------------------------------------------------------
def timed_get(http: httpx.Client, path: str, expect: str | None) -> float:
    t = time.perf_counter()
    r = http.get(path)
    _ = r.content
    dt = time.perf_counter() - t
    if r.status_code != 200:
        raise RuntimeError(f"{path}: HTTP {r.status_code}: {r.text[:200]}")
    if expect is not None and expect not in r.text:
        raise RuntimeError(f"{path}: answer lacks {expect!r}")
    return dt


def measure(con: Console, loads: int, colds: int) -> list[Result]:
    size, kind, hot = con.size, con.kind, con.hot
    results: list[Result] = []
    http = con.http

    def page(name: str, path: str, expect: str | None, n: int = loads) -> Result:
        res = Result(kind, size, name, path)
        try:
            for _ in range(n):
                res.times.append(timed_get(http, path, expect))
        except Exception as exc:
            res.error = f"{type(exc).__name__}: {exc}"
        results.append(res)
        return res

    # cold overview: the first one after each (re)start; the first start has already happened
    cold = Result(kind, size, "overview, cold (first load after a restart)", "/support/")
    for k in range(colds):
        if k:
            con.stop_server()
            con.start()
        try:
            cold.times.append(timed_get(http, "/support/", "Attempts per hour"))
        except Exception as exc:
            cold.error = f"{type(exc).__name__}: {exc}"
            break
    results.append(cold)
    page("overview, warm", "/support/", "Attempts per hour")
    # what a list needs: the cursor of page 2, a plain_id and an email that exist
    first = http.get("/v1/support/links").json()
    cursor = first["next_cursor"]
    some = first["items"][7]
    email = f"cu{(size.links * 7) // 10}@example.com"
    plain = str(100000000 + (size.links * 3) // 10)
    page("links, first page", "/support/links", some["plain_id"])
    page("links, page 2 (cursor)", f"/support/links?cursor={cursor}", None)
    page("links, state=needs_user", "/support/links?state=needs_user", "needs_user")
    page("links, by email", f"/support/links?email={email}", email)
    page("links, by plain_id", f"/support/links?plain_id={plain}", plain)
    page(f"link detail ({HOT_EVENTS:,} events)", f"/support/links/{hot}", f"cu{hot - 1}")
    page("outbox", "/support/outbox", "Your LinkedIn connection needs you")
    page("API /v1/support/links", "/v1/support/links", '"next_cursor"')
    page("API /v1/support/links, page 2", f"/v1/support/links?cursor={cursor}", '"items"')
    page("API /v1/support/links/{id}", f"/v1/support/links/{hot}", '"timeline"')
    page("API /v1/support/overview", "/v1/support/overview", '"links_by_state"')
    # sanity of what was measured
    assert len(first["items"]) == 50 and cursor, first
    return results


def bench_one(kind: str, size: Size, loads: int, colds: int) -> list[Result]:
    con = Console(kind, size)
    try:
        say(f"{kind}: filling {size.label} ...")
        took = con.prepare()
        say(f"{kind}: data ready in {took:.1f} s; starting the service on {con.url}")
        con.start()
        con.login()
        results = measure(con, loads, colds)
        for r in results:
            say(f"  {kind:<8} {size.label:<26} {r.page:<44} {r.value()}  {'PASS' if r.ok else 'MISS'}")
        return results
    except Exception as exc:
        say(f"{kind}: FAILED: {type(exc).__name__}: {exc}")
        print(con.log_tail(), file=sys.stderr)
        return [Result(kind, size, "benchmark run", "", error=f"{type(exc).__name__}: {exc}")]
    finally:
        con.close()


def run(backends: list[str], quick: bool) -> list[Result]:
    """Every page, every size, every backend, within the configuration's own time budget."""
    cfg = QUICK if quick else FULL
    started = time.monotonic()
    out: list[Result] = []
    pg_ok = "postgres" in backends and postgres_reachable()
    for size in cfg["sizes"]:
        for kind in backends:
            if kind == "postgres" and not pg_ok:
                out.append(Result(kind, size, "benchmark run", "", error="PostgreSQL not reachable"))
                continue
            if time.monotonic() - started + size.est_s > cfg["budget_s"]:
                out.append(Result(kind, size, "benchmark run", "", error="skipped: time budget"))
                continue
            out += bench_one(kind, size, cfg["loads"], cfg["cold"])
    return out


def rows(results: list[Result]) -> list[tuple]:
    """(backend, figure, value, goal, ok) for benchmarks.run's table."""
    return [(r.backend, f"console {r.size.label}: {r.page}", r.value(), "< 1 s (every load)", r.ok)
            for r in results]


def raw(results: list[Result]) -> list[dict]:
    """Every load's time (s), for `--json`."""
    return [{"backend": r.backend, "links": r.size.links, "attempts": r.size.events, "page": r.page,
             "path": r.path, "times_s": r.times, "error": r.error} for r in results]


# --- the server process ------------------------------------------------------------------------
def serve(settings_path: str, port: int) -> None:
    """The real app, served as `cookiesync serve` serves it (one worker)."""
    import uvicorn

    from cookiesync.app import create_app
    from cookiesync.settings import Settings

    settings = msgspec.json.decode(Path(settings_path).read_bytes(), type=Settings)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning", proxy_headers=False,
                timeout_graceful_shutdown=20)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        p = argparse.ArgumentParser(prog="python -m benchmarks.console serve")
        p.add_argument("--settings", required=True)
        p.add_argument("--port", type=int, required=True)
        a = p.parse_args(argv[1:])
        serve(a.settings, a.port)
        return 0
    p = argparse.ArgumentParser(prog="python -m benchmarks.console", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="100k links only")
    p.add_argument("--backends", default="sqlite,postgres")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-ups
    started = time.monotonic()
    results = run([b.strip() for b in args.backends.split(",") if b.strip()], args.quick)
    table = [Row(*r) for r in rows(results)]
    print(f"\n## support console page speed ({'quick' if args.quick else 'full'} run, "
          f"{time.monotonic() - started:.0f} s)\n")
    print(print_table(table))
    print(f"\n{sum(r.ok is True for r in table)} PASS, {sum(r.ok is False for r in table)} MISS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
