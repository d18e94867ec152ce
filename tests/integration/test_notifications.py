"""Integrator notifications: Standard Webhooks signatures, retries with backoff, secret rotation,
against a real receiver on loopback that fails its first deliveries."""
from __future__ import annotations

import threading

import msgspec
from litestar import Litestar, Request, Response, post

from cookiesync.domain.notifications.services import verify
from tests.support.reconnect import connect_one, fast, fire
from tests.support.servers import ServerThread
from tests.support.service import status_of
from tests.support.wait import wait_for

OLD_SECRET = "whsec_" + "b2xkLXNlY3JldC1vbGQtc2VjcmV0LWtleQ=="
NEW_SECRET = "whsec_" + "bmV3LXNlY3JldC1uZXctc2VjcmV0LWtleQ=="


class Receiver:
    """Verifies each delivery with the NEW secret only; answers 503 to the first `fail_first`."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.seen: list[dict] = []
        self.lock = threading.Lock()

        @post("/hooks", status_code=200)
        async def hooks(request: Request) -> Response:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            good = verify([NEW_SECRET], headers, body)
            with self.lock:
                self.seen.append({"headers": headers, "body": msgspec.json.decode(body), "valid": good})
                n = len(self.seen)
            if not good:
                return Response({"error": "bad signature"}, status_code=401)
            return Response({"ok": n > self.fail_first}, status_code=200 if n > self.fail_first else 503)

        self.app = Litestar([hooks])


def test_connected_and_needs_user_are_pushed_signed_with_retries(service_factory, simulator) -> None:
    receiver = Receiver(fail_first=2)
    with ServerThread(receiver.app) as hook:
        svc = service_factory(**fast(integrator_webhook_url=f"{hook.url}/hooks",
                                     integrator_webhook_secret=f"{NEW_SECRET} {OLD_SECRET}",
                                     notify_retry_base_s=0.2))
        _, account_id = connect_one(svc, simulator, "n-1", "9901", "AQEDAR-notify-cookie",
                                    ["ok", "sticky:invalid_credentials"])
        fire(simulator, account_id)
        wait_for(lambda: status_of(svc, "n-1", "9901") == "needs_user", timeout=15)

        def delivered_types():
            ok = [s for s in receiver.seen if s["valid"]]
            return [s["body"]["type"] for s in ok][receiver.fail_first:]

        wait_for(lambda: "link.needs_user" in delivered_types(), timeout=20)
    assert all(s["valid"] for s in receiver.seen)  # every delivery verifies with the new secret
    sigs = receiver.seen[0]["headers"]["webhook-signature"].split(" ")
    assert len(sigs) == 2 and all(s.startswith("v1,") for s in sigs)  # one per configured secret
    first = receiver.seen[0]
    assert first["body"]["type"] == "link.connected"
    assert first["body"]["data"]["unipile_account_id"] == account_id and first["body"]["data"]["plain_id"] == "9901"
    # the failed deliveries were retried with the same message id
    ids = [s["headers"]["webhook-id"] for s in receiver.seen]
    assert ids[0] == ids[1] == ids[2]
    assert "AQEDAR-notify-cookie" not in str([s["body"] for s in receiver.seen])
    bodies = {s["headers"]["webhook-id"]: s["body"]["type"] for s in receiver.seen}
    assert sorted(bodies.values()) == ["link.connected", "link.needs_user"]
