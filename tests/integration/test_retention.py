"""Retention (#17 §1), on SQLite and PostgreSQL: the prune removes what is past each retention and
nothing else, in batches of the configured size; on PostgreSQL each of its statements keeps to an
index; only the sweep's leader runs it, and the console's overview and /metrics show its last run."""
from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from cookiesync.db import prune as sql
from cookiesync.db.engine import make_engine, migrate
from cookiesync.db.schema import (attempt_counts, events, incidents, insert_missing, leases, links, notifications,
                                  outbox, users, utcnow, webhook_receipts)
from cookiesync.domain.retention.policy import Config, cutoffs
from cookiesync.domain.retention.services import PRUNE, prune
from tests.support.wait import wait_for

DAY = timedelta(days=1)
DEFAULTS = Config(webhook_receipts=timedelta(hours=1), cookie_history=90 * DAY, history=180 * DAY,
                  email_bodies=30 * DAY, notifications=30 * DAY)


def run(url: str, body):
    """`body(engine)` on a migrated database at `url`."""
    async def go():
        engine = make_engine(url)
        try:
            return await body(engine)
        finally:
            await engine.dispose()

    migrate(url)
    return asyncio.run(go())


async def add_link(conn, user_id: str, plain_id: str, now: datetime) -> int:
    await conn.execute(insert_missing(conn, users, user_id=user_id, created_at=now, updated_at=now))
    return (await conn.execute(links.insert().values(
        user_id=user_id, plain_id=plain_id, state="connected", auto_connect=True, created_at=now, updated_at=now)
    )).inserted_primary_key[0]


async def add_event(conn, link_id, kind: str, at: datetime, tag: str) -> None:
    await conn.execute(events.insert().values(at=at, user_id="u1", link_id=link_id, kind=kind, data={"tag": tag}))


def email_row(now, n: int, status: str, created: datetime, sent: datetime | None) -> dict:
    return dict(dedupe_key=f"d{n}", kind="gave_up", user_id="u1", link_id=None, to_addr="a@example.com",
                subject=f"subject {n}", body_text=f"text {n}", body_html=f"<p>html {n}</p>", message_id=f"<m{n}@x>",
                status=status, attempts=1, created_at=created, sent_at=sent)


def notice_row(n: int, status: str, created: datetime, delivered: datetime | None) -> dict:
    return dict(msg_id=f"msg_{n}", event_type="link.connected", user_id="u1", link_id=None, payload="{}",
                status=status, attempts=1, created_at=created, delivered_at=delivered)


async def seed(engine, now: datetime) -> None:
    """One of each case, each event tagged with what the prune should do to it."""
    ago = lambda days: now - days * DAY  # noqa: E731
    async with engine.begin() as conn:
        in_incident = await add_link(conn, "u1", "1", now)   # an incident open for 400 days
        active = await add_link(conn, "u1", "2", now)        # new cookies until 10 days ago
        dormant = await add_link(conn, "u1", "3", now)       # no cookie for 200 days
        await conn.execute(incidents.insert(), [
            dict(link_id=in_incident, kind="reconnect", opened_at=ago(400), closed_at=None, attempts=3),
            dict(link_id=active, kind="reconnect", opened_at=ago(210), closed_at=ago(200), attempts=1),
            dict(link_id=active, kind="reconnect", opened_at=ago(110), closed_at=ago(100), attempts=1),
        ])
        for link_id, kind, days, tag in [
            (in_incident, "cookie_received", 500, "gone"),   # before the incident opened, not the newest
            (in_incident, "attempt", 450, "gone"),
            (in_incident, "attempt", 399, "kept"),           # the open incident's history, whatever its age
            (in_incident, "cookie_received", 398, "kept"),
            (in_incident, "webhook", 397, "kept"),
            (active, "cookie_received", 200, "gone"),
            (active, "cookie_received", 100, "gone"),
            (active, "cookie_repeated", 100, "gone"),
            (active, "cookie_received", 10, "kept"),
            (active, "cookie_repeated", 5, "kept"),
            (active, "attempt", 200, "gone"),
            (active, "attempt", 100, "kept"),                # within the 180 days of attempts
            (active, "staff_action", 190, "gone"),
            (active, "link_created", 300, "gone"),
            (dormant, "cookie_received", 300, "gone"),
            (dormant, "cookie_received", 200, "kept"),       # the link's newest cookie, whatever its age
            (dormant, "cookie_repeated", 199, "gone"),
            (None, "device_paired", 181, "gone"),
            (None, "device_paired", 179, "kept"),
        ]:
            await add_event(conn, link_id, kind, ago(days), tag)
        await conn.execute(attempt_counts.insert(), [
            dict(hour=ago(200).replace(minute=0, second=0, microsecond=0), kind="reconnect", outcome="failed",
                 count=2),
            dict(hour=ago(10).replace(minute=0, second=0, microsecond=0), kind="reconnect", outcome="failed", count=1),
        ])
        await conn.execute(outbox.insert(), [
            email_row(now, 1, "sent", ago(41), ago(40)),     # bodies blanked, row kept
            email_row(now, 2, "sent", ago(11), ago(10)),
            email_row(now, 3, "pending", ago(100), None),    # not sent: untouched
            email_row(now, 4, "failed", ago(100), None),
            email_row(now, 5, "held", ago(100), None),
        ])
        await conn.execute(notifications.insert(), [
            notice_row(1, "delivered", ago(41), ago(40)),    # gone
            notice_row(2, "delivered", ago(11), ago(10)),
            notice_row(3, "pending", ago(100), None),
            notice_row(4, "failed", ago(100), None),
        ])
        await conn.execute(webhook_receipts.insert(), [
            dict(source="account_status", body_hash=f"h{i}", received_at=now - timedelta(minutes=minutes))
            for i, minutes in enumerate([120, 61, 59, 10])])


def test_prune_removes_what_is_past_each_retention_and_nothing_else(database_url) -> None:
    now = utcnow()

    async def body(engine):
        await seed(engine, now)
        removed = await prune(engine, cutoffs(DEFAULTS, now), rows=2, pause_s=0)
        async with engine.connect() as conn:
            left = {(r.kind, r.data["tag"], (now - r.at).days) for r in (await conn.execute(sa.select(events))).all()}
            kept_incidents = sorted((r.closed_at is None, (now - r.opened_at).days)
                                    for r in (await conn.execute(sa.select(incidents))).all())
            hours = [(now - r.hour).days for r in (await conn.execute(sa.select(attempt_counts))).all()]
            mails = {r.dedupe_key: (r.status, r.subject, r.body_text, r.body_html, r.sent_at is not None)
                     for r in (await conn.execute(sa.select(outbox))).all()}
            notices = sorted(r.msg_id for r in (await conn.execute(sa.select(notifications))).all())
            receipts = sorted(r.body_hash for r in (await conn.execute(sa.select(webhook_receipts))).all())
        again = await prune(engine, cutoffs(DEFAULTS, now), rows=2, pause_s=0)
        return removed, left, kept_incidents, hours, mails, notices, receipts, again

    removed, left, kept_incidents, hours, mails, notices, receipts, again = run(database_url, body)
    assert {tag for _k, tag, _d in left} == {"kept"}, sorted(left)
    assert sorted((k, d) for k, _t, d in left) == sorted([
        ("attempt", 399), ("cookie_received", 398), ("webhook", 397), ("cookie_received", 10),
        ("cookie_repeated", 5), ("attempt", 100), ("cookie_received", 200), ("device_paired", 179)])
    assert kept_incidents == [(False, 110), (True, 400)]  # the open one, and the one closed 100 days ago
    assert hours == [10]
    assert mails == {
        "d1": ("sent", "subject 1", "", "", True),
        "d2": ("sent", "subject 2", "text 2", "<p>html 2</p>", True),
        "d3": ("pending", "subject 3", "text 3", "<p>html 3</p>", False),
        "d4": ("failed", "subject 4", "text 4", "<p>html 4</p>", False),
        "d5": ("held", "subject 5", "text 5", "<p>html 5</p>", False)}
    assert notices == ["msg_2", "msg_3", "msg_4"]
    assert receipts == ["h2", "h3"]  # kept an hour
    assert removed == {"notifications": 1, "outbox": 1, "webhook_receipts": 2, "events": 11, "incidents": 1,
                       "attempt_counts": 1}
    assert again == dict.fromkeys(sql.TABLES, 0)


def test_zero_keeps_forever_and_receipts_outlive_the_dedupe_window(database_url) -> None:
    now = utcnow()
    forever = Config(webhook_receipts=timedelta(minutes=1), cookie_history=timedelta(0), history=timedelta(0),
                     email_bodies=timedelta(0), notifications=timedelta(0))

    async def body(engine):
        await seed(engine, now)
        return await prune(engine, cutoffs(forever, now), rows=1000, pause_s=0)

    # everything stays but the receipts older than the 15-minute window (a minute asked: 15 minutes kept)
    assert run(database_url, body) == dict.fromkeys(sql.TABLES, 0) | {"webhook_receipts": 3}


def test_prune_works_in_batches_of_the_configured_size(database_url) -> None:
    """Seven old rows of a table, two per statement: four statements, each in its own transaction."""
    now = utcnow()
    statements: list[str] = []
    transactions = [0]

    async def body(engine):
        async with engine.begin() as conn:
            link = await add_link(conn, "u1", "9", now)
            await conn.execute(webhook_receipts.insert(), [
                dict(source="s", body_hash=f"h{i}", received_at=now - timedelta(days=1, minutes=i)) for i in range(7)])
            for i in range(7):
                await add_event(conn, link, "attempt", now - (200 + i) * DAY, "gone")
            for i in range(3):  # the link's newest cookie and two dormant links': stepped over, once
                await add_event(conn, link if i == 0 else await add_link(conn, "u1", f"d{i}", now),
                                "cookie_received", now - (300 + i) * DAY, "kept")
        sa.event.listen(engine.sync_engine, "before_cursor_execute",
                        lambda _c, _cur, stmt, *_a: statements.append(stmt.split()[0] + " " + stmt.split()[2])
                        if stmt.lstrip().upper().startswith("DELETE") else None)
        sa.event.listen(engine.sync_engine, "commit", lambda _c: transactions.__setitem__(0, transactions[0] + 1))
        removed = await prune(engine, cutoffs(DEFAULTS, now), rows=2, pause_s=0)
        async with engine.connect() as conn:
            kept = (await conn.execute(sa.select(sa.func.count()).select_from(events))).scalar_one()
        return removed, kept

    removed, kept = run(database_url, body)
    assert removed["webhook_receipts"] == 7 and removed["events"] == 7 and kept == 3
    assert statements.count("DELETE webhook_receipts") == 4
    # attempts: 2 + 2 + 2 + 1; cookie_received: the three kept ones fill two pages, nothing removed
    assert statements.count("DELETE events") == 4 + 2
    assert transactions[0] >= len(statements)  # one transaction (at least) per statement


# --- PostgreSQL keeps to the index -----------------------------------------------------------
SYNTHETIC = [  # enough rows that the planner would rather scan if a statement had no index to keep to
    "INSERT INTO users (user_id, created_at, updated_at) VALUES ('u1', now(), now())",
    "INSERT INTO links (user_id, plain_id, state, auto_connect, created_at, updated_at, next_slot, "
    "attempts_in_incident) SELECT 'u1', g::text, 'connected', true, now(), now(), 0, 0 FROM generate_series(1, 20000) g",
    "INSERT INTO events (at, user_id, link_id, kind, data) SELECT now() - (g % 400) * interval '1 day', 'u1', "
    "1 + g % 20000, (ARRAY['cookie_received','cookie_repeated','attempt','webhook'])[1 + g % 4], '{}' "
    "FROM generate_series(1, 200000) g",
    "INSERT INTO incidents (link_id, kind, opened_at, closed_at, attempts) SELECT 1 + g % 20000, 'reconnect', "
    "now() - (g % 400) * interval '1 day', CASE WHEN g % 10 = 0 THEN NULL ELSE now() - (g % 400) * interval '1 day' END, "
    "1 FROM generate_series(1, 50000) g",
    "INSERT INTO webhook_receipts (source, body_hash, received_at) SELECT 's', md5(g::text), "
    "now() - g * interval '1 second' FROM generate_series(1, 100000) g",
    "INSERT INTO notifications (msg_id, event_type, user_id, payload, status, attempts, created_at, delivered_at) "
    "SELECT 'm' || g, 'link.connected', 'u1', '{}', CASE WHEN g % 50 = 0 THEN 'pending' ELSE 'delivered' END, 1, "
    "now() - (g % 400) * interval '1 day', now() - (g % 400) * interval '1 day' FROM generate_series(1, 100000) g",
    "INSERT INTO outbox (dedupe_key, kind, user_id, subject, body_text, body_html, message_id, status, attempts, "
    "created_at, sent_at) SELECT 'd' || g, 'gave_up', 'u1', 's', 'text', 'html', '<m' || g || '>', 'sent', 1, "
    "now() - (g % 400) * interval '1 day', now() - (g % 400) * interval '1 day' FROM generate_series(1, 100000) g",
    "INSERT INTO attempt_counts (hour, kind, outcome, count) SELECT date_trunc('hour', now()) - g * interval '1 hour', "
    "k, 'failed', 1 FROM generate_series(1, 20000) g, unnest(ARRAY['connect', 'reconnect']) k",
]


def test_each_prune_statement_keeps_to_an_index_on_postgresql(postgres_url) -> None:
    now = utcnow()
    cuts = cutoffs(DEFAULTS, now)
    c = {"cutoff": now - 90 * DAY, "n": 2000, "hours": 333}
    page = {"kind": "cookie_received", "cutoff": now - 90 * DAY, "after_at": now - 200 * DAY, "after_id": 5000}
    plans = {
        "EVENT_KINDS": (sql.EVENT_KINDS, {}),
        "EVENT_PAGE_END": (sql.EVENT_PAGE_END, page | {"skip": 1999}),
        "DELETE_EVENT_PAGE": (sql.DELETE_EVENT_PAGE, page | {"kind": "attempt", "end_at": now - 199 * DAY,
                                                              "end_id": 9000}),
        "DELETE_COOKIE_PAGE": (sql.DELETE_COOKIE_PAGE, page | {"end_at": now - 199 * DAY, "end_id": 9000}),
        "DELETE_INCIDENTS": (sql.DELETE_INCIDENTS, c),
        "DELETE_ATTEMPT_COUNTS": (sql.DELETE_ATTEMPT_COUNTS, c),
        "DELETE_WEBHOOK_RECEIPTS": (sql.DELETE_WEBHOOK_RECEIPTS, c | {"cutoff": cuts[next(iter(cuts))]}),
        "DELETE_NOTIFICATIONS": (sql.DELETE_NOTIFICATIONS, c),
        "BLANK_EMAIL_BODIES": (sql.BLANK_EMAIL_BODIES, c),
    }

    async def body(engine):
        async with engine.begin() as conn:
            for stmt in SYNTHETIC:
                await conn.exec_driver_sql(stmt)
        async with engine.connect() as conn:
            await conn.exec_driver_sql("ANALYZE")
            out = {}
            for name, (stmt, params) in plans.items():
                compiled = stmt.compile(dialect=conn.dialect)
                values = compiled.construct_params(params)
                args = tuple(values[k] for k in compiled.positiontup)
                rows = (await conn.exec_driver_sql("EXPLAIN " + compiled.string, args)).all()
                out[name] = "\n".join(r[0] for r in rows)
            return out

    plans_text = run(postgres_url, body)
    for name, plan in plans_text.items():
        assert "Seq Scan" not in plan, f"{name}:\n{plan}"
        assert "Index" in plan, f"{name}:\n{plan}"
    assert "ix_events_kind_at" in plans_text["DELETE_COOKIE_PAGE"]
    assert "ix_events_cookie_received_link_id_id" in plans_text["DELETE_COOKIE_PAGE"]
    assert "ix_webhook_receipts_received_at" in plans_text["DELETE_WEBHOOK_RECEIPTS"]
    assert "ix_outbox_sent_at_with_bodies" in plans_text["BLANK_EMAIL_BODIES"]
    assert "ix_notifications_status_delivered_at" in plans_text["DELETE_NOTIFICATIONS"]


# --- the sweep's leader runs it; the console and /metrics show it --------------------------------
def test_only_the_leader_prunes_and_the_console_and_metrics_show_it(database_url, service_factory, tmp_path) -> None:
    from cookiesync.domain.integrator.services import create_api_key
    from cookiesync.settings import ensure_local_secrets
    from tests.support.settings import make_settings

    now = utcnow()
    # the local secrets first, as a service that made the database would have (one refuses a
    # database found without them), then the old rows, then the two services
    ensure_local_secrets(make_settings(tmp_path), say=lambda _m: None)
    migrate(database_url)
    asyncio.run(_seed_at(database_url, now))
    first = service_factory(retention_interval_s=3600.0, retention_pause_s=0.0)
    second = service_factory(retention_interval_s=3600.0, retention_pause_s=0.0)

    def record():
        async def q(conn):
            return (await conn.execute(sa.select(leases).where(leases.c.name == PRUNE))).first()
        return first.db(q)

    wait_for(lambda: (r := record()) is not None and r.last_run_at is not None, timeout=20,
             what=lambda _v: f"no prune recorded: {record()}")
    # both keep sweeping a while longer; the interval is an hour, so neither prunes again
    wait_for(lambda: max(_sweeps(first), _sweeps(second)) >= 10, timeout=20)
    r = record()
    leader = first if first.rt.instance_id == r.owner else second
    assert r.owner in (first.rt.instance_id, second.rt.instance_id)
    runs = [svc.rt.metrics.prune_runs._value.get() for svc in (first, second)]
    assert sorted(runs) == [0, 1] and leader.rt.metrics.prune_runs._value.get() == 1
    removed = r.last_result["removed"]
    assert removed["events"] == 11 and removed["outbox"] == 1 and removed["notifications"] == 1

    key = asyncio.run(create_api_key(first.settings, "support-ro", scopes="support:read"))
    for svc in (first, second):  # every instance shows the leader's prune
        o = httpx.get(svc.url + "/v1/support/overview", headers={"Authorization": f"Bearer {key}"}).json()
        assert o["retention"]["removed"] == removed and o["retention"]["last_run_at"] is not None
        sizes = {t["table"]: t["rows"] for t in o["retention"]["tables"]}
        assert sizes["events"] == 8 and sizes["notifications"] == 3 and sizes["outbox"] == 5
        text = httpx.get(svc.url + "/metrics").text
        stamp = float(re.search(r"^cookiesync_prune_last_run_timestamp_seconds (\S+)$", text, re.M).group(1))
        assert abs(stamp - r.last_run_at.timestamp()) < 1
        assert re.search(r'^cookiesync_prune_last_removed\{table="events"\} 11\.0$', text, re.M)
        assert re.search(r'^cookiesync_table_rows\{table="events"\} 8\.0$', text, re.M)
    text = httpx.get(leader.url + "/metrics").text
    assert re.search(r'^cookiesync_prune_removed_total\{table="events"\} 11\.0$', text, re.M)
    assert re.search(r"^cookiesync_prune_runs_total 1\.0$", text, re.M)

    from tests.support.console import PASSWORD, add_staff

    add_staff(first, "ops@example.com", "viewer")
    with httpx.Client(base_url=first.url, follow_redirects=False, timeout=30) as browser:
        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/support/login").text).group(1)
        r = browser.post("/support/login", data={"email": "ops@example.com", "password": PASSWORD,
                                                 "csrf_token": token, "next": "/support/"})
        assert r.status_code == 303, r.text
        page = browser.get("/support/").text

        async def blanked(conn):
            return (await conn.execute(sa.select(outbox.c.id).where(outbox.c.dedupe_key == "d1"))).scalar_one()
        email_page = browser.get(f"/support/outbox/{first.db(blanked)}").text
    assert 'id="email-bodies-pruned"' in email_page and "subject 1" in email_page
    assert 'id="card-retention"' in page and 'id="prune-removed"' in page and "events 11" in page
    assert '<tr data-table="events"><td>events</td>' in page


async def _seed_at(url: str, now: datetime) -> None:
    engine = make_engine(url)
    try:
        await seed(engine, now)
    finally:
        await engine.dispose()


def _sweeps(svc) -> int:
    """Sweep passes this instance made as the leader."""
    return int(next(s.value for s in svc.rt.metrics.sweep_seconds.collect()[0].samples
                    if s.name == "cookiesync_sweep_seconds_count"))
