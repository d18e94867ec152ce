"""Revocations and erasures made on any instance, taken out of this instance's device cache."""
from __future__ import annotations

import asyncio
import logging
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from cookiesync.background import BackgroundLoop
from cookiesync.caches import TTLCache
from cookiesync.db.engine import reader
from cookiesync.db.schema import events
from cookiesync.domain.sync.models import Device

log = logging.getLogger("cookiesync.sync")


class RevocationWatcher(BackgroundLoop):
    """Polls the history for revocations and erasures made by any instance, and evicts the
    affected devices from this instance's cache: one cheap indexed query every few seconds
    instead of a database read per sync."""

    def __init__(self, engine: AsyncEngine, devices: TTLCache[str, Device], poll_s: float) -> None:
        self.engine = engine
        self.devices = devices
        self.poll_s = poll_s
        self.last_event_id: int | None = None

    async def stop(self) -> None:
        await self.cancel_loop()

    async def _loop(self) -> None:
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("revocation poll failed; clearing the device cache to stay safe")
                self.devices.clear()
            await asyncio.sleep(self.poll_s)

    async def poll(self) -> None:
        async with reader(self.engine) as conn:
            if self.last_event_id is None:
                self.last_event_id = (await conn.execute(sa.select(sa.func.max(events.c.id)))).scalar() or 0
                return
            rows = (await conn.execute(
                sa.select(events.c.id, events.c.kind, events.c.data)
                .where(events.c.kind.in_(("device_revoked", "user_erased")), events.c.id > self.last_event_id)
                .order_by(events.c.id)
            )).all()
        if not rows:
            return
        cache = self.devices
        if any(r.kind == "user_erased" for r in rows):
            cache.clear()  # erasures name nobody in the history: forget every device
        else:
            revoked = {r.data.get("device_id") for r in rows if r.kind == "device_revoked"}
            cache.drop_where(lambda _key, device: device is not None and device.id in revoked)
        self.last_event_id = rows[-1].id
