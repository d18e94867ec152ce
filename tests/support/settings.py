"""Settings for a service under test: local mode, data in the test's tmp_path, short intervals."""
from __future__ import annotations

from pathlib import Path

import msgspec

from cookiesync.settings import Settings


def make_settings(tmp_path: Path, **overrides) -> Settings:
    # reconciliation off: its GET /accounts pages would land among the Unipile calls other tests
    # count (tests/integration/test_reconcile.py turns it on)
    base = dict(mode="local", data_dir=str(tmp_path / "data"), unipile_timeout_s=3.0, sweep_interval_s=0.2,
                retry_interval_s=3600.0, log_level="INFO", reconcile_interval_s=0.0)
    return msgspec.convert(base | overrides, Settings)
