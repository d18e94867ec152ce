"""The console's front page: links by state, open incidents, attempt figures, outbox, sweep.

Attempt figures are sums of the hourly counters the attempt runner keeps (reconnect/counters.py),
never a scan of the attempt events."""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from cookiesync.db.engine import reader
from cookiesync.db.schema import events, leases, outbox, utcnow
from cookiesync.domain.reconnect.counters import counts_since, top_of_hour
from cookiesync.domain.retention.status import prune_status
from cookiesync.domain.support import schemas as S
from cookiesync.domain.support.stats import link_counts, open_incidents


def _stats(name: str, since: datetime, rows, give_ups: int) -> S.WindowStats:
    """rows: (attempt kind, outcome, count)."""
    total = ok = failed = checkpoints = rec_total = rec_ok = 0
    for k, o, n in rows:
        total += n
        ok += n if o == "connected" else 0
        failed += n if o == "failed" else 0
        checkpoints += n if o == "checkpoint" else 0
        if k == "reconnect":
            rec_total += n
            rec_ok += n if o == "connected" else 0
    return S.WindowStats(
        window=name, since=since, attempts=total, succeeded=ok, failed=failed, checkpoints=checkpoints,
        success_rate=round(ok / total, 4) if total else None, reconnect_attempts=rec_total,
        reconnect_succeeded=rec_ok, reconnect_success_rate=round(rec_ok / rec_total, 4) if rec_total else None,
        give_ups=give_ups)


async def _give_ups(conn, day_start: datetime, week_start: datetime) -> tuple[int, int]:
    """Give-up emails queued since each start, in one pass over the week's (few) email events."""
    day, week = (await conn.execute(
        sa.select(sa.func.count(sa.case((events.c.at >= day_start, 1))), sa.func.count())
        .where(events.c.kind == "email_queued", events.c.at >= week_start,
               events.c.data["email_kind"].as_string() == "gave_up")
    )).one()
    return day, week


async def read(rt, hours: int = 24) -> S.Overview:
    """Each window is a whole number of UTC hour buckets (the counters' grain): the 24 h figures
    and the chart cover the last `hours` buckets, the current one included (from the top of the
    hour 23 hours ago); the 7-day figures start at the top of the hour 7 days ago (the full 7 days,
    plus up to the hour before them). Each window's `since` says where it starts; its give-ups are
    counted from there too."""
    now = utcnow()
    start = top_of_hour(now - timedelta(hours=hours - 1))
    week_start = top_of_hour(now - timedelta(days=7))
    async with reader(rt.engine) as conn:
        by_state = await link_counts(conn)
        incidents_open = await open_incidents(conn)
        by_status = dict((await conn.execute(
            sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status))).all())
        lease = (await conn.execute(sa.select(leases).where(leases.c.name == "sweep"))).first()
        # the chart, the 24 h and the 7-day figures all come from these rows
        counted = await counts_since(conn, min(start, week_start))
        day_give_ups, week_give_ups = await _give_ups(conn, start, week_start)
        retention = await prune_status(conn, now)
    day = _stats("24h", start, [(k, o, n) for h, k, o, n in counted if h >= start], day_give_ups)
    week = _stats("7d", week_start, [(k, o, n) for h, k, o, n in counted if h >= week_start], week_give_ups)
    buckets = {start + timedelta(hours=i): [0, 0, 0] for i in range(hours)}
    for hour, _kind, out, n in counted:
        if hour in buckets:
            buckets[hour][0 if out == "connected" else 1 if out == "failed" else 2] += n
    live = lease is not None and lease.until > now
    sweep = S.SweepStatus(
        owner=lease.owner if lease else None, until=lease.until if lease else None,
        last_run_at=lease.last_run_at if lease else None, last_duration_ms=lease.last_duration_ms if lease else None,
        lease_live=live, this_instance=rt.instance_id,
        this_instance_leads=bool(live and lease.owner == rt.instance_id))
    return S.Overview(
        generated_at=now, links_by_state=by_state, links_total=sum(by_state.values()),
        open_incidents=incidents_open, last_24h=day, last_7d=week,
        outbox_waiting=by_status.get("pending", 0) + by_status.get("held", 0) + by_status.get("sending", 0),
        outbox_by_status=by_status, sweep=sweep,
        attempts_per_hour=[S.HourBucket(h, *v) for h, v in sorted(buckets.items())], retention=retention)
