"""What an account status from Unipile does to our links, whichever way it reached us: the
account-status webhook (controllers.py), or the reconciliation pass that found the status a lost
webhook carried (domain/reconcile). One path, so a status is handled the same either way.

`apply_status` runs in the caller's transaction and collects what must happen after the commit
(`Applied`); `after_commit` does it: the attempt runner is kicked for a reconnect due now, and the
account restarts Unipile was asked for are made, each recorded in the history when answered.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cookiesync.domain.reconnect import policy
from cookiesync.domain.reconnect.services import add_event, apply_event
from cookiesync.unipile.client import UnipileError


@dataclass
class Applied:
    kick: bool = False
    restarts: list[tuple[int, str, str]] = field(default_factory=list)  # (link id, user id, account id)
    decisions: list[policy.Decision] = field(default_factory=list)


async def apply_status(rt, conn, rows: list[Any], message: str, *, trigger: str, event_kind: str,
                       data: dict, now: datetime, applied: Applied) -> None:
    """`message` (a v1 account status) to each of `rows` (links of one account) through the
    reconnect policy, written in `conn`'s transaction."""
    for row in rows:
        decision = await apply_event(rt, conn, row, policy.WebhookStatus(message), trigger=trigger,
                                     event_kind=event_kind, data=data, now=now)
        applied.decisions.append(decision)
        applied.kick |= decision.attempt_now
        if decision.restart_account:
            applied.restarts.append((row.id, row.user_id, row.unipile_account_id))
        rt.link_cache.drop((row.user_id, row.plain_id))  # the sync path answers with the state: it re-reads


def after_commit(rt, applied: Applied) -> None:
    if applied.kick:
        rt.runner.kick()
    for link_id, user_id, account_id in applied.restarts:
        rt.spawn(_restart(rt, link_id, user_id, account_id))


async def _restart(rt, link_id: int, user_id: str, account_id: str) -> None:
    try:
        answer = await rt.unipile.restart_account(account_id)
        data = {"outcome": answer.get("object"), "unipile_account_id": account_id}
    except UnipileError as exc:
        data = {"outcome": "failed", "http_status": exc.status, "error_type": exc.error_type}
    async with rt.engine.begin() as conn:
        await add_event(conn, user_id=user_id, link_id=link_id, kind="account_restart", data=data)
