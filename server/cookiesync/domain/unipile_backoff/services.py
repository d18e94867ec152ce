"""The instance's gate in front of Unipile: the backoff policy with a clock and a lock-free
state (one event loop), logged and counted when a pause starts."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable

from cookiesync.db.schema import utcnow
from cookiesync.domain.unipile_backoff import policy

log = logging.getLogger("cookiesync.unipile")


class Backoff:
    def __init__(self, config: policy.Config = policy.Config(), clock: Callable[[], datetime] = utcnow,
                 on_pause: Callable[[timedelta], None] | None = None) -> None:
        self.config = config
        self.clock = clock
        self.on_pause = on_pause
        self.gate = policy.Gate()
        self.pauses = 0

    def paused_for(self) -> timedelta:
        return policy.paused_for(self.gate, self.clock())

    def saw(self, event: policy.Event) -> None:
        now = self.clock()
        decision = policy.decide(self.gate, event, now, self.config)
        self.gate = decision.gate
        if decision.pause_started:
            self.pauses += 1
            pause = policy.paused_for(self.gate, now)
            log.warning("Unipile rate limits this instance (%s); calls to Unipile held back for %.1f s",
                        decision.note, pause.total_seconds())
            if self.on_pause:
                self.on_pause(pause)
