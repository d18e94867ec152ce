"""The profile policy: what a link's LinkedIn-profile follow-up does next. State and one event in,
one decision out.

After every connect and reconnect the service reads the account from Unipile (`GET /accounts/{id}`
for the name, public identifier and premium products) and asks which member it is logged in as
(`GET /users/me`, whose `object_urn` is `urn:li:member:<number>`). That number should be the link's
`plain_id`, the member the extension reported with the cookie (contract §4: likely, unconfirmed); if
it is not, the cookie went with the wrong member.

What it will not do: no clock (``now`` is passed in), no database, no network. It never delays or
fails the connect: the read is a follow-up recorded with it (``profile_due_at``). It does not decide
the link's connection state; with ``enforce`` it asks for the link to be disabled, and the reconnect
policy (its ``MemberMismatch`` event) makes that change. It does not retry forever: after
``MAX_FAILURES`` failed reads in a row the next connect asks again. A read whose answer names no
member (no usable ``object_urn``) is ``unverified``, never a mismatch.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from cookiesync.domain.reconnect.policy import Failure

MAX_FAILURES = 8
RETRY_FACTOR = 4
RETRY_MAX = timedelta(hours=6)


class Check(StrEnum):
    """Whether the account's member is the link's, as the last read found."""

    UNCHECKED = "unchecked"    # no read has answered yet (stored as NULL)
    MATCH = "match"
    MISMATCH = "mismatch"
    UNVERIFIED = "unverified"  # the answer named no member we could read


@dataclass(frozen=True)
class Config:
    retry_base: timedelta = timedelta(seconds=30)
    enforce: bool = False


@dataclass(frozen=True)
class Profile:
    """What the policy needs to know about a link's profile follow-up."""

    plain_id: str                      # the member the extension reported
    check: Check = Check.UNCHECKED
    member_seen: str | None = None     # the member /users/me named when it was another
    failures: int = 0                  # failed reads in a row
    due_at: datetime | None = None     # a read is due at


# --- events ---------------------------------------------------------------
@dataclass(frozen=True)
class Connected:
    """The link was connected or reconnected (an attempt, a webhook, hosted auth)."""


@dataclass(frozen=True)
class Read:
    member: str | None  # the number in /users/me's object_urn; None when it had none we could read


@dataclass(frozen=True)
class ReadFailed:
    failure: Failure


Event = Connected | Read | ReadFailed


@dataclass(frozen=True)
class Decision:
    profile: Profile
    alert: str | None = None       # operator alert (log at error level, metric, history)
    mismatch: bool = False         # record a `member_mismatch` history row
    disable: bool = False          # enforce: disable the link and delete its Unipile account
    note: str = ""


def decide(profile: Profile, event: Event, now: datetime, config: Config = Config()) -> Decision:
    match event:
        case Connected():
            return Decision(replace(profile, due_at=now, failures=0), note="connected: reading the LinkedIn profile")
        case Read(member=None):
            return _read(profile, Check.UNVERIFIED, None, "profile read; Unipile named no member to compare")
        case Read(member=member) if member == profile.plain_id:
            again = " again" if profile.check is Check.MISMATCH else ""
            return _read(profile, Check.MATCH, None, f"profile read; the member is the link's{again}")
        case Read(member=member):
            return _on_mismatch(profile, member, config)
        case ReadFailed(failure=failure):
            return _on_failure(profile, failure, now, config)
    raise TypeError(f"unknown event {event!r}")


def _read(profile: Profile, check: Check, seen: str | None, note: str) -> Decision:
    return Decision(replace(profile, check=check, member_seen=seen, failures=0, due_at=None), note=note)


def _on_mismatch(profile: Profile, member: str, config: Config) -> Decision:
    decision = _read(profile, Check.MISMATCH, member,
                     f"the cookie is LinkedIn member {member}'s, not {profile.plain_id}'s")
    new_member = profile.check is not Check.MISMATCH or profile.member_seen != member
    return replace(decision, mismatch=True, disable=config.enforce,
                   alert="cookie of another LinkedIn member than the link's" if new_member or config.enforce else None,
                   note=decision.note + ("; enforced: disabling the link" if config.enforce else "; recorded only"))


def _on_failure(profile: Profile, failure: Failure, now: datetime, config: Config) -> Decision:
    failures = profile.failures + 1
    if failure is Failure.NEEDS_USER:
        # the account is disconnected: its reconnect will ask again
        return Decision(replace(profile, failures=failures, due_at=None),
                        note="profile read refused: the account is disconnected; the next connect reads it")
    if failures >= MAX_FAILURES:
        return Decision(replace(profile, failures=failures, due_at=None),
                        note=f"profile read failed {failures} times in a row ({failure}): left to the next connect")
    wait = min(config.retry_base * RETRY_FACTOR ** (failures - 1), RETRY_MAX)
    return Decision(replace(profile, failures=failures, due_at=now + wait),
                    note=f"profile read failed ({failure}): trying again in {wait.total_seconds():g} s")
