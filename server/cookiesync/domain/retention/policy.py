"""How long each kind of row is kept: the retention rules, from the settings to cut-off times.

Pure on purpose (no clock, no database): `cutoffs` takes `now`, and tests/unit/test_retention_policy.py
holds every rule as a table. What the cut-offs do to which rows is db/prune.py's; which rows a rule
never touches (an open incident's history, each link's newest cookie) is said there, in the SQL.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

DAY = timedelta(days=1)


class Rule(StrEnum):
    """One retention rule: the rows it covers, and the setting that says how long they are kept."""

    WEBHOOK_RECEIPTS = "webhook_receipts"    # webhook_receipts rows, by received_at
    COOKIE_HISTORY = "cookie_history"        # cookie_received and cookie_repeated history rows, by at
    HISTORY = "history"                      # every other history row, closed incidents, attempt counters
    EMAIL_BODIES = "email_bodies"            # sent outbox rows' bodies, by sent_at (the row stays)
    NOTIFICATIONS = "notifications"          # delivered notifications, by delivered_at


# The history rows the cookie rule covers; every other kind is the history rule's.
COOKIE_RECEIVED = "cookie_received"
COOKIE_KINDS = frozenset({COOKIE_RECEIVED, "cookie_repeated"})
PRUNE = "prune"  # the prune's row in `leases`


def rule_of_event(kind: str) -> Rule:
    return Rule.COOKIE_HISTORY if kind in COOKIE_KINDS else Rule.HISTORY


@dataclass(frozen=True)
class Config:
    """How long each rule keeps its rows; zero keeps them forever."""

    webhook_receipts: timedelta
    cookie_history: timedelta
    history: timedelta
    email_bodies: timedelta
    notifications: timedelta
    # Receipts younger than this are what recognises a repeated webhook: never pruned sooner.
    dedupe_window: timedelta = timedelta(minutes=15)


def config_from(settings, dedupe_window: timedelta) -> Config:
    s = settings
    return Config(webhook_receipts=timedelta(seconds=s.retention_webhook_receipts_s),
                  cookie_history=s.retention_cookie_days * DAY, history=s.retention_history_days * DAY,
                  email_bodies=s.retention_email_body_days * DAY, notifications=s.retention_notifications_days * DAY,
                  dedupe_window=dedupe_window)


def cutoffs(cfg: Config, now: datetime) -> dict[Rule, datetime | None]:
    """Each rule's cut-off: rows older than it go; None keeps the rule's rows forever.
    A negative or zero retention keeps forever (0 is the documented "forever"); the webhook
    receipts are kept at least the dedupe window, so a pruned receipt never lets a repeat in."""
    keep = {Rule.WEBHOOK_RECEIPTS: cfg.webhook_receipts, Rule.COOKIE_HISTORY: cfg.cookie_history,
            Rule.HISTORY: cfg.history, Rule.EMAIL_BODIES: cfg.email_bodies, Rule.NOTIFICATIONS: cfg.notifications}
    out: dict[Rule, datetime | None] = {}
    for rule, age in keep.items():
        if age <= timedelta(0):
            out[rule] = None
            continue
        if rule is Rule.WEBHOOK_RECEIPTS:
            age = max(age, cfg.dedupe_window)
        out[rule] = now - age
    return out


def due(last_run_at: datetime | None, interval: timedelta, now: datetime) -> bool:
    """Whether a prune is due: never ran, or the last one finished at least `interval` ago."""
    return last_run_at is None or now - last_run_at >= interval
