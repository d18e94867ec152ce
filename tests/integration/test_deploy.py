"""The deploy entry point, run as a container would run it but outside Docker: production mode
against PostgreSQL migrates, serves, answers /readyz, stops cleanly; without its secrets it refuses."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from cookiesync.security import new_key_entry
from tests.support.processes import is_ready
from tests.support.servers import free_port
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COOKIESYNC_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env | extra


def test_entrypoint_migrates_serves_and_stops(tmp_path, simulator, postgres_url) -> None:
    port = free_port()
    env = _env(COOKIESYNC_DATABASE_URL=postgres_url, COOKIESYNC_PORT=str(port),
               COOKIESYNC_DATA_DIR=str(tmp_path), COOKIESYNC_UNIPILE_DSN=simulator.url,
               COOKIESYNC_UNIPILE_API_KEY=simulator.api_key, COOKIESYNC_ENCRYPTION_KEYS=new_key_entry("k1"),
               COOKIESYNC_SIGNING_SECRET="s" * 43, COOKIESYNC_WEBHOOK_SECRET="w" * 32,
               COOKIESYNC_HOSTED_AUTH_SECRET="h" * 32, COOKIESYNC_PUBLIC_URL=f"http://127.0.0.1:{port}",
               COOKIESYNC_METRICS_TOKEN="m" * 32)
    proc = subprocess.Popen([str(ENTRYPOINT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        # migrate, then serve: two interpreter starts and every migration, slow on a loaded machine
        wait_for(lambda: is_ready(base) or proc.poll() is not None, timeout=90)
        assert proc.poll() is None, proc.communicate(timeout=5)[0].decode()[-4000:]
        assert httpx.get(base + "/readyz").json()["status"] == "ok"
        # production serves /metrics only to a scraper holding COOKIESYNC_METRICS_TOKEN
        assert httpx.get(base + "/metrics").status_code == 401
        metrics = httpx.get(base + "/metrics", headers={"Authorization": "Bearer " + "m" * 32})
        assert "cookiesync_links" in metrics.text
        # production mode: no demo user, no simulator mounted
        assert httpx.get(base + "/unipile-sim/api/v1/accounts").status_code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so supervisors see how it ended
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Traceback" not in out
    assert "demo" not in out and not (tmp_path / "secrets.json").exists()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines and all('"level"' in line for line in lines)  # production logs are JSON lines


def test_entrypoint_refuses_production_without_secrets(tmp_path) -> None:
    proc = subprocess.run([str(ENTRYPOINT)], env=_env(COOKIESYNC_DATA_DIR=str(tmp_path)), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert "COOKIESYNC_ENCRYPTION_KEYS" in proc.stderr and "Traceback" not in proc.stderr
