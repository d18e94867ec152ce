"""Reading the LinkedIn profile after a connect: the I/O around `profile.policy.decide`.

The connect is recorded first: the transaction that writes a link `connected` also sets its
`profile_due_at` (reconnect.services.apply_event). `ProfileReader` then claims due links with one
conditional update that pushes `profile_due_at` past the two calls (the claim is the lease: a reader
that dies leaves the read due again, on any instance), reads `GET /accounts/{id}` and
`GET /users/me?account_id=`, and records the answer through the policy in one transaction. A failed
read never touches the link's connection state: the policy sets when it is tried again. The attempt
runner kicks the reader after a connect, so the name shows within a moment; the sweep's leader kicks
it on each pass (connects by webhook or hosted auth, retries), without waiting for it.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cookiesync.background import KickedLoop
from cookiesync.db.schema import links, utcnow
from cookiesync.domain.profile import policy
from cookiesync.domain.profile.policy import Check
from cookiesync.domain.profile.schemas import LinkedInProfile, member_of, profile_of
from cookiesync.domain.reconnect import policy as reconnect_policy
from cookiesync.domain.reconnect.services import Writes, add_event, apply_event, load_link, raise_alert
from cookiesync.unipile.client import UnipileError

log = logging.getLogger("cookiesync.profile")

CLAIM_BATCH = 50


def policy_config(s) -> policy.Config:
    return policy.Config(retry_base=timedelta(seconds=s.profile_retry_s), enforce=s.member_check == "enforce")


def to_policy(row: Any) -> policy.Profile:
    return policy.Profile(plain_id=row.plain_id, check=Check(row.member_check or Check.UNCHECKED.value),
                          member_seen=row.member_seen, failures=row.profile_failures, due_at=row.profile_due_at)


def profile_values(p: policy.Profile) -> dict:
    return dict(member_check=None if p.check is Check.UNCHECKED else p.check.value, member_seen=p.member_seen,
                profile_failures=p.failures, profile_due_at=p.due_at)


class ProfileReader(KickedLoop):
    """Reads due profiles, a few at a time, whenever kicked (after a connect, and by each sweep)."""

    failure_message = "profile reads failed; the sweep tries again"
    logger = log  # the module's logger, for the pass that fails

    def __init__(self, rt) -> None:
        super().__init__()
        self.rt = rt
        self.config = policy_config(rt.settings)
        self.sem = asyncio.Semaphore(max(1, rt.settings.unipile_concurrency // 2))
        self.reads = 0

    async def stop(self) -> None:
        await self.cancel_loop()

    async def run_once(self) -> int:
        return await self.read_due()

    def _lease(self) -> timedelta:
        # two calls one after the other, each bounded by the client's timeout
        return timedelta(seconds=2 * self.rt.settings.unipile_timeout_s + 5)

    async def claim_due(self, limit: int = CLAIM_BATCH) -> list[Any]:
        """Claim up to `limit` links whose read is due: one statement moves their `profile_due_at`
        past the reads (so no other reader takes them) and returns what the reads need."""
        rt = self.rt
        now = utcnow()
        due = (sa.select(links.c.id).where(links.c.profile_due_at <= now, links.c.unipile_account_id.is_not(None))
               .order_by(links.c.profile_due_at).limit(limit))
        if rt.engine.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        claim = (links.update().where(links.c.id.in_(due.scalar_subquery()), links.c.profile_due_at <= now)
                 .values(profile_due_at=now + self._lease())
                 .returning(links.c.id, links.c.unipile_account_id, links.c.profile_due_at))
        async with rt.engine.begin() as conn:
            return list((await conn.execute(claim)).all())

    async def read_due(self) -> int:
        """Read every profile due now; returns how many reads were made."""
        total = 0
        while claimed := await self.claim_due():
            await asyncio.gather(*(self._guarded(r.id, r.unipile_account_id, r.profile_due_at) for r in claimed))
            total += len(claimed)
        return total

    async def _guarded(self, link_id: int, account_id: str, claim: datetime) -> None:
        try:
            async with self.sem:
                await self.read(link_id, account_id, claim)
        except Exception:
            log.exception("profile read of link %s failed unexpectedly; its claim expires and it is read again",
                          link_id)

    async def read(self, link_id: int, account_id: str, claim: datetime) -> policy.Decision | None:
        """One read of a claimed link; `claim` is the `profile_due_at` the claim wrote."""
        rt = self.rt
        profile: LinkedInProfile | None = None
        try:
            account = await rt.unipile.get_account(account_id)
            me = await rt.unipile.get_me(account_id)
        except UnipileError as exc:
            event: policy.Event = policy.ReadFailed(exc.failure)
            error = exc.brief[:200]
        else:
            profile = profile_of(account, me)
            event, error = policy.Read(member_of(me)), None
        self.reads += 1
        rt.metrics.profile_reads.labels("read" if profile is not None else "failed").inc()
        decision, row = await self._record(link_id, account_id, claim, event, profile, error)
        if decision is not None and decision.disable:
            await self._delete_account(row, account_id)
        return decision

    async def _record(self, link_id: int, account_id: str, claim: datetime, event: policy.Event,
                      profile: LinkedInProfile | None, error: str | None) -> tuple[policy.Decision | None, Any]:
        rt = self.rt
        now = utcnow()
        async with rt.engine.begin() as conn:
            row = (await conn.execute(sa.select(links).where(links.c.id == link_id).with_for_update())).first()
            if row is None or row.unipile_account_id != account_id:
                return None, row  # erased, or connected to another account meanwhile (whose read is due)
            decision = policy.decide(to_policy(row), event, now, self.config)
            values = profile_values(decision.profile)
            if row.profile_due_at != claim:
                # a reconnect (same account) marked a new read due while this one was under way: this
                # answer may be older than that reconnect, so that read stays due
                values.pop("profile_due_at")
                values.pop("profile_failures")
            data: dict[str, Any] = {"unipile_account_id": account_id, "note": decision.note,
                                    "failures": decision.profile.failures}
            if profile is not None:
                # a field Unipile did not give keeps what an earlier read found
                values.update(profile_read_at=now, **{k: v for k, v in dict(
                    linkedin_name=profile.name, linkedin_public_id=profile.public_identifier,
                    linkedin_premium=profile.premium).items() if v is not None})
                data.update(name_changed=profile.name is not None and profile.name != row.linkedin_name,
                            public_identifier=profile.public_identifier, premium=profile.premium,
                            member_check=values["member_check"])
            else:
                data.update(error=error)
            if decision.profile.due_at is not None:
                data["next_read_at"] = decision.profile.due_at.isoformat()
            await conn.execute(links.update().where(links.c.id == link_id).values(**values))
            writes = Writes()
            writes.event(user_id=row.user_id, link_id=row.id, kind="profile_read" if profile else "profile_read_failed",
                         data=data, actor=None, at=now)
            if decision.mismatch:
                writes.event(user_id=row.user_id, link_id=row.id, kind="member_mismatch", actor=None, at=now,
                             data={"plain_id": row.plain_id, "member_seen": decision.profile.member_seen,
                                   "unipile_account_id": account_id, "enforced": decision.disable})
            if decision.alert:
                raise_alert(rt, writes, row, decision.alert, now)
            await writes.flush(conn)
            if decision.disable:
                row = await load_link(conn, link_id)
                # the account id goes with the decision: a later connect makes a new account, and the
                # delete below is of this one (named in the history should it not happen)
                await apply_event(rt, conn, row, reconnect_policy.MemberMismatch(), trigger="profile",
                                  event_kind="member_check_enforced", now=now,
                                  data={"unipile_account_id": account_id, "member_seen": decision.profile.member_seen},
                                  extra_values={"unipile_account_id": None})
        return decision, row

    async def _delete_account(self, row: Any, account_id: str) -> None:
        """Enforced mismatch: the Unipile account logged in with the wrong member's cookie goes."""
        rt = self.rt
        try:
            await rt.unipile.delete_account(account_id)
            outcome: dict[str, Any] = {"deleted": True}
        except UnipileError as exc:
            log.error("OPERATOR ALERT link=%s: Unipile account %s of a mismatched member could not be deleted: %s",
                      row.id, account_id, exc)
            rt.metrics.alerts.labels("mismatched account not deleted").inc()
            outcome = {"deleted": False, "error": exc.brief}
        async with rt.engine.begin() as conn:
            await add_event(conn, user_id=row.user_id, link_id=row.id, kind="unipile_account_deleted",
                            data={"unipile_account_id": account_id, "reason": "member mismatch", **outcome})

