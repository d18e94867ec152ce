"""Two real service processes on one PostgreSQL database, both running the scheduler:
200 links in incidents due at once. Every scheduled attempt is made exactly once,
every give-up email is sent exactly once (see the end), one instance leads the sweep at a time,
and SIGKILLing the leader hands the sweep over without losing anything."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.support.processes import attempt_events, is_ready, link_state, local_secret, run_db
from tests.support.servers import free_port
from tests.support.simulator import fingerprint, sim_get, sim_post, sim_status
from tests.support.wait import wait_for

BIN = Path(sys.executable).parent
N = 200


def diagnose(url: str) -> str:
    import sqlalchemy as sa

    from cookiesync.db.schema import links, outbox

    async def q(conn):
        states = (await conn.execute(sa.select(links.c.state, sa.func.count()).group_by(links.c.state))).all()
        mails = (await conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status))).all()
        errors = (await conn.execute(sa.select(outbox.c.last_error).where(outbox.c.last_error.is_not(None))
                                     .limit(3))).scalars().all()
        return f"links {dict(states)}, outbox {dict(mails)}, errors {errors}"

    return run_db(url, q)


def leader_of(base: str) -> int | None:
    try:
        text = httpx.get(base + "/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    m = re.search(r"^cookiesync_sweep_leader (\S+)$", text, re.M)
    return int(float(m.group(1))) if m else None


def test_two_instances_share_the_work_exactly_once(tmp_path, simulator, smtp, postgres_url) -> None:
    pg_url = postgres_url
    cli = str(BIN / "cookiesync")
    ports = [free_port(), free_port()]
    common = dict(os.environ) | {
        "COOKIESYNC_MODE": "local", "COOKIESYNC_DATA_DIR": str(tmp_path / "data"),
        "COOKIESYNC_DATABASE_URL": pg_url, "COOKIESYNC_UNIPILE_DSN": simulator.url,
        "COOKIESYNC_UNIPILE_API_KEY": simulator.api_key, "COOKIESYNC_RETRY_INTERVAL_S": "3.0",
        "COOKIESYNC_SWEEP_INTERVAL_S": "0.2", "COOKIESYNC_ATTEMPT_LEASE_S": "6", "COOKIESYNC_SWEEP_LEASE_S": "2",
        "COOKIESYNC_SMTP_HOST": "127.0.0.1", "COOKIESYNC_SMTP_PORT": str(smtp.port),
        "COOKIESYNC_UNIPILE_TIMEOUT_S": "5", "COOKIESYNC_UNIPILE_CONCURRENCY": "16",
        "COOKIESYNC_MAX_INCIDENT_AGE_S": "3600", "COOKIESYNC_LOG_LEVEL": "WARNING",
    }
    subprocess.run([cli, "migrate"], env=common, check=True, capture_output=True)
    key = subprocess.run([cli, "apikey", "create", "--name", "multi"], env=common, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    logs = [tmp_path / f"serve-{p}.log" for p in ports]
    procs = [subprocess.Popen([cli, "serve", "--port", str(p)], env=common | {"COOKIESYNC_PORT": str(p)},
                              stdout=subprocess.DEVNULL, stderr=log.open("wb")) for p, log in zip(ports, logs)]

    def not_up(i: int):  # a start that failed says why
        return lambda _v: (f"instance {i} not ready within 30 s (exit code {procs[i].poll()}): "
                           + logs[i].read_text(errors="replace")[-1500:])
    try:
        for i, base in enumerate(bases):
            wait_for(lambda: is_ready(base), timeout=30, what=not_up(i))
        api = [httpx.Client(base_url=b, headers={"Authorization": f"Bearer {key}"}, timeout=20) for b in bases]
        secret = local_secret(tmp_path, "webhook_secret")
        for i in range(N):
            li_at = f"AQEDAR-multi-cookie-{i:04d}"
            sim_post(simulator, "/_sim/cookies", json={"li_at": li_at, "plain_id": str(10_000 + i),
                                                       "outcomes": ["ok", "sticky:invalid_credentials"]})
            c = api[i % 2]
            assert c.put(f"/v1/users/m-{i}", json={"email": f"m-{i}@example.com"}).status_code == 200
            code = c.post(f"/v1/users/m-{i}/pairing-codes").json()["code"]
            tok = httpx.post(f"{bases[i % 2]}/v1/extension/pair",
                             json={"pairing_code": code, "extension_version": "1"}).json()["device_token"]
            r = httpx.post(f"{bases[i % 2]}/v1/extension/sync", headers={"Authorization": f"Bearer {tok}"}, json={
                "li_at": li_at, "li_a": None, "user_agent": "Mozilla/5.0 (X11) Multi/1.0",
                "plain_id": str(10_000 + i), "extension_version": "1"})
            assert r.status_code == 200

        def connected() -> int:
            import sqlalchemy as sa

            from cookiesync.db.schema import links

            async def q(conn):
                return (await conn.execute(sa.select(sa.func.count()).select_from(links)
                                           .where(links.c.state == "connected"))).scalar_one()

            return run_db(pg_url, q)

        wait_for(lambda: connected() == N, timeout=60, interval=0.3)
        accounts = {a["li_at_fingerprint"]: a["id"] for a in sim_get(simulator, "/_sim/accounts").json()["items"]}
        for i in range(N):  # Unipile reports all 200 disconnected at once, to either instance
            account_id = accounts[fingerprint(f"AQEDAR-multi-cookie-{i:04d}")]
            # Unipile's own listing says so too: the leader's reconciliation pass (one at start-up,
            # run again by the survivor when the leader dies mid-pass) would otherwise read OK and
            # reconnect every link, and the give-up emails would never all be sent.
            sim_status(simulator, account_id, "CREDENTIALS")
            body = {"AccountStatus": {"account_id": account_id, "account_type": "LINKEDIN", "message": "CREDENTIALS"}}
            r = httpx.post(f"{bases[i % 2]}/v1/webhooks/unipile/account-status", json=body,
                           headers={"Unipile-Auth": secret})
            assert r.status_code == 200

        # exactly one leader while both run
        samples = []
        for _ in range(10):
            samples.append([leader_of(b) for b in bases])
            time.sleep(0.2)
        assert all(sorted(s) == [0, 1] for s in samples[2:]), samples
        leader = samples[-1].index(1)

        # after the second scheduled slot, kill the leader
        def reconnect_results() -> list[dict]:
            return [e["data"] for e in attempt_events(pg_url) if e["data"]["kind"] == "reconnect"]

        wait_for(lambda: len(reconnect_results()) >= 2 * N, timeout=60, interval=0.5)
        procs[leader].send_signal(signal.SIGKILL)
        mails_at_kill = len(smtp.messages)
        procs[leader].wait(timeout=10)
        survivor = bases[1 - leader]
        wait_for(lambda: leader_of(survivor) == 1, timeout=10, interval=0.2)

        try:
            wait_for(lambda: len(smtp.messages) >= N, timeout=90, interval=0.5)
        except AssertionError:
            raise AssertionError(f"emails received {len(smtp.messages)}; {diagnose(pg_url)}") from None
        time.sleep(3)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()

    results = [e for e in attempt_events(pg_url) if e["data"]["kind"] == "reconnect" and e["data"]["scheduled"]]
    per_link = Counter((e["link_id"], e["data"]["slot"]) for e in results)
    assert len(per_link) == N * 5, f"{len(per_link)} distinct (link, slot) pairs"
    assert max(per_link.values()) == 1, [k for k, v in per_link.items() if v > 1][:5]
    recipients = Counter(m["To"] for m in smtp.messages)
    ids = {to: {m["Message-ID"] for m in smtp.messages if m["To"] == to} for to in recipients}
    assert len(recipients) == N and all(len(v) == 1 for v in ids.values()), "a user got two different emails"
    # SMTP has no two-phase commit: a kill between the server's 250 and the commit that records it sent
    # resends that one email, with its Message-ID. Only possible if the leader was sending at the kill.
    repeated = {to: n for to, n in recipients.items() if n > 1}
    assert not repeated or (mails_at_kill > 0 and list(repeated.values()) == [2]), \
        f"sent twice: {repeated}; {mails_at_kill} received at the kill"
    assert link_state(pg_url) == "needs_user"
