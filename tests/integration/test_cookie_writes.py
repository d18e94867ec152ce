"""New cookies are group-written (`domain.sync.writer`): the ones that only refresh a link in
one bulk transaction on the sync path's own connection, the rest one by one through the
policy. Each batch below is handed to the writer as one, in the running service's loop, with
the bulk write in the server's own process (tests/integration/test_writer_process.py: in its child)."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from cookiesync.db.schema import links, utcnow
from cookiesync.domain.sync import services
from cookiesync.domain.sync.models import Device
from cookiesync.security import decrypt_cookies
from tests.support.cookie_writes import link_row, new_cookie
from tests.support.devices import connected_device
from tests.support.history import history
from tests.support.service import in_service_loop


@pytest.fixture
def service(service_factory):
    return service_factory(writer_process="off")


def test_a_batch_refreshes_in_bulk_and_sends_the_rest_through_the_policy(service, simulator) -> None:
    svc = service
    token = connected_device(svc, simulator, "cw-1", "7201")
    before = link_row(svc, "7201")
    device = in_service_loop(svc, services.device_for_token(svc.rt, token))
    ghost = Device("ghost-device", "no-such-user")  # its first sync cannot be stored
    assert svc.rt.writes.available
    now = utcnow()
    jobs = [new_cookie(svc, device, "7201", "AQEDAR-refresh-one", now),
            new_cookie(svc, ghost, "7299", "AQEDAR-ghost-cookie", now),
            new_cookie(svc, device, "7202", "AQEDAR-second-member", now),  # a first sync: a new link
            new_cookie(svc, device, "7201", "AQEDAR-refresh-two", now),
            new_cookie(svc, device, "7201", "AQEDAR-refresh-two", now)]  # the same again: unchanged
    results = in_service_loop(svc, svc.rt.cookie_writes.together(jobs))

    (one, _d1, link_id, changed_1, _i1), (two, _d2, link_id_2, changed_2, _i2), (same, _d3, _l3, changed_3, _i3) = \
        results[0], results[3], results[4]
    assert link_id == link_id_2 and changed_1 and changed_2 and not changed_3
    assert one.link_status == two.link_status == same.link_status == "connected"
    assert isinstance(results[1], Exception), "a failed cookie gets its own error"
    new_out, _d, _new_link, new_changed, _new_incident = results[2]
    assert new_changed and new_out.link_status == "pending"

    row = link_row(svc, "7201")
    assert row.cookie_fingerprint == jobs[3].fingerprint, "the link's last cookie in the batch wins"
    assert decrypt_cookies(svc.rt.keyring, row.cookie_key_id, row.cookie_ciphertext, "cw-1", "7201").li_at \
        == "AQEDAR-refresh-two"
    assert row.date_last_cookie == now and row.client_ip == "127.0.0.9"
    assert row.updated_at == before.updated_at, "a new cookie is not a change of the link (its state, schedule)"

    async def same_text(conn):  # on SQLite, timestamps compare as text: the bulk write's must be SQLAlchemy's
        return (await conn.execute(sa.select(sa.func.count()).select_from(links).where(
            links.c.date_last_cookie == now, links.c.plain_id == "7201"))).scalar()
    assert svc.db(same_text) == 1

    received = [e for e in history(svc, "7201") if e["kind"] == "cookie_received"]
    assert [e["data"]["fingerprint"] for e in received[-2:]] == [jobs[0].fingerprint[:12], jobs[3].fingerprint[:12]]
    assert received[-1]["at"] == now and received[-1]["data"]["from_state"] == "connected"
    assert received[-1]["data"]["device_id"] == device.id and received[-1]["user_id"] == "cw-1"
    assert [e["kind"] for e in history(svc, "7202")][:2] == ["link_created", "cookie_received"]


def test_a_cookie_for_a_link_in_an_incident_goes_through_the_policy(service, simulator) -> None:
    svc = service
    token = connected_device(svc, simulator, "cw-2", "7301")

    async def disconnect(conn):
        await conn.execute(links.update().where(links.c.plain_id == "7301").values(state="reconnecting",
                                                                                    incident_started_at=utcnow()))
    svc.db(disconnect)
    device = in_service_loop(svc, services.device_for_token(svc.rt, token))
    out, attempt_now, _link, changed, _incident = in_service_loop(svc, svc.rt.cookie_writes.together(
        [new_cookie(svc, device, "7301", "AQEDAR-fresh-for-incident", utcnow())]))[0]
    assert changed and attempt_now, "a fresh cookie for an incident: try now"
    assert out.next_sync_in_s <= 60
