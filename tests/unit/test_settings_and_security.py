"""Settings, local secrets, production refusals, client IP, log redaction, signed links
(key rotation in a running service: tests/integration/test_key_rotation_and_request_id.py)."""
from __future__ import annotations

import logging
import os
import stat

import pytest

from cookiesync.http import client_ip
from cookiesync.logs import configure_logging, redact
from cookiesync.security import Signer
from cookiesync.settings import Settings, SettingsError, ensure_local_secrets


def test_settings_from_env_and_clear_errors() -> None:
    s = Settings.from_env({"COOKIESYNC_PORT": "9001", "COOKIESYNC_RETRY_INTERVAL_S": "0.5", "OTHER": "x"})
    assert s.port == 9001 and s.retry_interval_s == 0.5 and s.mode == "local"
    with pytest.raises(SettingsError, match="COOKIESYNC_PORT"):
        Settings.from_env({"COOKIESYNC_PORT": "eighty"})
    with pytest.raises(SettingsError, match="COOKIESYNC_MODE"):
        Settings.from_env({"COOKIESYNC_MODE": "staging"})


def test_local_mode_creates_owner_only_secrets_once(tmp_path) -> None:
    said = []
    s = ensure_local_secrets(Settings(data_dir=str(tmp_path)), say=said.append)
    path = tmp_path / "secrets.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and said
    again = ensure_local_secrets(Settings(data_dir=str(tmp_path)), say=said.append)
    assert (again.encryption_keys, again.signing_secret, again.webhook_secret) == \
        (s.encryption_keys, s.signing_secret, s.webhook_secret)
    assert len(said) == 1


def test_production_refuses_to_start_without_its_secrets(tmp_path) -> None:
    with pytest.raises(SettingsError) as err:
        ensure_local_secrets(Settings(mode="production", data_dir=str(tmp_path)))
    for name in ("ENCRYPTION_KEYS", "SIGNING_SECRET", "WEBHOOK_SECRET", "UNIPILE_DSN", "UNIPILE_API_KEY",
                 "DATABASE_URL"):
        assert f"COOKIESYNC_{name}" in str(err.value)
    assert not (tmp_path / "secrets.json").exists()


@pytest.mark.parametrize("peer,xff,trusted,want", [
    ("10.0.0.5", "203.0.113.9", "", "10.0.0.5"),                       # no trusted proxies: ignore XFF
    ("10.0.0.5", "203.0.113.9", "10.0.0.0/8", "203.0.113.9"),          # trusted proxy
    ("198.51.100.1", "203.0.113.9", "10.0.0.0/8", "198.51.100.1"),     # untrusted peer spoofing XFF
    ("10.0.0.5", "1.2.3.4, 203.0.113.9, 10.0.0.7", "10.0.0.0/8", "203.0.113.9"),  # rightmost untrusted hop
])
def test_client_ip_honours_only_trusted_proxies(peer, xff, trusted, want) -> None:
    nets = Settings(trusted_proxies=trusted).trusted_proxy_networks

    class PeerRequest:
        client = type("Peer", (), {"host": peer})()
        headers = {"x-forwarded-for": xff}

    assert client_ip(PeerRequest(), nets) == want  # type: ignore[arg-type]


def test_redaction_strips_cookies_and_tokens_even_when_passed_by_mistake(caplog) -> None:
    configure_logging("DEBUG")
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("cookiesync.test")
    cookie = "AQEDARxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxyz"
    log.info("payload %s", {"li_at": cookie, "li_a": "short-li-a-value"})
    log.warning("Authorization: Bearer dev_abcdefghijklmnopqrstuvwxyz012345")
    log.error("key=%s token=%s", "csk_abcdefghijklmnopqrstuvwxyz", "abc123secret")
    try:
        raise ValueError(f"bad cookie {cookie}")
    except ValueError:
        log.exception("failed")
    text = caplog.text
    for secret in (cookie, "short-li-a-value", "dev_abcdefghijklmnopqrstuvwxyz012345",
                   "csk_abcdefghijklmnopqrstuvwxyz", "abc123secret"):
        assert secret not in text
    assert "[redacted" in text
    assert redact("li_at=AQEDAR123456789012345678901234") == "li_at=[redacted]"


def test_signed_links_expire_and_reject_tampering() -> None:
    signer = Signer("s3cret", "reconnect-link")
    token = signer.sign({"l": 7}, ttl_s=60)
    assert signer.verify(token)["l"] == 7
    assert signer.verify(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]) is None
    assert Signer("other", "reconnect-link").verify(token) is None
    assert Signer("s3cret", "other-purpose").verify(token) is None
    assert signer.verify(signer.sign({"l": 7}, ttl_s=-1)) is None


def test_json_log_lines_carry_the_request_id_and_no_secrets() -> None:
    import json

    from cookiesync.logs import JsonFormatter, request_id

    configure_logging("INFO")
    token = request_id.set("req-123")
    try:
        record = logging.getLogRecordFactory()("cookiesync.t", logging.INFO, __file__, 1,
                                               "sync from %s li_at=%s", ("dev", "AQEDARsecretsecretsecretsecret"), None)
    finally:
        request_id.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-123" and line["level"] == "INFO"
    assert "AQEDARsecret" not in line["msg"] and "[redacted" in line["msg"]


def test_an_attempt_lease_must_outlast_its_unipile_call() -> None:
    with pytest.raises(SettingsError, match="COOKIESYNC_ATTEMPT_LEASE_S .*COOKIESYNC_UNIPILE_TIMEOUT_S"):
        Settings.from_env({"COOKIESYNC_ATTEMPT_LEASE_S": "20", "COOKIESYNC_UNIPILE_TIMEOUT_S": "20"})
    assert Settings.from_env({"COOKIESYNC_ATTEMPT_LEASE_S": "21", "COOKIESYNC_UNIPILE_TIMEOUT_S": "20"}) \
        .attempt_lease_s == 21
    assert Settings().attempt_lease_s >= Settings().unipile_timeout_s + 1
