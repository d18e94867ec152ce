"""Readiness that tells the truth, and start-up faults that say why in one line (issue 18, items 8
and 9), over real `cookiesync serve` processes: the data folder removed or the database made
read-only under a running instance turns /readyz 503; a start on a read-only or unreachable
database, on a data folder that lost secrets.json, or in production with a weak secret or a
malformed key ring exits non-zero with one line on stderr, naming what is wrong, no traceback."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cookiesync.security import new_key_entry
from tests.support.components import need
from tests.support.postgres import pg_admin
from tests.support.servers import free_port
from tests.support.wait import wait_for


def _env(data: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COOKIESYNC_")}
    return env | {"COOKIESYNC_DATA_DIR": str(data), "COOKIESYNC_HOST": "127.0.0.1"} | extra


def _cli(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cookiesync.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _readyz(base: str) -> httpx.Response | None:
    try:
        return httpx.get(base + "/readyz", timeout=10)
    except httpx.HTTPError:
        return None


@contextmanager
def serving(data: Path, **extra: str):
    """A `cookiesync serve` process until it answers /readyz 200; its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cookiesync.cli", "serve"],
                            env=_env(data, COOKIESYNC_PORT=str(port), **extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or ((r := _readyz(base)) is not None and r.status_code == 200),
                 timeout=60)
        assert proc.poll() is None, proc.stderr.read()
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def refused(proc: subprocess.CompletedProcess, *names: str) -> str:
    """The one line a refused start printed, checked: exit != 0, no traceback, each name in it."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@contextmanager
def immutable(*paths: Path):
    """`chattr +i`: read-only even for root, whom file modes do not stop. Undone on the way out."""
    done = [p for p in paths if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode == 0]
    try:
        need(len(done) == len(paths), "chattr +i is not possible on this file system")
        yield
    finally:
        for p in done:
            subprocess.run(["chattr", "-i", str(p)], check=True)


def unready(base: str) -> dict | None:
    r = _readyz(base)
    return r.json() if r is not None and r.status_code == 503 else None


def test_readyz_is_503_once_the_data_folder_is_removed(tmp_path) -> None:
    data = tmp_path / "data"
    with serving(data) as base:
        stored = json.loads((data / "secrets.json").read_text())
        shutil.rmtree(data)
        body = wait_for(lambda: unready(base), timeout=10)
        assert body["status"] == "unavailable" and "secrets.json" in body["detail"]
        text = httpx.get(base + "/readyz").text
        assert not [name for name, value in stored.items() if value in text]


def test_readyz_is_503_while_the_database_is_read_only(tmp_path) -> None:
    data = tmp_path / "data"
    with serving(data) as base:
        with immutable(data / "cookiesync.db"):
            body = wait_for(lambda: unready(base), timeout=10)
            assert "does not take writes" in body["detail"] and "cookiesync.db is read-only" in body["detail"]
        # writable again: ready again, as soon as the cached answer is older than a second
        wait_for(lambda: (r := _readyz(base)) is not None and r.status_code == 200, timeout=10)


def test_start_on_a_read_only_database_says_so_in_one_line(tmp_path) -> None:
    data = tmp_path / "data"
    env = _env(data)
    assert _cli(env, "migrate").returncode == 0
    with immutable(data / "cookiesync.db"):
        line = refused(_cli(env, "serve", "--port", str(free_port())), "cookiesync.db")
    assert line.startswith("cannot start:") and "read-only" in line


def test_start_on_an_unreachable_database_says_so_in_one_line(tmp_path) -> None:
    url = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/nothing"
    env = _production(tmp_path, COOKIESYNC_DATABASE_URL=url)
    line = refused(_cli(env, "migrate"), "cannot start", url)  # the deploy entry point migrates first
    assert refused(_cli(env, "serve", "--port", str(free_port())), url) == line
    assert "Connect" in line or "refused" in line.lower()


def test_a_data_folder_that_lost_its_secrets_is_refused_not_made_afresh(tmp_path) -> None:
    data = tmp_path / "data"
    env = _env(data)
    assert _cli(env, "migrate").returncode == 0
    (data / "secrets.json").unlink()
    line = refused(_cli(env, "serve", "--port", str(free_port())), "secrets.json", "cookiesync.db")
    assert "restore" in line
    assert not (data / "secrets.json").exists()  # nothing was made up in its place


def _production(tmp_path: Path, **change: str) -> dict:
    return _env(tmp_path / "data", COOKIESYNC_MODE="production",
                COOKIESYNC_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'prod.db'}",
                COOKIESYNC_UNIPILE_DSN="http://127.0.0.1:9", COOKIESYNC_UNIPILE_API_KEY="k" * 32,
                COOKIESYNC_ENCRYPTION_KEYS=new_key_entry("k1"), COOKIESYNC_SIGNING_SECRET="s" * 43,
                COOKIESYNC_WEBHOOK_SECRET="w" * 32, COOKIESYNC_HOSTED_AUTH_SECRET="h" * 32,
                COOKIESYNC_PUBLIC_URL="https://cookiesync.example") | change


@pytest.mark.parametrize("name,value", [
    ("COOKIESYNC_SIGNING_SECRET", "s"),
    ("COOKIESYNC_SIGNING_SECRET", "weak-signing-secret-42-characters-long-xyz"),  # one short of 43
    ("COOKIESYNC_WEBHOOK_SECRET", "w"),
    ("COOKIESYNC_WEBHOOK_SECRET", "weak-webhook-secret-31-chars-xyz"[:31]),
    ("COOKIESYNC_HOSTED_AUTH_SECRET", "h"),
    ("COOKIESYNC_ENCRYPTION_KEYS", "not-a-key"),
    ("COOKIESYNC_ENCRYPTION_KEYS", "k1:c2hvcnQta2V5LW1hdGVyaWFs"),        # base64, but 18 bytes
    ("COOKIESYNC_ENCRYPTION_KEYS", new_key_entry("k1") + "," + new_key_entry("k1")),  # one id twice
    ("COOKIESYNC_ENCRYPTION_KEYS", new_key_entry("k1").split(":")[1] + ":"),       # the key where the id goes
], ids=["signing-1", "signing-42", "webhook-1", "webhook-31", "hosted-auth-1", "keys-no-id", "keys-18-bytes",
        "keys-same-id", "keys-material-as-id"])
def test_production_refuses_a_weak_secret_or_a_malformed_key_ring(tmp_path, name, value) -> None:
    line = refused(_cli(_production(tmp_path, **{name: value}), "serve", "--port", str(free_port())), name)
    assert line.startswith("configuration error:")
    for part in value.replace(":", ",").split(","):
        assert len(part) < 3 or part not in line  # the value is not echoed
    assert not (tmp_path / "prod.db").exists()  # refused before anything was made


def test_production_takes_secrets_of_the_minimum_lengths(tmp_path) -> None:
    proc = _cli(_production(tmp_path), "migrate")
    assert proc.returncode == 0, proc.stderr


def test_postgres_readyz_is_503_while_the_database_defaults_to_read_only(tmp_path, postgres_url) -> None:
    """A scratch database (dropped after the test) whose new sessions are read-only, as on a standby."""
    name = postgres_url.rsplit("/", 1)[1]
    env = _env(tmp_path / "data", COOKIESYNC_DATABASE_URL=postgres_url)
    with serving(tmp_path / "data", COOKIESYNC_DATABASE_URL=postgres_url) as base:
        pg_admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        try:
            body = wait_for(lambda: unready(base), timeout=10)
            assert "ReadOnlySQLTransaction" in body["detail"], body
            line = refused(_cli(env, "serve", "--port", str(free_port())), "cannot start", name)
            assert "read-only transaction" in line
        finally:
            pg_admin(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        wait_for(lambda: (r := _readyz(base)) is not None and r.status_code == 200, timeout=10)
