"""The reconciliation policy: a link and what Unipile's account list says of its account, one
decision out.

Unipile drops a webhook after 5 failed deliveries (contract §6) and fires on transitions only, so
a lost `CREDENTIALS` would leave a link `connected` for ever. The reconciliation pass
(domain/reconcile/services.py) lists every account (`GET /accounts`, contract §4) and asks this
module, per linked account, whether the listing shows a change we never heard of. A drift is
answered with the very webhook event (`reconnect.policy.WebhookStatus`) the lost webhook would have
carried, so the reconnect policy stays the one place that decides what a status does.

A listing is a level, not an edge: the same status is seen again at every pass. So only a status
that disagrees with the link's state is a drift (a `CREDENTIALS` on a link already reconnecting is
what we are handling; sending it again every pass would only add history rows).

An account the listing no longer shows is not gone yet: the pass asks for it by id
(`Confirm`), and only a 404 there (`NotFound`) is treated as `DELETED`. `valve` keeps a complete
listing that misses a large share of our accounts (a wrong API key, a workspace migrated, a bug on
Unipile's side) from disabling anyone: operators are alerted instead.

What it will not do: call Unipile, read the clock or the database, decide what a status does to a
link (the reconnect policy does), or act on a listing that did not reach its last page (the pass
never asks it about absent accounts then); nor disable a link on anything but a 404.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cookiesync.domain.reconnect.policy import Link, State, WebhookStatus

# `sources[].status` values of an account (contract §4). An account has one source per product
# (LinkedIn: messaging); the worst of them is the account's status (`account_status`).
LISTED_STATUSES = ("CREDENTIALS", "ERROR", "STOPPED", "PERMISSIONS", "CONNECTING", "OK")


class Action(StrEnum):
    NOTHING = "nothing"
    EVENT = "event"        # apply `event` exactly as the webhook path does
    CONFIRM = "confirm"    # absent from a complete listing: GET /accounts/{id} before anything


@dataclass(frozen=True)
class Listed:
    """The account's status in the listing, or in the answer of GET /accounts/{id}."""
    status: str


@dataclass(frozen=True)
class Absent:
    """Not in a listing that completed to its last page."""


@dataclass(frozen=True)
class NotFound:
    """GET /accounts/{id} answered 404 after the account was absent from a complete listing."""


@dataclass(frozen=True)
class ConfirmFailed:
    """GET /accounts/{id} answered something else than the account or a 404 (an outage, a 429)."""


Observation = Listed | Absent | NotFound | ConfirmFailed


@dataclass(frozen=True)
class Decision:
    action: Action
    event: WebhookStatus | None = None
    note: str = ""


@dataclass(frozen=True)
class Config:
    # A complete listing missing more than this share of our linked accounts is not believed.
    missing_max_share: float = 0.10
    # ... unless it misses this few: one account deleted out of five is a deletion, not an outage.
    missing_floor: int = 10


def _nothing(note: str) -> Decision:
    return Decision(Action.NOTHING, note=note)


def _drift(message: str, note: str) -> Decision:
    return Decision(Action.EVENT, WebhookStatus(message), note)


def account_status(sources: list[str]) -> str | None:
    """The account's status from its sources' statuses: the first of `LISTED_STATUSES` order any
    source has (a session lost on one source is lost); an unknown one only if nothing else is said;
    None without sources."""
    for status in LISTED_STATUSES:
        if status in sources:
            return status
    return sources[0] if sources else None


def _watching(link: Link) -> bool:
    """A connected link with a CONNECTING watch (reconnect.policy's module docstring)."""
    return link.state is State.CONNECTED and link.incident_started_at is None and link.next_attempt_at is not None


def decide(link: Link, seen: Observation) -> Decision:
    if link.state is State.DISABLED:
        return _nothing("disabled: whatever Unipile says changes nothing")
    if not link.has_account:
        return _nothing("no Unipile account on record: nothing to compare")
    match seen:
        case Listed(status):
            return _on_listed(link, status)
        case Absent():
            return Decision(Action.CONFIRM, note="absent from a complete listing: asking Unipile for it by id")
        case NotFound():
            # the same DELETED the webhook would have carried: the link ends disabled
            return _drift("DELETED", "absent from a complete listing and 404 by id: deleted in Unipile")
        case ConfirmFailed():
            return _nothing("absent from the listing but not confirmed gone: left as it is")
    raise TypeError(f"unknown observation {seen!r}")


def _on_listed(link: Link, status: str) -> Decision:
    """One row per listed status; the reason is beside each."""
    connected = link.state is State.CONNECTED
    match status:
        case "OK":
            # The account works. A connected link agrees, unless a CONNECTING watch is on (the OK
            # that ends it was lost); any other state missed the OK / RECONNECTED that closed it
            # (a hosted reconnect whose notification was lost, an approved checkpoint).
            if connected and not _watching(link):
                return _nothing("OK: agrees")
            return _drift("OK", f"Unipile lists the account OK while the link is {link.state}")
        case "CREDENTIALS":
            # Session lost. Connected (or a first connect holding an account): the lost webhook's
            # reconnect; any other state is already reconnecting or waiting for the user.
            if connected or link.state is State.PENDING:
                return _drift("CREDENTIALS", "Unipile lists the account CREDENTIALS: a lost webhook")
            return _nothing(f"CREDENTIALS while {link.state}: already being handled")
        case "ERROR" | "STOPPED":
            # Stuck or paused on Unipile's side: a connected link gets the restart the webhook
            # asks for, at each pass while it lasts; a link in an incident is being reconnected.
            if connected:
                return _drift(status, f"Unipile lists the account {status}: asking for a restart")
            return _nothing(f"{status} while {link.state}: already being handled")
        case "CONNECTING":
            # Temporary: a connected link starts its watch (once; a watch that stands is kept).
            if connected and not _watching(link):
                return _drift("CONNECTING", "Unipile lists the account CONNECTING: watching it")
            return _nothing(f"CONNECTING while {link.state}: already watched or handled")
        case "PERMISSIONS":
            # The webhook's operator alert, at each pass while it lasts (the state stays either way).
            if connected:
                return _drift("PERMISSIONS", "Unipile lists the account PERMISSIONS: operators alerted")
            return _nothing(f"PERMISSIONS while {link.state}: left as it is")
    # A status v1 does not list: nothing is known of what it means, so nothing is done.
    return _nothing(f"{status}: not a status the v1 listing documents")


def valve(missing: int, linked: int, config: Config = Config()) -> bool:
    """True when a complete listing misses too many of our `linked` accounts to be believed:
    nobody is confirmed or disabled, operators are alerted."""
    return missing > config.missing_floor and missing > config.missing_max_share * linked

