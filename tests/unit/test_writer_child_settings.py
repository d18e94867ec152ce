"""The settings the cookie writer's child process is given: only the secrets it needs."""
from __future__ import annotations


def test_the_child_gets_only_the_secrets_it_needs(tmp_path) -> None:
    from cookiesync.domain.sync.writer_process import child_settings
    from cookiesync.settings import ensure_local_secrets
    from tests.support.settings import make_settings

    settings = ensure_local_secrets(make_settings(tmp_path, unipile_api_key="sk-unipile-key", smtp_password="smtp-pw",
                                                  integrator_webhook_secret="whsec_abc",
                                                  metrics_token="metrics-token-0123456789"), say=lambda _m: None)
    given = child_settings(settings)
    assert given.encryption_keys == settings.encryption_keys and given.database == settings.database
    assert given.retry_interval_s == settings.retry_interval_s and given.sync_interval_s == settings.sync_interval_s
    for name in ("unipile_api_key", "webhook_secret", "hosted_auth_secret", "smtp_password",
                 "integrator_webhook_secret", "signing_secret", "metrics_token"):
        assert getattr(settings, name) and not getattr(given, name), name
