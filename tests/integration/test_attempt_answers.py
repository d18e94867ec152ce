"""Attempt answers that arrive together are written together (`AttemptRunner._record_together`,
one statement per table and shape): every kind of answer leaves the same link, incident,
history, email, notification and counters as the same answer written alone."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from cookiesync.db.schema import attempt_counts, events, incidents, links, notifications, outbox, users, utcnow
from cookiesync.domain.reconnect.policy import Failure
from cookiesync.domain.reconnect.services import _Answer
from cookiesync.unipile.client import AuthResult
from tests.support.service import in_service_loop

FP = "f" * 64
OK = AuthResult(outcome="connected", http_status=200, duration_ms=100, account_id="acc-new", object="AccountCreated")
REFUSED = AuthResult(outcome="failed", http_status=401, duration_ms=90, failure=Failure.NEEDS_USER,
                     error_type="errors/invalid_credentials", error_title="refused")
OURS = AuthResult(outcome="failed", http_status=400, duration_ms=80, failure=Failure.CONFIGURATION,
                  error_type="errors/invalid_parameters", error_title="bad request")
CHECKPOINT = AuthResult(outcome="checkpoint", http_status=200, duration_ms=70, account_id="acc-cp",
                        object="Checkpoint", checkpoint_type="2FA")

# (link state, has an account, next slot, the answer)
CASES = {
    "reconnected": ("reconnecting", True, 0, OK),
    "first-connect": ("pending", False, 0, OK),
    "refused-again": ("reconnecting", True, 1, REFUSED),
    "refused-last-slot": ("reconnecting", True, 4, REFUSED),  # gives up: the email
    "our-config": ("reconnecting", True, 2, OURS),  # an operator alert
    "checkpoint": ("reconnecting", True, 0, CHECKPOINT),  # the checkpoint email
}


async def _make_links(conn, prefix: str, t0) -> dict[str, int]:
    ids = {}
    for name, (state, has_account, slot, _r) in CASES.items():
        uid = f"{prefix}-{name}"
        await conn.execute(users.insert().values(user_id=uid, email=f"{uid}@example.com", display_name=uid,
                                                 created_at=t0, updated_at=t0))
        link_id = (await conn.execute(links.insert().values(
            user_id=uid, plain_id="4242", state=state, auto_connect=True,
            unipile_account_id=f"acc-{uid}" if has_account else None, cookie_ciphertext=b"x", cookie_key_id="k1",
            cookie_fingerprint=FP, date_last_cookie=t0, incident_started_at=t0, next_slot=slot,
            next_attempt_at=t0 + slot * timedelta(hours=1), attempt_trigger="scheduler", attempts_in_incident=slot + 1,
            created_at=t0, updated_at=t0))).inserted_primary_key[0]
        incident = (await conn.execute(incidents.insert().values(
            link_id=link_id, kind="reconnect" if has_account else "connect", opened_at=t0,
            attempts=slot + 1))).inserted_primary_key[0]
        await conn.execute(links.update().where(links.c.id == link_id).values(incident_id=incident))
        ids[name] = link_id
    return ids


def _answers(ids: dict[str, int]) -> list[_Answer]:
    return [_Answer(ids[name], result, True, "scheduler", slot + 1, "reconnect" if has else "connect", FP, slot)
            for name, (_s, has, slot, result) in CASES.items()]


def _what_was_written(svc, ids: dict[str, int]) -> dict[str, dict]:
    """Per case: the rows it left, without ids, times and names that differ between the two copies."""
    async def q(conn):
        out = {}
        for name, link_id in ids.items():
            link = (await conn.execute(sa.select(links).where(links.c.id == link_id))).one()._asdict()
            incident = (await conn.execute(sa.select(incidents).where(incidents.c.link_id == link_id))).one()
            history = (await conn.execute(sa.select(events.c.kind, events.c.actor, events.c.data)
                                          .where(events.c.link_id == link_id).order_by(events.c.id))).all()
            mails = (await conn.execute(sa.select(outbox.c.kind, outbox.c.subject, outbox.c.status)
                                        .where(outbox.c.link_id == link_id))).all()
            notices = (await conn.execute(sa.select(notifications.c.event_type, notifications.c.status)
                                          .where(notifications.c.link_id == link_id))).all()
            for key in ("id", "user_id", "unipile_account_id", "incident_id", "updated_at", "last_attempt_at"):
                link.pop(key)
            link["profile_read_due"] = link.pop("profile_due_at") is not None  # the time differs
            out[name] = dict(
                link=link, incident_open=incident.closed_at is None, incident_outcome=incident.outcome,
                history=[(k, a, {f: v for f, v in d.items() if f != "incident_id"}) for k, a, d in history],
                emails=[tuple(m) for m in mails], notifications=[tuple(n) for n in notices])
        return out

    return svc.db(q)


def _counts(svc) -> dict[tuple[str, str], int]:
    async def q(conn):
        rows = (await conn.execute(sa.select(attempt_counts.c.kind, attempt_counts.c.outcome,
                                             sa.func.sum(attempt_counts.c.count))
                                   .group_by(attempt_counts.c.kind, attempt_counts.c.outcome))).all()
        return {(k, o): int(n) for k, o, n in rows}

    return svc.db(q)


def test_answers_written_together_leave_what_each_written_alone_leaves(service_factory) -> None:
    svc = service_factory(scheduler="off", integrator_webhook_url="http://127.0.0.1:9/hooks")
    t0 = utcnow() - timedelta(minutes=5)
    together_ids = svc.db(lambda conn: _make_links(conn, "together", t0))
    alone_ids = svc.db(lambda conn: _make_links(conn, "alone", t0))
    runner = svc.rt.runner

    async def record_both():
        together = await runner._record_together(_answers(together_ids))
        alone = [await runner._record_alone(a) for a in _answers(alone_ids)]
        return together, alone

    together, alone = in_service_loop(svc, record_both())
    assert [d.link for d in together] == [d.link for d in alone]
    assert [(d.attempt_now, d.email, d.alert) for d in together] == [(d.attempt_now, d.email, d.alert) for d in alone]

    written, expected = _what_was_written(svc, together_ids), _what_was_written(svc, alone_ids)
    assert written == expected
    # and what that is, so the comparison above compares something
    assert written["reconnected"]["link"]["state"] == "connected" and not written["reconnected"]["incident_open"]
    assert written["reconnected"]["notifications"] == [("link.connected", "pending")]
    # a connect marks the profile read due, in the same transaction; nothing else does
    assert {n for n, w in written.items() if w["link"]["profile_read_due"]} == {"reconnected", "first-connect"}
    assert written["refused-again"]["link"]["next_slot"] == 2 and written["refused-again"]["incident_open"]
    assert written["refused-last-slot"]["emails"][0][0] == "gave_up"
    assert written["refused-last-slot"]["link"]["state"] == "needs_user"
    assert [k for k, _a, _d in written["our-config"]["history"]] == ["attempt", "operator_alert"]
    assert written["checkpoint"]["emails"][0][0] == "checkpoint"
    assert all(w["link"]["lease_until"] is None for w in written.values())
    assert _counts(svc) == {("reconnect", "connected"): 2, ("connect", "connected"): 2,
                            ("reconnect", "failed"): 6, ("reconnect", "checkpoint"): 2}
