"""A real `cookiesync serve` process killed with SIGKILL in the middle of an incident
and started again: the schedule continues from the database, every scheduled
attempt happens once, and the user gets one email at most."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.processes import attempt_events, is_ready, link_state, local_secret
from tests.support.servers import free_port
from tests.support.simulator import sim_script, sim_status
from tests.support.wait import wait_for

BIN = Path(sys.executable).parent


def test_sigkill_mid_incident_resumes_from_the_database(tmp_path, simulator, smtp, database_url) -> None:
    port = free_port()
    env = dict(os.environ) | {
        "COOKIESYNC_MODE": "local", "COOKIESYNC_DATA_DIR": str(tmp_path / "data"),
        "COOKIESYNC_DATABASE_URL": database_url, "COOKIESYNC_PORT": str(port),
        "COOKIESYNC_UNIPILE_DSN": simulator.url, "COOKIESYNC_UNIPILE_API_KEY": simulator.api_key,
        "COOKIESYNC_RETRY_INTERVAL_S": "1.0", "COOKIESYNC_SWEEP_INTERVAL_S": "0.1",
        "COOKIESYNC_ATTEMPT_LEASE_S": "4", "COOKIESYNC_SWEEP_LEASE_S": "2",
        "COOKIESYNC_SMTP_HOST": "127.0.0.1", "COOKIESYNC_SMTP_PORT": str(smtp.port),
        "COOKIESYNC_UNIPILE_TIMEOUT_S": "3",
    }
    cli = str(BIN / "cookiesync")
    subprocess.run([cli, "migrate"], env=env, check=True, capture_output=True)
    key = subprocess.run([cli, "apikey", "create", "--name", "crash"], env=env, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    base = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen:
        # The server's own output goes to a file that a failed start shows: "not ready within 20 s"
        # alone said nothing of why (seen once with the tests run three at a time on a loaded machine).
        log = open(tmp_path / f"serve-{time.monotonic_ns()}.log", "w+")
        proc = subprocess.Popen([cli, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: proc.poll() is not None or is_ready(base), timeout=45)
        except AssertionError:
            proc.kill()
            raise
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"serve exited {proc.returncode}: {log.read()[-2000:]}")
        return proc

    proc = start()
    try:
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        sim_script(simulator, "AQEDAR-crash-cookie", "9001", ["ok", "sticky:invalid_credentials"])
        assert api.put("/v1/users/c-1", json={"email": "c-1@example.com"}).status_code == 200
        code = api.post("/v1/users/c-1/pairing-codes").json()["code"]
        token = httpx.post(f"{base}/v1/extension/pair", json={"pairing_code": code, "extension_version": "1"}
                           ).json()["device_token"]
        r = httpx.post(f"{base}/v1/extension/sync", headers={"Authorization": f"Bearer {token}"}, json={
            "li_at": "AQEDAR-crash-cookie", "li_a": None, "user_agent": "Mozilla/5.0 (X11) Test/1.0",
            "plain_id": "9001", "extension_version": "1"})
        assert r.status_code == 200
        wait_for(lambda: link_state(database_url) == "connected")
        secret = local_secret(tmp_path, "webhook_secret")
        account_id = api.get("/v1/users/c-1/accounts").json()["items"][0]["unipile_account_id"]
        sim_status(simulator, account_id, "CREDENTIALS")  # as Unipile lists it too (the restart reconciles)
        hook = httpx.post(f"{base}/v1/webhooks/unipile/account-status", headers={"Unipile-Auth": secret},
                          json={"AccountStatus": {"account_id": account_id, "account_type": "LINKEDIN",
                                                  "message": "CREDENTIALS"}})
        assert hook.status_code == 200
        wait_for(lambda: len(attempt_events(database_url)) >= 3, timeout=10)  # connect + 2 reconnects
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        time.sleep(1.5)  # the next slot falls due while nobody runs
        proc = start()
        wait_for(lambda: link_state(database_url) == "needs_user", timeout=20)
        wait_for(lambda: smtp.messages, timeout=15)
        time.sleep(2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    recon = [e["data"] for e in attempt_events(database_url) if e["data"]["kind"] == "reconnect"]
    slots = [d["slot"] for d in recon if d["scheduled"]]
    assert sorted(slots) == [0, 1, 2, 3, 4], recon
    assert len(smtp.messages) == 1

