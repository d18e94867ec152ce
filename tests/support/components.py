"""Components a test needs from the machine (PostgreSQL, Chromium, Playwright): skip on a
laptop that lacks one, fail under CI, where every one must be there."""
from __future__ import annotations

import os

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip on a laptop that lacks a component; fail under CI, where it must be there."""
    if not condition:
        if CI:
            pytest.fail(f"required under CI=true: {reason}")
        pytest.skip(reason)
