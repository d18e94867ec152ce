"""Writing new cookies: every sync whose cookie we did not have yet.

Syncs that arrive while one transaction runs are written together by the next
(`GroupCommit`), and each is answered only after that commit. A cookie that only
refreshes a link (the common case: a connected account's session cookie rotated) is
decided on by the policy and written in bulk on the sync path's own connection
(`db.hot.HotWrites`), in the cookie writer process when it runs (`writer_process`). A
cookie that changes a link's state (a first sync, a cookie for an incident) goes through
`apply_event`, in the server, in a transaction of its own after the bulk one.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from cookiesync.db.batch import GroupCommit
from cookiesync.db.engine import to_json
from cookiesync.db.hot import HotWrites, Writes, driver_sql
from cookiesync.db.schema import events, links
from cookiesync.domain.reconnect import policy
from cookiesync.domain.reconnect.services import add_event, apply_event, event_payload, load_link, needs_apply, \
    to_policy
from cookiesync.domain.sync.schemas import SyncIn, SyncOut
from cookiesync.security import CookieBundle, encrypt_cookies, same_fingerprint

if TYPE_CHECKING:
    from cookiesync.domain.sync.services import Device

log = logging.getLogger("cookiesync.sync")

UNSETTLED = frozenset({"pending", "reconnecting"})


def answer(rt, state: str, account_id: str | None) -> SyncOut:
    """Come back soon while a connect or reconnect is under way, so the extension (and its
    user) learns the outcome, and a fresh cookie reaches an incident quickly."""
    interval = rt.settings.sync_interval_s
    return SyncOut(state, account_id, min(60, interval) if state in UNSETTLED else interval)


@dataclass
class NewCookie:
    device: Device
    body: SyncIn
    ip: str | None
    fingerprint: str
    now: datetime

    @property
    def key(self) -> tuple[str, str]:
        return self.device.user_id, self.body.plain_id

    def event_data(self) -> dict:
        body = self.body
        return {"fingerprint": self.fingerprint[:12], "user_agent": body.user_agent, "ip": self.ip,
                "li_a_present": body.li_a is not None, "extension_version": body.extension_version,
                "device_id": self.device.id}

    def cookie_row(self, rt, at) -> tuple:
        """The link's cookie columns (`COOKIE_COLUMNS`), the cookies encrypted; `at` as stored."""
        body = self.body
        kid, blob = encrypt_cookies(rt.keyring, CookieBundle(body.li_at, body.li_a, body.user_agent),
                                    self.device.user_id, body.plain_id)
        return blob, kid, self.fingerprint, body.user_agent, self.ip, at


Written = tuple[SyncOut, bool, int, bool]  # answer, attempt at once, link id, cookie changed


def cookie_writer(rt) -> GroupCommit:
    return GroupCommit("new cookies", lambda jobs: write_together(rt, jobs), lambda job: write_alone(rt, job))


# --- in bulk, on the sync path's own connection -------------------------------------------------
class PolicyRow(NamedTuple):
    """What the policy and the answer need of a link: no cookie blob, few timestamps to parse."""
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


_COLUMNS = ", ".join(f"l.{name}" for name in PolicyRow._fields)
# Not `updated_at`: that is when the link last changed (its state, account or schedule), the
# console's "last change". A refresh leaves every indexed column alone, so PostgreSQL updates
# the row in place (a HOT update: no new entry in each of the links' eight indexes): PostgreSQL's
# CPU per changed cookie 66 -> 41 µs, 100% changed syncs 6,800-7,400 -> 8,800-9,000 req/s.
COOKIE_COLUMNS = ("cookie_ciphertext", "cookie_key_id", "cookie_fingerprint", "user_agent", "client_ip",
                  "date_last_cookie")
_HISTORY_COLUMNS = ("at", "user_id", "link_id", "kind", "actor", "data")


class BulkSQL:
    """The batch's statements in the driver's own SQL, their parameters as built for the driver:
    on SQLite a statement each for the links' update and their history rows (`executemany`), on
    PostgreSQL one for both (`_PG_WRITE`).

    On SQLite the links come back as one JSON value: the sqlite3 module lets go of the GIL at
    every row it steps through, and under load the writer thread then waits for the event
    loop's thread to hand it back (a 32-link read: 19 µs a link, 6 of them working; as one
    value, 8 and 3)."""

    def __init__(self, hot: HotWrites) -> None:
        dialect = hot.engine.dialect
        self.sqlite = dialect.name == "sqlite"
        self.by_count: dict[int, str] = {}
        if self.sqlite:
            self.update = driver_sql(dialect, links.update().where(links.c.id == sa.bindparam("b_id")).values(
                {c: sa.bindparam(f"b_{c}") for c in COOKIE_COLUMNS}),
                [f"b_{c}" for c in COOKIE_COLUMNS] + ["b_id"])
            self.insert = driver_sql(dialect, events.insert().values(
                {c: sa.bindparam(f"b_{c}") for c in _HISTORY_COLUMNS}), [f"b_{c}" for c in _HISTORY_COLUMNS])

    def links(self, keys: list[tuple[str, str]]) -> tuple[str, list]:
        """The links of these (user, member) pairs: one index lookup per pair."""
        if not self.sqlite:
            return (f"SELECT {_COLUMNS} FROM unnest($1::varchar[], $2::varchar[]) AS k(u, p) "
                    "JOIN links l ON l.user_id = k.u AND l.plain_id = k.p",
                    [[u for u, _p in keys], [p for _u, p in keys]])
        sql = self.by_count.get(len(keys))
        if sql is None:  # SQLite scans links for `(user_id, plain_id) IN (VALUES ...)`; a join looks each up
            sql = self.by_count[len(keys)] = (
                f"WITH k(u, p) AS (VALUES {', '.join(['(?, ?)'] * len(keys))}) "
                f"SELECT json_group_array(json_array({_COLUMNS})) "
                "FROM k JOIN links l ON l.user_id = k.u AND l.plain_id = k.p")
        return sql, [v for key in keys for v in key]

    def link_rows(self, rows: list) -> list:
        return msgspec.json.decode(rows[0][0]) if self.sqlite else rows

    def writes(self, updates: list[tuple], history: list[tuple]) -> Writes:
        """updates: rows of (*COOKIE_COLUMNS, link id); history: rows of _HISTORY_COLUMNS."""
        if self.sqlite:
            return (self.update, updates), (self.insert, history)
        if not updates:
            return ()
        last = list({u[-1]: u for u in updates}.values())  # one row per link, its last cookie
        return ((_PG_WRITE, [[list(column) for column in zip(*last)] + [list(column) for column in zip(*history)]]),)


# PostgreSQL: the whole batch in one statement over arrays. Per row of `executemany`, PostgreSQL
# starts and ends an executor (72 µs of its CPU per changed cookie with two such rows).
# The links are locked first, in id order (`l`), as the last-seen flush and attempt answers lock
# theirs: in whatever order the join met them, a batch and a last-seen flush deadlocked, and
# PostgreSQL broke the tie only after deadlock_timeout (1 s), failing the batch.
_PG_WRITE = (
    "WITH v AS (SELECT * FROM unnest($1::bytea[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[], "
    "$6::timestamptz[], $7::int[]) "
    f"AS v({', '.join(COOKIE_COLUMNS)}, id)), "
    "l AS (SELECT links.id FROM links WHERE links.id IN (SELECT id FROM v) ORDER BY links.id FOR UPDATE), "
    f"u AS (UPDATE links SET {', '.join(f'{c} = v.{c}' for c in COOKIE_COLUMNS)} FROM v "
    "WHERE links.id = v.id AND links.id IN (SELECT id FROM l)) "
    f"INSERT INTO events ({', '.join(_HISTORY_COLUMNS)}) SELECT * FROM unnest($8::timestamptz[], $9::varchar[], "
    "$10::int[], $11::varchar[], $12::varchar[], $13::json[])")


def _bulk(rt) -> BulkSQL:
    return rt.cache("bulk_cookie_sql", lambda: BulkSQL(rt.writes))


async def write_together(rt, jobs: list[NewCookie]) -> list[Written | Exception]:
    """One bulk transaction for the cookies that only refresh their link, then one transaction
    each, in arrival order, for those the policy must apply (and any later cookie of their link)."""
    process = rt.writer_process
    if process is not None:
        process.ensure_started()
    if process is not None and process.ready:
        results = await process.write(jobs)
    elif rt.writes is not None and rt.writes.available:
        results = await write_in_bulk(rt, jobs)
    else:
        return [await _alone_or_error(rt, job) for job in jobs]
    for i, job in enumerate(jobs):
        if results[i] is None:
            results[i] = await _alone_or_error(rt, job)
    return results


async def write_in_bulk(rt, jobs: list[NewCookie]) -> list[Written | None]:
    """The bulk transaction; None for each cookie it leaves to `write_alone`."""
    bulk = _bulk(rt)
    sql, params = bulk.links(list(dict.fromkeys(job.key for job in jobs)))
    return await rt.writes.read_decide_write(sql, params, lambda rows: _plan(rt, bulk, jobs, rows))


def _plan(rt, bulk: BulkSQL, jobs: list[NewCookie], rows: list):
    """The batch's answers and bulk writes, decided between its read and its writes (on SQLite,
    in the writer thread, so it only computes). None for a cookie left to `write_alone`."""
    value, cfg = rt.writes.value, rt.policy_config
    links_by_key: dict[tuple[str, str], PolicyRow] = {}
    for r in bulk.link_rows(rows):
        row = PolicyRow(*r[:8], value.from_ts(r[8]), r[9], value.from_ts(r[10]), r[11])
        links_by_key[(row.user_id, row.plain_id)] = row
    stored: dict[tuple[str, str], str] = {}  # fingerprints written earlier in this batch
    deferred: set[tuple[str, str]] = set()   # links whose cookies go one by one from here on
    results: list[Written | None] = []
    updates: list[tuple] = []
    history: list[tuple] = []
    for job in jobs:
        key = job.key
        row = links_by_key.get(key)
        if row is None or key in deferred:
            deferred.add(key)
            results.append(None)
            continue
        if same_fingerprint(stored.get(key, row.cookie_fingerprint), job.fingerprint):
            results.append((answer(rt, row.state, row.unipile_account_id), False, row.id, False))
            continue
        decision = policy.decide(to_policy(row), policy.CookieReceived(fresh=True), job.now, cfg)
        if needs_apply(decision):
            deferred.add(key)
            results.append(None)
            continue
        at = value.ts(job.now)
        updates.append((*job.cookie_row(rt, at), row.id))
        history.append((at, row.user_id, row.id, "cookie_received", None,
                        to_json(event_payload(row, decision, job.event_data(), row.incident_id))))
        stored[key] = job.fingerprint
        results.append((answer(rt, decision.link.state.value, row.unipile_account_id), decision.attempt_now, row.id,
                        True))
    return results, bulk.writes(updates, history)


# --- one at a time, through the policy's apply_event ---------------------------------------------
async def _alone_or_error(rt, job: NewCookie) -> Written | Exception:
    try:
        return await write_alone(rt, job)
    except Exception as exc:  # this cookie's caller gets the error; its neighbours are written
        return exc


async def write_alone(rt, job: NewCookie) -> Written:
    for _try in range(3):
        try:
            async with rt.engine.begin() as conn:
                return await _write_in(rt, conn, job)
        except IntegrityError:
            # Two first syncs for one member raced; the other one created the link.
            await asyncio.sleep(0.01)
    raise RuntimeError("could not store the sync after 3 tries")


async def _count_auto_links(conn, user_id: str) -> int:
    return (await conn.execute(
        sa.select(sa.func.count()).select_from(links)
        .where(links.c.user_id == user_id, links.c.auto_connect.is_(True))
    )).scalar_one()


async def _write_in(rt, conn, job: NewCookie) -> Written:
    """One sync's writes, in the caller's transaction, through the policy."""
    s = rt.settings
    device, body, now = job.device, job.body, job.now
    row = (await conn.execute(
        sa.select(links).where(links.c.user_id == device.user_id, links.c.plain_id == body.plain_id)
    )).first()
    if row is not None and same_fingerprint(row.cookie_fingerprint, job.fingerprint):
        return answer(rt, row.state, row.unipile_account_id), False, row.id, False
    if row is None:
        auto = await _count_auto_links(conn, device.user_id) < s.max_accounts_per_user
        result = await conn.execute(links.insert().values(
            user_id=device.user_id, plain_id=body.plain_id, state=policy.State.PENDING.value,
            auto_connect=auto,
            hold_reason=None if auto else "another LinkedIn account is already connected for this user",
            next_slot=0, attempts_in_incident=0, created_at=now, updated_at=now,
        ))
        link_id = result.inserted_primary_key[0]
        await add_event(conn, user_id=device.user_id, link_id=link_id, kind="link_created", at=now,
                        data={"plain_id": body.plain_id, "auto_connect": auto, "device_id": device.id})
    else:
        link_id = row.id
    await conn.execute(links.update().where(links.c.id == link_id).values(
        dict(zip(COOKIE_COLUMNS, job.cookie_row(rt, now)))))
    row = await load_link(conn, link_id)
    decision = await apply_event(rt, conn, row, policy.CookieReceived(fresh=True), trigger="extension",
                                 event_kind="cookie_received", data=job.event_data(), now=now)
    state = decision.link.state.value
    return answer(rt, state, row.unipile_account_id), decision.attempt_now, link_id, True
