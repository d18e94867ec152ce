"""The retention rules as a table: settings to cut-offs, event kinds to rules, when a prune is due."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cookiesync.domain.retention.policy import Config, Rule, config_from, cutoffs, due, rule_of_event
from tests.support.settings import make_settings

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
WINDOW = timedelta(minutes=15)


def cfg(**kw) -> Config:
    base = dict(webhook_receipts=timedelta(hours=1), cookie_history=90 * DAY, history=180 * DAY,
                email_bodies=30 * DAY, notifications=30 * DAY, dedupe_window=WINDOW)
    return Config(**(base | kw))


@pytest.mark.parametrize("config, rule, cutoff", [
    (cfg(), Rule.WEBHOOK_RECEIPTS, NOW - timedelta(hours=1)),
    (cfg(), Rule.COOKIE_HISTORY, NOW - 90 * DAY),
    (cfg(), Rule.HISTORY, NOW - 180 * DAY),
    (cfg(), Rule.EMAIL_BODIES, NOW - 30 * DAY),
    (cfg(), Rule.NOTIFICATIONS, NOW - 30 * DAY),
    # receipts are what recognises a repeated webhook: never kept less than the dedupe window
    (cfg(webhook_receipts=timedelta(minutes=1)), Rule.WEBHOOK_RECEIPTS, NOW - WINDOW),
    # 0 keeps forever, for every rule
    (cfg(webhook_receipts=timedelta(0)), Rule.WEBHOOK_RECEIPTS, None),
    (cfg(cookie_history=timedelta(0)), Rule.COOKIE_HISTORY, None),
    (cfg(history=timedelta(0)), Rule.HISTORY, None),
    (cfg(email_bodies=timedelta(0)), Rule.EMAIL_BODIES, None),
    (cfg(notifications=timedelta(0)), Rule.NOTIFICATIONS, None),
    (cfg(history=-DAY), Rule.HISTORY, None),
])
def test_cutoffs(config, rule, cutoff) -> None:
    assert cutoffs(config, NOW)[rule] == cutoff


@pytest.mark.parametrize("kind, rule", [
    ("cookie_received", Rule.COOKIE_HISTORY), ("cookie_repeated", Rule.COOKIE_HISTORY),
    ("attempt", Rule.HISTORY), ("webhook", Rule.HISTORY), ("staff_action", Rule.HISTORY),
    ("email_queued", Rule.HISTORY), ("device_paired", Rule.HISTORY),
])
def test_event_kinds(kind, rule) -> None:
    assert rule_of_event(kind) is rule


@pytest.mark.parametrize("last, interval, expected", [
    (None, timedelta(hours=1), True),
    (NOW - timedelta(hours=1), timedelta(hours=1), True),
    (NOW - timedelta(minutes=59), timedelta(hours=1), False),
    (NOW, timedelta(0), True),
])
def test_due(last, interval, expected) -> None:
    assert due(last, interval, NOW) is expected


def test_defaults_come_from_the_settings(tmp_path) -> None:
    c = config_from(make_settings(tmp_path), WINDOW)
    assert c == cfg(webhook_receipts=timedelta(seconds=3600))
    assert c.webhook_receipts == 4 * WINDOW  # "a few times the dedupe window"
