"""The reconciliation pass: Unipile's account list against our links, for the webhooks Unipile
dropped (issue 15 §2; the rules are policy.py's).

`reconcile` reads `GET /accounts` a page of the largest size at a time (250, contract §4), the next
page requested while the current one is compared, so the pass takes about one Unipile round trip
per page. Each page's links are read with one IN query (db/reconcile_sql.py) and compared; a drift
goes through `webhooks.services.apply_status`, the account-status webhook's own path, with trigger
`reconcile` (history kind `reconcile`, `data.trigger`, and the attempt it schedules), and is
counted in `cookiesync_reconcile_drifts_total`. A link changed after the page was requested is left
alone: its state is newer than the listing. Nothing the listing says disables anyone.

Only a listing that reached its last page (no `cursor`) looks for accounts it did not show: the
account ids seen are kept in a set, our linked accounts are scanned by id (a keyset, a batch at a
time), and those not seen and not changed since the listing began are, unless `policy.valve` trips
(operators alerted, nobody touched), asked for by id; a 404 there is `DELETED`, through the same
webhook path (the link ends disabled). A listing that fails half-way (Unipile down, a page that
keeps answering 429) ends the pass as `failed`: what it compared stays done, nobody is disabled.

The calls wait out this instance's 429 pause (domain/unipile_backoff), and a 429 on a page is
retried after its `Retry-After` a few times before the pass gives up.

`Reconciler` is the sweep leader's job (scheduler/jobs.LeaderJob): every
`COOKIESYNC_RECONCILE_INTERVAL_S` (0: never), and once soon after this instance started (webhooks
sent while it was down were lost), beside the sweep so a pass of a million accounts never holds up
attempts or emails; a failed pass is logged and the next interval tries again.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable

from cookiesync.db import reconcile_sql as sql
from cookiesync.db.engine import reader
from cookiesync.db.schema import utcnow
from cookiesync.domain.reconcile import policy as rp
from cookiesync.domain.reconcile.schemas import AccountPage
from cookiesync.domain.reconnect.policy import Link, State
from cookiesync.domain.reconnect.services import add_event, to_policy
from cookiesync.domain.webhooks.services import Applied, after_commit, apply_status
from cookiesync.scheduler.jobs import LeaderJob, LostClaim
from cookiesync.unipile.client import UnipileError

log = logging.getLogger("cookiesync.reconcile")
RECONCILE = "reconcile"  # its row in `leases`
TRIGGER = "reconcile"
SCAN_BATCH = 2000        # linked accounts per keyset step of the missing-account scan
CONFIRMS_AT_ONCE = 4     # GET /accounts/{id} in flight while confirming absent accounts
PAGE_RETRIES = 5         # 429s on one page before the pass gives up
RATE_LIMIT_WAIT_S = 2.0  # after a 429 without Retry-After
VALVE_ALERT = "reconciliation: a complete listing misses too many accounts; nobody disabled"

Keep = Callable[[], Awaitable[None]]


@dataclass
class PassResult:
    """What one pass did: logged, kept in the lease row's `last_result`, returned to tests."""
    outcome: str = "running"  # complete | failed | valve
    pages: int = 0
    accounts: int = 0          # accounts listed
    compared: int = 0          # our links found for them
    newer: int = 0             # links left alone: changed after the listing was read
    drifts: Counter = field(default_factory=Counter)  # by the webhook message they were handled as
    linked: int = 0            # our linked accounts scanned after a complete listing
    missing: int = 0           # ... not in it
    confirm_failed: int = 0    # absent, but GET by id answered neither the account nor 404
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self) | {"drifts": dict(self.drifts)}


async def _wait_out_backoff(rt) -> None:
    if pause := rt.unipile.backoff.paused_for():
        await asyncio.sleep(pause.total_seconds())


async def _page(rt, cursor: str | None) -> tuple[AccountPage, datetime]:
    """One page and when it was asked for (what it says is no newer than that)."""
    for tries in range(PAGE_RETRIES + 1):
        await _wait_out_backoff(rt)
        asked = utcnow()
        try:
            return await rt.unipile.list_accounts(cursor), asked
        except UnipileError as exc:
            if not exc.rate_limited or tries == PAGE_RETRIES:
                raise
            wait = exc.retry_after.total_seconds() if exc.retry_after is not None else RATE_LIMIT_WAIT_S
            await asyncio.sleep(max(wait, RATE_LIMIT_WAIT_S))
    raise AssertionError("unreachable")


def _drifts(rows: list[Any], seen: dict[str, rp.Observation], as_of: datetime, result: PassResult,
            how: str) -> list[tuple[int, str, dict]]:
    """(link id, webhook message, history data) for each row whose observation is a drift."""
    out = []
    for row in rows:
        if row.updated_at > as_of:
            result.newer += 1
            continue
        obs = seen[row.unipile_account_id]
        decision = rp.decide(to_policy(row), obs)
        if decision.action is rp.Action.EVENT:
            out.append((row.id, decision.event.message, {
                "trigger": TRIGGER, "observed": how, "reconcile_note": decision.note,
                "listed_status": obs.status if isinstance(obs, rp.Listed) else None}))
    return out


async def _apply(rt, drifts: list[tuple[int, str, dict]], as_of: datetime, result: PassResult) -> None:
    """The drifts through the webhook's path, in one transaction, on rows re-read (and locked on
    PostgreSQL) unless they changed since `as_of`."""
    if not drifts:
        return
    applied, now = Applied(), utcnow()
    async with rt.engine.begin() as conn:
        rows = {r.id: r for r in (await conn.execute(sql.to_apply(rt.engine.dialect.name == "postgresql"),
                                                     {"ids": [d[0] for d in drifts], "as_of": as_of})).all()}
        for link_id, message, data in drifts:
            row = rows.get(link_id)
            if row is None:  # changed (or erased) meanwhile: newer than what Unipile said
                result.newer += 1
                continue
            data = {"message": message, "unipile_account_id": row.unipile_account_id} | data
            await apply_status(rt, conn, [row], message, trigger=TRIGGER, event_kind="reconcile", data=data,
                               now=now, applied=applied)
            result.drifts[message] += 1
            rt.metrics.reconcile_drifts.labels(message).inc()
    after_commit(rt, applied)


async def _compare(rt, page: AccountPage, as_of: datetime, seen: set[str], result: PassResult) -> None:
    listed: dict[str, rp.Observation] = {}
    for account in page.items:
        status = rp.account_status([s.status for s in account.sources])
        if status is not None:
            listed[account.id] = rp.Listed(status)
    seen.update(a.id for a in page.items)
    result.accounts += len(page.items)
    if not listed:
        return
    async with reader(rt.engine) as conn:
        rows = (await conn.execute(sql.LINKS_OF_ACCOUNTS, {"ids": list(listed)})).all()
    result.compared += len(rows)
    await _apply(rt, _drifts(rows, listed, as_of, result, "listing"), as_of, result)


async def _absent(rt, seen: set[str], began: datetime, result: PassResult, keep: Keep | None) -> list[Any]:
    """Our linked accounts the complete listing did not show, not changed since it began."""
    out, after = [], 0
    while True:
        async with reader(rt.engine) as conn:
            rows = (await conn.execute(sql.LINKED_AFTER, {"after": after, "n": SCAN_BATCH})).all()
        for r in rows:
            if r.updated_at > began:  # connected or changed after the listing began: not comparable
                continue
            result.linked += 1
            if r.unipile_account_id not in seen:
                out.append(r)
        if len(rows) < SCAN_BATCH:
            return out
        after = rows[-1].id
        if keep is not None:
            await keep()


async def _confirm(rt, account_id: str, result: PassResult) -> None:
    await _wait_out_backoff(rt)
    asked = utcnow()
    try:
        account = await rt.unipile.get_account(account_id)
    except UnipileError as exc:
        obs: rp.Observation = rp.NotFound() if exc.status == 404 else rp.ConfirmFailed()
        how = "404 by id" if exc.status == 404 else f"by id: {exc.brief}"
    else:  # there after all (the listing moved under its cursor): compared as listed
        sources = [s.get("status") for s in account.get("sources") or [] if isinstance(s, dict)]
        status = rp.account_status([s for s in sources if isinstance(s, str)])
        obs, how = (rp.Listed(status) if status else rp.ConfirmFailed()), "by id"
    if isinstance(obs, rp.ConfirmFailed):
        result.confirm_failed += 1
    async with reader(rt.engine) as conn:
        rows = (await conn.execute(sql.LINKS_OF_ACCOUNTS, {"ids": [account_id]})).all()
    await _apply(rt, _drifts(rows, {account_id: obs}, asked, result, how), asked, result)


async def _missing(rt, seen: set[str], began: datetime, config: rp.Config, result: PassResult,
                   keep: Keep | None) -> None:
    absent = await _absent(rt, seen, began, result, keep)
    result.missing = len(absent)
    if rp.valve(len(absent), result.linked, config):
        result.outcome = "valve"
        reason = (f"{VALVE_ALERT}: {len(absent):,} of {result.linked:,} linked accounts absent "
                  f"(more than {config.missing_max_share:.0%})")
        rt.metrics.alerts.labels(VALVE_ALERT[:60]).inc()
        log.error("OPERATOR ALERT: %s", reason)
        async with rt.engine.begin() as conn:
            await add_event(conn, user_id="-", link_id=None, kind="operator_alert",
                            data={"reason": reason, "trigger": TRIGGER})
        return
    accounts = sorted({r.unipile_account_id for r in absent
                       if rp.decide(Link(State(r.state), has_account=True), rp.Absent()).action is rp.Action.CONFIRM})
    gate = asyncio.Semaphore(CONFIRMS_AT_ONCE)

    async def one(account_id: str) -> None:
        async with gate:
            if keep is not None:
                await keep()
            await _confirm(rt, account_id, result)

    await asyncio.gather(*(one(a) for a in accounts))


async def reconcile(rt, keep: Keep | None = None) -> PassResult:
    """One pass (module docstring). `keep` runs once per page and scan batch (the claim's renewal:
    it raises to stop)."""
    s = rt.settings
    config = rp.Config(missing_max_share=s.reconcile_missing_max_share)
    result, seen, began = PassResult(), set(), utcnow()
    pending: asyncio.Task | None = asyncio.get_running_loop().create_task(_page(rt, None))
    try:
        while pending is not None:
            page, as_of = await pending
            result.pages += 1
            # the next page is asked for now, and compared after this one
            pending = asyncio.get_running_loop().create_task(_page(rt, page.cursor)) if page.cursor else None
            if keep is not None:
                await keep()
            await _compare(rt, page, as_of, seen, result)
    except UnipileError as exc:
        result.outcome, result.error = "failed", f"listing page {result.pages + 1}: {exc.brief}"
        return result
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
    await _missing(rt, seen, began, config, result, keep)
    if result.outcome == "running":
        result.outcome = "complete"
    return result


class Reconciler(LeaderJob):
    """The sweep leader's reconciliation job (one per runtime)."""

    name = RECONCILE

    def __init__(self, rt) -> None:
        super().__init__(rt)
        self.started_at = utcnow()

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=self.rt.settings.reconcile_interval_s)

    def due_now(self, last_run_at: datetime | None, now: datetime) -> bool:
        # also once after this instance started: the webhooks sent while it was down were dropped
        return last_run_at is None or last_run_at < self.started_at or now - last_run_at >= self.interval

    async def start_if_due(self) -> bool:
        if self.rt.settings.reconcile_interval_s <= 0:
            return False
        return await super().start_if_due()

    async def run(self) -> dict:
        started, t0 = utcnow(), time.perf_counter()
        try:
            result = (await reconcile(self.rt, keep=self.keep)).as_dict()
        except LostClaim:
            log.warning("reconciliation stopped: another instance holds it now")
            return {}
        except Exception as exc:  # the database, an answer we could not read: the next interval tries again
            log.exception("reconciliation pass failed; the next interval tries again")
            result = PassResult(outcome="failed", error=type(exc).__name__).as_dict()
        duration = time.perf_counter() - t0
        self.rt.metrics.reconcile_passes.labels(result["outcome"]).inc()
        (log.info if result["outcome"] == "complete" else log.warning)(
            "reconciliation %s in %.1f s: %s pages, %s accounts, drifts %s, %s absent%s", result["outcome"], duration,
            result["pages"], result["accounts"], result["drifts"], result["missing"],
            f" ({result['error']})" if result["error"] else "")
        await self.finish(duration, result | {"started_at": started.isoformat()})
        return result
