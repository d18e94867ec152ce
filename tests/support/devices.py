"""A paired device whose link the simulator has connected, for tests of what its next syncs do."""
from __future__ import annotations

from tests.support.service import settled
from tests.support.simulator import sim_script

COOKIE = "AQEDAR-fastlane-cookie-1"
UA = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0"


def connected_device(svc, simulator, user_id: str, plain_id: str) -> str:
    sim_script(simulator, COOKIE, plain_id)
    svc.new_user(user_id)
    token = svc.pair(user_id)
    assert svc.sync(token, li_at=COOKIE, plain_id=plain_id).status_code == 200
    assert settled(svc, user_id, plain_id) == "connected"
    return token
