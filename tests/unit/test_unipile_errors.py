"""Every error of contract §5 lands in exactly one class."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cookiesync.domain.reconnect.policy import Failure
from cookiesync.unipile.client import MAX_RETRY_AFTER, classify, expires_on, retry_after

T, U, R, C = Failure.TRANSIENT, Failure.NEEDS_USER, Failure.RESTART_FLOW, Failure.CONFIGURATION

TABLE = [
    # 400: our request is wrong
    (400, "errors/invalid_parameters", C), (400, "errors/missing_parameters", C), (400, "errors/invalid_request", C),
    (400, "errors/malformed_request", C), (400, "errors/limit_too_high", C), (400, "errors/invalid_body", C),
    # 401
    (401, "errors/missing_credentials", C), (401, "errors/invalid_credentials", U),
    (401, "errors/expired_credentials", U), (401, "errors/multiple_sessions", U), (401, "errors/wrong_account", U),
    (401, "errors/invalid_proxy_credentials", C), (401, "errors/invalid_checkpoint_solution", U),
    (401, "errors/checkpoint_error", U), (401, "errors/disconnected_account", U),
    (401, "errors/disconnected_feature", U), (401, "errors/expired_link", U), (401, None, U),
    # 403
    (403, "errors/insufficient_permissions", C), (403, "errors/account_restricted", U),
    (403, "errors/account_mismatch", U), (403, "errors/session_mismatch", U),
    (403, "errors/feature_not_subscribed", U), (403, "errors/action_required", U), (403, "errors/unheard_of", U),
    # 404, 422
    (404, "errors/resource_not_found", C), (404, "errors/invalid_resource_identifier", C),
    (422, "errors/cannot_resend_yet", C), (422, "errors/invalid_account", C),
    # transient
    (407, None, T), (408, "errors/request_timeout", T), (409, None, T), (429, "errors/too_many_requests", T),
    (500, "errors/unexpected_error", T), (500, "errors/provider_error", T), (502, None, T),
    (503, "errors/no_client_session", T), (503, "errors/no_channel", T), (503, "errors/no_handler", T),
    (503, "errors/network_down", T), (503, "errors/service_unavailable", T), (504, "errors/request_timeout", T),
    (None, "ReadTimeout", T), (None, "ConnectError", T), (599, None, T),
    # restart the auth flow
    (425, None, R), (425, "errors/too_early", R), (500, "errors/authentication_intent_error", R),
    # 501: not something retrying fixes
    (501, "errors/feature_not_implemented", C),
]


@pytest.mark.parametrize("status,etype,want", TABLE)
def test_classification(status, etype, want) -> None:
    assert classify(status, etype) is want


def test_prefix_is_optional() -> None:
    assert classify(401, "wrong_account") is classify(401, "errors/wrong_account") is U


def test_expires_on_has_milliseconds_and_z() -> None:
    when = datetime(2026, 7, 1, 12, 30, 0, 123456, tzinfo=timezone.utc)
    assert expires_on(when) == "2026-07-01T12:30:00.123Z"


NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("value,want", [
    (None, None), ("", None), ("soon", None), ("-5", None), ("1.5", None),  # not delay-seconds nor a date
    ("0", timedelta(0)), ("30", timedelta(seconds=30)), (" 120 ", timedelta(seconds=120)),
    ("Thu, 01 Jan 2026 12:00:45 GMT", timedelta(seconds=45)),          # IMF-fixdate
    ("Thursday, 01-Jan-26 12:01:00 GMT", timedelta(seconds=60)),       # obsolete RFC 850 form
    ("Thu Jan  1 12:00:10 2026", timedelta(seconds=10)),               # asctime, no zone: GMT
    ("Thu, 01 Jan 2026 11:00:00 GMT", timedelta(0)),                   # in the past: no wait
    ("99999999", MAX_RETRY_AFTER), ("Fri, 01 Jan 2100 00:00:00 GMT", MAX_RETRY_AFTER),  # capped
])
def test_retry_after_in_seconds_or_as_a_date(value, want) -> None:
    assert retry_after(value, NOW) == want
