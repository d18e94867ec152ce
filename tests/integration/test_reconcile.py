"""Reconciliation with Unipile's account list (issue 15 §2), end to end against the simulator over
real HTTP, on SQLite and PostgreSQL: a CREDENTIALS whose webhook was lost is found by the next pass
and reconnected; an account deleted in Unipile without a webhook ends disabled; a listing that fails
half-way disables nobody; a complete listing that misses too many accounts alerts instead; the
history says `reconcile`; an interval of 0 runs no pass."""
from __future__ import annotations

import time

import sqlalchemy as sa

from cookiesync.db.schema import events, leases
from cookiesync.domain.reconcile.services import RECONCILE, reconcile
from tests.integration.test_reconnect import attempts
from tests.integration.test_statuses import link_row
from tests.support.history import history
from tests.support.reconnect import connect_one, fast
from tests.support.service import in_service_loop, status_of
from tests.support.simulator import sim_get, sim_post
from tests.support.wait import wait_for

MANUAL = 3600.0  # only the start-up pass runs by itself; the test runs the others


def lose(sim, account_id: str, message: str) -> None:
    """Unipile changes the account's status and the webhook is lost (never delivered)."""
    r = sim_post(sim, f"/_sim/accounts/{account_id}/status", json={"message": message, "webhook": False})
    assert r.status_code == 200 and r.json()["deliveries"] == [], r.text


def mark(sim) -> int:
    return sim_get(sim, "/_sim/stats").json()["calls_total"]


def calls_since(sim, seq: int) -> list[dict]:
    """The Unipile calls after `mark` gave `seq` (a connect's profile read comes before)."""
    return [c for c in sim_get(sim, "/_sim/calls").json()["items"] if c["seq"] > seq]


def list_calls(sim, seq: int = 0) -> list[dict]:
    return [c for c in calls_since(sim, seq) if c["method"] == "GET" and c["path"] == "/api/v1/accounts"]


def started_pass(svc) -> None:
    """The start-up pass has ended (its lease row records it), so the test's own passes are alone."""
    async def q(conn):
        return (await conn.execute(sa.select(leases.c.last_run_at).where(leases.c.name == RECONCILE))).scalar()

    wait_for(lambda: svc.db(q), timeout=15)


def test_a_lost_credentials_is_found_by_the_next_pass_and_reconnected(service_factory, simulator) -> None:
    svc = service_factory(**fast(reconcile_interval_s=1.0))
    _, account_id = connect_one(svc, simulator, "r-1", "7101", "AQEDAR-reconcile-r1")
    lose(simulator, account_id, "CREDENTIALS")
    assert status_of(svc, "r-1", "7101") == "connected"  # no webhook: nothing heard yet

    seen = wait_for(lambda: [e for e in history(svc, "7101") if e["kind"] == "reconcile"], timeout=15)
    assert seen[0]["data"]["trigger"] == "reconcile" and seen[0]["data"]["message"] == "CREDENTIALS"
    assert seen[0]["data"]["listed_status"] == "CREDENTIALS" and seen[0]["data"]["to_state"] == "reconnecting"
    recon = wait_for(lambda: attempts(svc, "7101")[1:], timeout=10)
    assert recon[0]["data"]["kind"] == "reconnect" and recon[0]["data"]["trigger"] == "reconcile"
    assert recon[0]["data"]["outcome"] == "connected"
    started = [e for e in history(svc, "7101") if e["kind"] == "attempt_started"]
    assert started[-1]["data"]["trigger"] == "reconcile"
    assert wait_for(lambda: status_of(svc, "r-1", "7101") == "connected")
    account = next(a for a in sim_get(simulator, "/_sim/accounts").json()["items"] if a["id"] == account_id)
    assert account["status"] == "OK" and account["reconnects"] == 1
    # the next passes agree with the link: one drift, one reconnect, whatever the passes since
    time.sleep(2.5)
    assert len([e for e in history(svc, "7101") if e["kind"] == "reconcile"]) == 1
    assert len(attempts(svc, "7101")) == 2
    assert svc.rt.metrics.reconcile_drifts.labels("CREDENTIALS")._value.get() == 1
    assert svc.rt.metrics.reconcile_passes.labels("complete")._value.get() >= 2
    # each listing asked for the largest page the contract allows
    assert {c["query"] for c in list_calls(simulator)} == {"limit=250"}


def test_an_account_deleted_without_a_webhook_ends_disabled(service_factory, simulator) -> None:
    svc = service_factory(**fast(reconcile_interval_s=MANUAL))
    _, gone = connect_one(svc, simulator, "r-2", "7201", "AQEDAR-reconcile-r2")
    _, kept = connect_one(svc, simulator, "r-3", "7301", "AQEDAR-reconcile-r3")
    started_pass(svc)
    lose(simulator, gone, "DELETED")
    seq = mark(simulator)

    result = in_service_loop(svc, reconcile(svc.rt))
    assert result.outcome == "complete" and result.missing == 1 and dict(result.drifts) == {"DELETED": 1}
    assert link_row(svc, "7201").state == "disabled" and link_row(svc, "7301").state == "connected"
    row = next(e for e in history(svc, "7201") if e["kind"] == "reconcile")
    assert row["data"]["message"] == "DELETED" and row["data"]["observed"] == "404 by id"
    assert row["data"]["trigger"] == "reconcile" and row["data"]["to_state"] == "disabled"
    # disabled only after Unipile answered 404 for the id
    calls = calls_since(simulator, seq)
    by_id = [c for c in calls if c["method"] == "GET" and c["path"] == f"/api/v1/accounts/{gone}"]
    assert by_id and by_id[-1]["status"] == 404
    assert not [c for c in calls if c["method"] == "GET" and c["path"] == f"/api/v1/accounts/{kept}"]
    # a disabled link stays as it is at the next pass: nothing new in its history
    before = len(history(svc, "7201"))
    assert in_service_loop(svc, reconcile(svc.rt)).missing == 0
    assert len(history(svc, "7201")) == before


def test_a_listing_that_fails_half_way_disables_nobody(service_factory, simulator) -> None:
    svc = service_factory(**fast(reconcile_interval_s=MANUAL))
    _, gone = connect_one(svc, simulator, "r-4", "7401", "AQEDAR-reconcile-r4")
    started_pass(svc)
    # 300 more accounts (someone else's): the listing has two pages of 250
    assert sim_post(simulator, "/_sim/accounts/bulk", json={"id_prefix": "other-", "count": 300}).status_code == 200
    lose(simulator, gone, "DELETED")
    sim_post(simulator, "/_sim/listing", json={"outcomes": ["ok", "503"]}).raise_for_status()
    seq = mark(simulator)

    failed = in_service_loop(svc, reconcile(svc.rt))
    assert failed.outcome == "failed" and failed.pages == 1 and "503" in failed.error
    assert failed.missing == 0 and link_row(svc, "7401").state == "connected"
    assert [c["status"] for c in list_calls(simulator, seq)] == [200, 503]
    assert [c["path"] for c in calls_since(simulator, seq)] == ["/api/v1/accounts"] * 2, \
        "a failed listing confirms nothing"

    # the premise: the same listing, complete, does disable it
    done = in_service_loop(svc, reconcile(svc.rt))
    assert done.outcome == "complete" and done.pages == 2 and done.accounts == 300
    assert link_row(svc, "7401").state == "disabled"


def test_a_complete_listing_missing_most_accounts_alerts_and_disables_nobody(service_factory, simulator) -> None:
    svc = service_factory(**fast(reconcile_interval_s=MANUAL, reconcile_missing_max_share=0.5))
    ids = [connect_one(svc, simulator, f"r-v{i}", str(7600 + i), f"AQEDAR-reconcile-v{i:02d}")[1] for i in range(12)]
    started_pass(svc)
    for account_id in ids[:11]:  # a listing that lost 11 of 12 (past the floor of 10, past half)
        lose(simulator, account_id, "DELETED")
    seq = mark(simulator)

    result = in_service_loop(svc, reconcile(svc.rt))
    assert result.outcome == "valve" and result.missing == 11 and result.linked == 12 and not result.drifts
    assert all(link_row(svc, str(7600 + i)).state == "connected" for i in range(12))
    assert [c["path"] for c in calls_since(simulator, seq)] == ["/api/v1/accounts"], "none confirmed by id"

    async def alerts(conn):
        return (await conn.execute(sa.select(events.c.data).where(events.c.kind == "operator_alert",
                                                                  events.c.link_id.is_(None)))).scalars().all()

    (alert,) = svc.db(alerts)
    assert alert["trigger"] == "reconcile" and "11 of 12" in alert["reason"]


def test_interval_zero_runs_no_pass(service_factory, simulator) -> None:
    svc = service_factory(**fast(reconcile_interval_s=0.0))
    _, account_id = connect_one(svc, simulator, "r-5", "7501", "AQEDAR-reconcile-r5")
    lose(simulator, account_id, "CREDENTIALS")
    time.sleep(2.0)  # ten sweeps

    async def lease(conn):
        return (await conn.execute(sa.select(leases).where(leases.c.name == RECONCILE))).first()

    assert list_calls(simulator) == [] and svc.db(lease) is None
    assert status_of(svc, "r-5", "7501") == "connected"
    assert [e for e in history(svc, "7501") if e["kind"] == "reconcile"] == []
