"""The settings' one source: every `Settings` field has a description, README.md's configuration table
and deploy/cookiesync.env.example are what `cookiesync settings-docs` makes of them, and a
COOKIESYNC_* variable that names no setting is warned about (local) or refused (production)."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import msgspec
import pytest

from cookiesync import settings_docs
from cookiesync.cli import main
from cookiesync.settings import NOT_SETTINGS, PREFIX, Settings, SettingsError, ensure_local_secrets

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_has_a_description() -> None:
    docs = settings_docs.setting_docs()
    assert [d.name for d in docs] == [f.name for f in msgspec.structs.fields(Settings)]
    assert not [d.variable for d in docs if len(d.description) < 10]
    assert set(settings_docs.SECTIONS) <= {d.name for d in docs} and docs[0].name in settings_docs.SECTIONS


@pytest.mark.parametrize("name", [settings_docs.README, settings_docs.ENV_EXAMPLE])
def test_generated_files_match_the_settings(name: str) -> None:
    expected = settings_docs.generated(ROOT)[name]
    assert (ROOT / name).read_text(encoding="utf-8") == expected, \
        f"{name} is out of date with the Settings fields: run `make docs`"


def test_generated_files_name_every_setting_with_its_default() -> None:
    readme = (ROOT / settings_docs.README).read_text(encoding="utf-8")
    table = readme[readme.index(settings_docs.BEGIN):readme.index(settings_docs.END)]
    env = (ROOT / settings_docs.ENV_EXAMPLE).read_text(encoding="utf-8")
    for d in settings_docs.setting_docs():
        assert f"| `{d.variable}` |" in table
        assert f"\n#{d.variable}={d.default}\n" in env
    # the two that had drifted out of one or both
    assert "COOKIESYNC_LINK_CACHE_TTL_S" in table and "#COOKIESYNC_LINK_CACHE_TTL_S=60.0" in env
    assert "#COOKIESYNC_TOUCH_FLUSH_S=1.0" in env


def test_required_marks_are_what_production_refuses_to_start_without(tmp_path) -> None:
    with pytest.raises(SettingsError) as err:
        ensure_local_secrets(Settings(mode="production", data_dir=str(tmp_path)))
    refused = set(re.findall(PREFIX + r"[A-Z0-9_]+", str(err.value)))
    assert refused == {d.variable for d in settings_docs.setting_docs() if d.required}


def test_check_names_the_stale_file_and_write_mends_it(tmp_path, capsys) -> None:
    (tmp_path / "deploy").mkdir()
    for name in (settings_docs.README, settings_docs.ENV_EXAMPLE):
        (tmp_path / name).write_text((ROOT / name).read_text(encoding="utf-8"), encoding="utf-8")
    main(["settings-docs", "--check", "--root", str(tmp_path)])
    env = tmp_path / settings_docs.ENV_EXAMPLE
    env.write_text(env.read_text().replace("#COOKIESYNC_LINK_CACHE_TTL_S=60.0\n", ""))
    with pytest.raises(SystemExit) as exc:
        main(["settings-docs", "--check", "--root", str(tmp_path)])
    assert settings_docs.ENV_EXAMPLE in str(exc.value) and settings_docs.README not in str(exc.value)
    main(["settings-docs", "--root", str(tmp_path)])
    assert env.read_text() == (ROOT / settings_docs.ENV_EXAMPLE).read_text()
    main(["settings-docs", "--check", "--root", str(tmp_path)])


SECRET_VALUE = "s3cr3t-value-that-must-not-be-logged"


def test_unknown_variable_warns_in_local_mode_naming_the_closest_setting(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="cookiesync")
    s = Settings.from_env({"COOKIESYNC_RETRY_INTERVAL": SECRET_VALUE, "COOKIESYNC_PORT": "9001"})
    assert s.port == 9001 and s.retry_interval_s == 3600.0
    [record] = [r for r in caplog.records if "COOKIESYNC_RETRY_INTERVAL" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "COOKIESYNC_RETRY_INTERVAL_S" in record.getMessage()
    assert SECRET_VALUE not in caplog.text


def test_unknown_variable_is_refused_in_production() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"COOKIESYNC_MODE": "production", "COOKIESYNC_SINGING_SECRET": SECRET_VALUE})
    assert "COOKIESYNC_SINGING_SECRET" in str(err.value) and "COOKIESYNC_SIGNING_SECRET" in str(err.value)
    assert SECRET_VALUE not in str(err.value)


def test_known_variables_pass_silently(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="cookiesync")
    env = {PREFIX + f.name.upper(): "" for f in msgspec.structs.fields(Settings)}
    env |= {"COOKIESYNC_MODE": "production", "COOKIESYNC_RETRY_INTERVAL_S": "60",
            "COOKIESYNC_UNKNOWN_BUT_EMPTY": "", "OTHER_PREFIX_X": "1"} | {name: "1" for name in NOT_SETTINGS}
    s = Settings.from_env(env)
    assert s.retry_interval_s == 60.0 and s.mode == "production"
    assert not caplog.records
