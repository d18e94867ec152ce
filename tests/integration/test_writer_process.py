"""The new-cookie bulk write in its child process (`domain.sync.writer_process`): it writes
what the server's own path writes, and losing it (between batches or in the middle of one)
loses no cookie and writes none twice."""
from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import threading
import time

import pytest

from cookiesync.db.schema import utcnow
from cookiesync.domain.sync import services
from cookiesync.domain.sync.writer_process import WriterProcess
from cookiesync.security import decrypt_cookies
from tests.support.cookie_writes import link_row, new_cookie
from tests.support.devices import connected_device
from tests.support.history import history
from tests.support.service import in_service_loop


def ready_child(svc) -> int:
    process = svc.rt.writer_process
    assert process is not None, "the writer process is on by default"
    assert in_service_loop(svc, process.wait_ready()), "the cookie writer process did not start"
    return process.proc.pid


def received(svc, plain_id: str) -> list[dict]:
    return [e for e in history(svc, plain_id) if e["kind"] == "cookie_received"]


def gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # our own child: reap it, or it lingers as a zombie
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def test_the_child_writes_a_batch_as_the_server_would(service, simulator) -> None:
    svc = service
    token = connected_device(svc, simulator, "wp-1", "7401")
    before = link_row(svc, "7401")
    device = in_service_loop(svc, services.device_for_token(svc.rt, token))
    ready_child(svc)
    batches = svc.rt.writer_process.batches
    now = utcnow()
    jobs = [new_cookie(svc, device, "7401", "AQEDAR-child-one", now),
            new_cookie(svc, device, "7402", "AQEDAR-child-new-member", now),  # a first sync: the server's
            new_cookie(svc, device, "7401", "AQEDAR-child-two", now),
            new_cookie(svc, device, "7401", "AQEDAR-child-two", now)]       # the same again: unchanged
    results = in_service_loop(svc, svc.rt.cookie_writes.together(jobs))
    assert svc.rt.writer_process.batches == batches + 1, "the batch went to the child"

    (one, now_1, link_1, changed_1, _i1), (first, _n, _l, changed_new, _i), (two, _n2, link_2, changed_2, _i2), \
        (same, _n3, _l3, changed_3, _i3) = results
    assert link_1 == link_2 and changed_1 and changed_2 and changed_new and not changed_3
    assert not now_1, "a connected link's new cookie needs no attempt"
    assert one.link_status == two.link_status == same.link_status == "connected"
    assert first.link_status == "pending" and one.next_sync_in_s == svc.settings.sync_interval_s

    row = link_row(svc, "7401")
    assert row.cookie_fingerprint == jobs[2].fingerprint and row.date_last_cookie == now
    assert row.updated_at == before.updated_at, "a refresh leaves the link's indexed columns alone"
    assert decrypt_cookies(svc.rt.keyring, row.cookie_key_id, row.cookie_ciphertext, "wp-1", "7401").li_at \
        == "AQEDAR-child-two", "encrypted in the child under the server's key ring, bound to its link"
    rows = received(svc, "7401")
    assert [e["data"]["fingerprint"] for e in rows[-2:]] == [jobs[0].fingerprint[:12], jobs[2].fingerprint[:12]]
    assert rows[-1]["at"] == now and rows[-1]["data"]["device_id"] == device.id
    assert [e["kind"] for e in history(svc, "7402")][:2] == ["link_created", "cookie_received"]


def test_a_lost_child_loses_no_cookie_and_comes_back(service, simulator) -> None:
    svc = service
    token = connected_device(svc, simulator, "wp-2", "7501")
    pid = ready_child(svc)
    svc.rt.writer_process.restart_after_s = 0.0
    os.kill(pid, signal.SIGKILL)
    assert gone(pid)

    r = svc.sync(token, li_at="AQEDAR-after-the-loss", plain_id="7501")
    assert r.status_code == 200 and r.json()["link_status"] == "connected"
    row = link_row(svc, "7501")
    assert decrypt_cookies(svc.rt.keyring, row.cookie_key_id, row.cookie_ciphertext, "wp-2", "7501").li_at \
        == "AQEDAR-after-the-loss", "written by the server itself"
    assert received(svc, "7501")[-1]["data"]["fingerprint"] == row.cookie_fingerprint[:12]
    new_pid = ready_child(svc)
    assert new_pid != pid, "a new child is started for later batches"
    r = svc.sync(token, li_at="AQEDAR-with-the-new-child", plain_id="7501")
    assert r.status_code == 200
    row = link_row(svc, "7501")
    assert decrypt_cookies(svc.rt.keyring, row.cookie_key_id, row.cookie_ciphertext, "wp-2", "7501").li_at \
        == "AQEDAR-with-the-new-child"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the test holds SQLite's write lock
def test_a_child_lost_in_the_middle_of_a_batch_writes_nothing_twice(service, simulator) -> None:
    svc = service
    token = connected_device(svc, simulator, "wp-3", "7601")
    process = svc.rt.writer_process
    pid = ready_child(svc)
    before, batches = len(received(svc, "7601")), process.batches
    lock = sqlite3.connect(svc.settings.database.split("///", 1)[1], timeout=5)
    lock.execute("BEGIN IMMEDIATE")  # the child's batch now waits for the write lock
    answer: dict = {}
    request = threading.Thread(target=lambda: answer.update(r=svc.sync(token, li_at="AQEDAR-mid-batch",
                                                                       plain_id="7601")))
    request.start()
    time.sleep(0.5)
    assert process.batches == batches and request.is_alive(), "the batch is in the child, unanswered"
    os.kill(pid, signal.SIGKILL)
    assert gone(pid)
    lock.rollback()
    lock.close()
    request.join(timeout=30)
    assert answer["r"].status_code == 200, "the server wrote it itself"
    assert len(received(svc, "7601")) == before + 1, "written once"
    row = link_row(svc, "7601")
    assert decrypt_cookies(svc.rt.keyring, row.cookie_key_id, row.cookie_ciphertext, "wp-3", "7601").li_at \
        == "AQEDAR-mid-batch"


def test_the_child_ends_with_its_server(tmp_path) -> None:
    """A server that stops closes the child's stdin; one that is killed closes it too (the
    kernel closes a dead process's pipes), so a child never outlives its server."""
    from cookiesync.db.engine import migrate_async
    from cookiesync.settings import ensure_local_secrets
    from tests.support.settings import make_settings

    async def scenario() -> None:
        settings = ensure_local_secrets(make_settings(tmp_path), say=lambda _m: None)
        await migrate_async(settings.database)
        process = WriterProcess(settings)
        assert await process.wait_ready()
        child = process.proc
        child.stdin.close()  # what the kernel does for a killed server
        assert await asyncio.wait_for(child.wait(), 10) == 0, "it ended, cleanly"
        await process.close()

        again = WriterProcess(settings)
        assert await again.wait_ready() and again.proc.pid != child.pid
        second = again.proc
        await again.close()  # the server's shutdown
        assert again.proc is None and second.returncode == 0

    asyncio.run(scenario())
