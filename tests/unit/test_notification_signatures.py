"""Integrator notifications are signed as Standard Webhooks specifies: its own example."""
from __future__ import annotations

from cookiesync.domain.notifications.services import sign


def test_signature_matches_the_spec_example() -> None:
    # Example from the Standard Webhooks spec (whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign([secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
