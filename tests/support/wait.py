"""Polling until a condition holds, for tests that watch real servers and browsers."""
from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
             sleep: Callable[[float], None] = time.sleep, what: Callable[[Any], str] | None = None) -> Any:
    """Return fn()'s first truthy value; raise AssertionError after `timeout` seconds.
    `sleep` lets a browser test keep its event loop turning; `what` words the failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(what(value) if what else
                                 f"condition not met within {timeout}s (last value {value!r})")
        sleep(interval)
