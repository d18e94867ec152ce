"""Retention figures (#17 §1), with synthetic rows made by SQL as the scale figures make theirs.

- `prune_during_ingest`: N old history rows, then the sync ingest measured without and with the
  prune (domain/retention/services.prune, batch and pause as the defaults) running beside it, side
  by side in one run; the pass must delete exactly the N old rows and none of the recent ones.
- `steady_state`: L links through D simulated days of syncs and webhooks, a prune at each day's
  end; the table sizes per day, flat once the first retention period has passed. The retention
  periods are scaled to the simulated span (cookies 7 days, the rest of the history 14, bodies and
  notifications 3, receipts 1 hour), so that D = 30 covers two periods.
"""
from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from benchmarks import data

DAY = timedelta(days=1)
OLD_KINDS = ("attempt", "cookie_repeated", "webhook")  # none of them is ever kept past its retention


def _series(engine, n_name: str = "n") -> tuple[str, str]:
    """(WITH clause, FROM clause) of the numbers 1..:n, in the engine's dialect."""
    if engine.dialect.name == "postgresql":
        return "", f"FROM generate_series(1, CAST(:{n_name} AS integer)) AS s(x)"
    return f"WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < :{n_name}) ", "FROM s"


def _at(engine, base: str, seconds: str) -> str:
    """`:base` plus `seconds` (an SQL expression), stored as UTCDateTime stores it."""
    if engine.dialect.name == "postgresql":
        return f"(CAST(:{base} AS timestamptz) + ({seconds}) * interval '1 second')"
    return f"(strftime('%Y-%m-%d %H:%M:%S', :{base}, '+' || ({seconds}) || ' seconds') || '.000000')"


def _json(engine) -> str:
    return "CAST('{\"synthetic\": true}' AS json)" if engine.dialect.name == "postgresql" else "'{\"synthetic\": true}'"


async def insert_old_events(engine, n: int, links: int, chunk: int = 1_000_000) -> None:
    """`n` history rows 200 to 400 days old, over link ids 1..`links`: past every retention."""
    start = data._now() - 400 * DAY
    kinds = ", ".join(f"'{k}'" for k in OLD_KINDS)
    pick = (f"(ARRAY[{kinds}])[1 + x % 3]" if engine.dialect.name == "postgresql"
            else f"CASE x % 3 WHEN 0 THEN '{OLD_KINDS[0]}' WHEN 1 THEN '{OLD_KINDS[1]}' ELSE '{OLD_KINDS[2]}' END")
    with_, src = _series(engine)
    done = 0
    while done < n:
        k = min(chunk, n - done)
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                f"{with_}INSERT INTO events (at, user_id, link_id, kind, actor, data) "
                f"SELECT {_at(engine, 'base', f'(x + {done}) % (200 * 86400)')}, 'bench-old', "
                f"1 + (x + {done}) % {max(1, links)}, {pick}, NULL, {_json(engine)} {src}"),
                {"n": k, "base": data._ts(engine, start)})
        done += k
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("ANALYZE events"))


async def count_events(engine, cutoff: datetime) -> tuple[int, int]:
    """(rows older than `cutoff`, rows from it on)."""
    async with engine.connect() as conn:
        old = (await conn.execute(sa.text(f"SELECT count(*) FROM events WHERE at < {data._ts_sql(engine, 'c')}"),
                                  {"c": data._ts(engine, cutoff)})).scalar_one()
        total = (await conn.execute(sa.text("SELECT count(*) FROM events"))).scalar_one()
    return old, total - old


def prune_during_ingest(ctx, svc, kind: str, n: int, label: str, change: float, goal: float, wrk_run, paths,
                        row_cls) -> list:
    """The sync ingest's req/s without the prune, then with it, in alternating runs of the same
    length; the prune deletes `n` old rows meanwhile."""
    from cookiesync.domain.retention.policy import config_from, cutoffs
    from cookiesync.domain.retention.services import prune
    from cookiesync.db.schema import DEDUPE_WINDOW

    cfg = ctx.cfg
    t = time.monotonic()
    svc.db(insert_old_events, n, len(svc.devices))
    now = data._now()
    cuts = cutoffs(config_from(svc.settings, DEDUPE_WINDOW), now)
    oldest_kept = min(c for c in cuts.values() if c is not None)  # every OLD_KINDS row is older than this
    old0, recent0 = svc.db(count_events, oldest_kept)
    ctx.say(f"{kind}: {n:,} old history rows inserted ({time.monotonic() - t:.1f}s); events older than every "
            f"retention {old0:,}, recent {recent0:,}")

    def runs(tag: str, until=None) -> dict:
        out = {"bare": [], "sync": []}
        r = 0
        while r < max(1, cfg.rounds) or (until is not None and until()):
            for ep in (("bare", "sync") if r % 2 == 0 else ("sync", "bare")):
                res = wrk_run(ctx, svc, paths[ep], change, cfg.run_s, seed=500 + r * 2 + (ep == "sync"))
                out[ep].append(res)
                gone = progress["events"]  # the prune's own count so far: a long run shows how far it is
                ctx.say(f"  prune bench {label:<14} {tag:<13} {ep:<4} {res['rps']:8.0f} req/s  "
                        f"p99 {res['p99_us'] / 1000:6.2f} ms" + (f"  errors {res['errors']}" if res["errors"] else "")
                        + (f"  (pruned {gone:,} of {old0:,} old rows, "
                           f"{gone / (time.monotonic() - progress['began']):,.0f}/s)" if until is not None else ""))
            r += 1
            if until is not None and not until():
                break
        return {ep: sorted(x["rps"] for x in v)[len(v) // 2] for ep, v in out.items()} | {
            "errors": sum(x["errors"] for v in out.values() for x in v), "rounds": r}

    progress = {"events": 0, "began": time.monotonic()}  # what the prune removed, and since when
    without = runs("without prune")
    result: dict = {}

    def go() -> None:
        async def body():
            from cookiesync.db.engine import make_engine

            engine = make_engine(svc.settings.database)
            try:
                t0 = progress["began"] = time.monotonic()
                result["removed"] = await prune(
                    engine, cuts, svc.settings.retention_batch_rows, svc.settings.retention_pause_s,
                    counted=lambda table, n: progress.update({table: progress.get(table, 0) + n}))
                result["seconds"] = time.monotonic() - t0
            finally:
                await engine.dispose()
        try:
            asyncio.run(body())
        except Exception as exc:  # reported in the row
            result["error"] = f"{type(exc).__name__}: {exc}"

    pruner = threading.Thread(target=go, name="prune", daemon=True)
    pruner.start()
    during = runs("during prune", until=pruner.is_alive)
    covered = pruner.is_alive()  # the prune outlasted the measured runs
    pruner.join()
    old1, recent1 = svc.db(count_events, oldest_kept)
    removed = result.get("removed", {}).get("events", 0)
    deleted_right = old1 == 0 and removed == old0 and recent1 >= recent0
    ratio = during["sync"] / without["sync"]
    # the ingest row's goal, applied to the ingest with the prune against the ingest without it
    ok = ratio >= goal and deleted_right and not result.get("error") and not during["errors"]
    value = (f"{ratio:.2f} ({during['sync']:,.0f} req/s during the prune / {without['sync']:,.0f} without; "
             f"sync/bare during it {during['sync'] / during['bare']:.2f}, without {without['sync'] / without['bare']:.2f}; "
             f"prune removed {removed:,} of {old0:,} old rows in {result.get('seconds', 0):.1f} s at "
             f"{svc.settings.retention_batch_rows} per batch, old rows left {old1:,}, recent {recent0:,} -> {recent1:,}"
             + ("" if covered else f"; the prune ended within {during['rounds']} round(s)")
             + (f"; {result['error']}" if result.get("error") else "") + ")")
    ctx.raw.setdefault(kind, {})[f"prune during ingest {label}"] = dict(
        without=without, during=during, result=result, old_before=old0, old_after=old1, recent_before=recent0,
        recent_after=recent1)
    return [row_cls(kind, f"prune of {n:,} old events while the sync ingest runs ({label}): req/s with/without",
                    value, f"≥ {goal:.2f} (the ingest row's), all old rows deleted, no recent one", ok)]


# --- the steady state ------------------------------------------------------------------------
SIZED = ("events", "webhook_receipts", "incidents", "attempt_counts", "notifications", "outbox")


async def simulate_day(engine, links: int, day_start: datetime) -> None:
    """One day of `links` links: a new cookie each (cookie_received), two hours of unchanged syncs
    counted (cookie_repeated), and for 1 link in 100 a webhook (its receipt, its history row), an
    attempt, an incident opened and closed, a delivered notification; an email sent for 1 in 1,000;
    the attempt counters of the day's hours."""
    with_, src = _series(engine)
    p = {"n": links, "base": data._ts(engine, day_start), "hundredth": max(1, links // 100),
         "thousandth": max(1, links // 1000)}
    at = _at(engine, "base", "x % 86400")
    # the 1-in-100 rows spread over the day, as webhooks and attempts come
    spread = "(x * 86399) / CAST(:hundredth AS integer)"
    at_s, later = _at(engine, "base", spread), _at(engine, "base", f"{spread} + 3600")
    js = _json(engine)
    stamp = int(day_start.timestamp())
    async with engine.begin() as conn:
        for kind, mult in (("cookie_received", 1), ("cookie_repeated", 2)):
            await conn.execute(sa.text(
                f"{with_}INSERT INTO events (at, user_id, link_id, kind, actor, data) "
                f"SELECT {at}, 'bulk', 1 + x % :links, '{kind}', NULL, {js} {src}"),
                p | {"n": links * mult, "links": links})
        small = _series(engine, "hundredth")
        for kind in ("webhook", "attempt"):
            await conn.execute(sa.text(
                f"{small[0]}INSERT INTO events (at, user_id, link_id, kind, actor, data) "
                f"SELECT {at_s}, 'bulk', 1 + (x * 100) % :links, '{kind}', NULL, {js} {small[1]}"), p | {"links": links})
        await conn.execute(sa.text(
            f"{small[0]}INSERT INTO webhook_receipts (source, body_hash, received_at) "
            f"SELECT 'account_status', '{stamp}-' || x, {at_s} {small[1]}"), p)
        await conn.execute(sa.text(
            f"{small[0]}INSERT INTO incidents (link_id, kind, opened_at, closed_at, outcome, attempts) "
            f"SELECT 1 + (x * 100) % :links, 'reconnect', {at_s}, {later}, 'connected', 1 {small[1]}"),
            p | {"links": links})
        await conn.execute(sa.text(
            f"{small[0]}INSERT INTO notifications (msg_id, event_type, user_id, link_id, payload, status, attempts, "
            f"created_at, delivered_at) SELECT 'msg_{stamp}_' || x, 'link.connected', 'bulk', NULL, '{{}}', "
            f"'delivered', 1, {at_s}, {later} {small[1]}"), p)
        tiny = _series(engine, "thousandth")
        await conn.execute(sa.text(
            f"{tiny[0]}INSERT INTO outbox (dedupe_key, kind, user_id, link_id, to_addr, subject, body_text, body_html, "
            f"message_id, status, attempts, created_at, sent_at) SELECT 'd{stamp}-' || x, 'gave_up', 'bulk', NULL, "
            f"'user@example.com', 'subject', 'a body of some length', '<p>a body of some length</p>', "
            f"'<{stamp}.' || x || '@bench>', 'sent', 1, {at}, {_at(engine, 'base', 'x % 86400 + 60')} {tiny[1]}"), p)
        hours = _series(engine, "hours")
        for outcome in ("connected", "failed"):
            await conn.execute(sa.text(
                f"{hours[0]}INSERT INTO attempt_counts (hour, kind, outcome, count) "
                f"SELECT {_at(engine, 'base', '(x - 1) * 3600')}, 'reconnect', '{outcome}', 1 {hours[1]}"),
                p | {"hours": 24})


async def sizes(engine) -> dict[str, int]:
    async with engine.connect() as conn:
        out = {t: (await conn.execute(sa.text(f"SELECT count(*) FROM {t}"))).scalar_one() for t in SIZED}
        out["outbox bodies"] = (await conn.execute(sa.text(
            "SELECT count(*) FROM outbox WHERE body_text <> ''"))).scalar_one()
    return out


def steady_state(kind: str, links: int, days: int, say, row_cls) -> list:
    from cookiesync.db.engine import make_engine, migrate
    from cookiesync.domain.retention.policy import Config, cutoffs
    from cookiesync.domain.retention.services import prune

    cfg = Config(webhook_receipts=timedelta(hours=1), cookie_history=7 * DAY, history=14 * DAY,
                 email_bodies=3 * DAY, notifications=3 * DAY)
    period = 14  # the longest retention: from then on every table should stay flat
    workdir = Path(tempfile.mkdtemp(prefix="cs-retention-"))
    pg_name = None
    if kind == "postgres":
        pg_name, url = data.pg_create_database()
    else:
        url = f"sqlite+aiosqlite:///{workdir / 'steady.db'}"
    migrate(url)
    per_day: list[dict] = []

    async def body():
        engine = make_engine(url)
        try:
            t = time.monotonic()
            await data.bulk_links(engine, 1, links)
            say(f"{kind}: steady state: {links:,} links ({time.monotonic() - t:.1f}s)")
            t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
            for d in range(days):
                t = time.monotonic()
                await simulate_day(engine, links, t0 + d * DAY)
                ins = time.monotonic() - t
                t = time.monotonic()
                removed = await prune(engine, cutoffs(cfg, t0 + (d + 1) * DAY), 5000, 0.0)
                pr = time.monotonic() - t
                if engine.dialect.name == "postgresql":
                    async with engine.connect() as conn:
                        await conn.execution_options(isolation_level="AUTOCOMMIT")
                        await conn.execute(sa.text("VACUUM ANALYZE"))
                s = await sizes(engine)
                per_day.append(dict(s, day=d + 1, insert_s=ins, prune_s=pr, removed=sum(removed.values())))
                say(f"  day {d + 1:2}: inserted in {ins:5.1f}s, pruned {sum(removed.values()):9,} rows in {pr:5.1f}s; "
                    + ", ".join(f"{k} {v:,}" for k, v in s.items()))
        finally:
            await engine.dispose()

    try:
        asyncio.run(body())
    finally:
        if pg_name:
            data.pg_drop_database(pg_name)
        shutil.rmtree(workdir, ignore_errors=True)  # SQLite's file is GBs at 1,000,000 links
    shown = [d for d in per_day if d["day"] in (1, 7, period, period + 1, days)]
    flat_from = per_day[period] if len(per_day) > period else per_day[-1]   # day period + 1
    last = per_day[-1]
    drift = {t: (last[t] - flat_from[t]) / max(1, flat_from[t]) for t in (*SIZED, "outbox bodies") if t != "outbox"}
    ok = len(per_day) > period and all(abs(v) <= 0.01 for v in drift.values())
    value = ("; ".join(f"day {d['day']}: events {d['events']:,}, receipts {d['webhook_receipts']:,}, "
                       f"incidents {d['incidents']:,}, counters {d['attempt_counts']:,}, notifications "
                       f"{d['notifications']:,}, outbox {d['outbox']:,} ({d['outbox bodies']:,} with bodies)"
                       for d in shown)
             + f"; largest change from day {flat_from['day']} to {last['day']}: "
             + f"{max(abs(v) for v in drift.values()):.2%} (outbox rows are kept by design, their bodies are not)")
    return [row_cls(kind, f"steady state: {links:,} links, {days} days of syncs and webhooks, pruned daily: "
                          f"table sizes", value, f"flat after day {period} (±1%)", ok)]
