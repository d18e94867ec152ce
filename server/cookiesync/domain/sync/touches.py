"""Last-seen times, written in groups: the only writes of an unchanged sync (with the location
policy's observations of the sync addresses, domain/location)."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from cookiesync.background import KickedLoop
from cookiesync.db.schema import devices, events, links, utcnow
from cookiesync.domain.location.services import Locator

log = logging.getLogger("cookiesync.sync")


class Toucher(KickedLoop):
    """Group-commits "last seen" times: at most one transaction per `flush_s` for
    everything touched meanwhile (a device touched many times is written once).
    Losing a second of these on a crash is harmless."""

    failure_message = "flushing last-seen times failed"
    logger = log

    def __init__(self, engine: AsyncEngine, repeat_window_s: float = 3600.0, flush_s: float = 1.0,
                 locator: Locator | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.locator = locator  # None: no location observations (tests of the touches alone)
        self.flush_s = flush_s
        self.gather_s = flush_s  # the touches of the next flush_s go into one write
        self.repeat_window = timedelta(seconds=repeat_window_s)
        # link_id -> [user_id, repeats, first repeat at]: written as one history row per window
        self.repeats: dict[int, list] = {}
        self.link_touches: dict[int, tuple[datetime, str | None]] = {}
        self.device_touches: dict[str, tuple[datetime, str | None, str]] = {}

    def touch(self, link_id: int, device_id: str, at: datetime, ip: str | None, version: str,
              user_id: str | None = None) -> None:
        self.link_touches[link_id] = (at, ip)
        if user_id is not None:
            entry = self.repeats.get(link_id)
            if entry is None:  # not setdefault: its default list would be built on every sync
                entry = self.repeats[link_id] = [user_id, 0, at]
            entry[1] += 1
        self.device_touches[device_id] = (at, ip, version)
        self.wake.set()

    async def stop(self) -> None:
        await self.cancel_loop()
        await self.flush(all_repeats=True)

    async def run_once(self) -> None:
        await self.flush()

    def forget_user(self, user_id: str) -> None:
        for link_id, entry in list(self.repeats.items()):
            if entry[0] == user_id:
                del self.repeats[link_id]

    def _due_repeats(self, all_repeats: bool) -> list[dict]:
        now = utcnow()
        rows = []
        for link_id, (user_id, count, since) in list(self.repeats.items()):
            if all_repeats or now - since >= self.repeat_window:
                del self.repeats[link_id]
                rows.append({"at": now, "user_id": user_id, "link_id": link_id, "kind": "cookie_repeated",
                             "actor": None, "data": {"count": count, "since": since.isoformat()}})
        return rows

    async def flush(self, all_repeats: bool = False) -> None:
        link_items, self.link_touches = self.link_touches, {}
        device_items, self.device_touches = self.device_touches, {}
        repeat_rows = self._due_repeats(all_repeats)
        if not link_items and not device_items and not repeat_rows:
            return
        async with self.engine.begin() as conn:
            if repeat_rows:
                await conn.execute(events.insert(), repeat_rows)
            if link_items:
                await conn.execute(
                    links.update().where(links.c.id == sa.bindparam("b_id"), sa.or_(
                        links.c.date_last_cookie.is_(None), links.c.date_last_cookie < sa.bindparam("b_at")))
                    .values(date_last_cookie=sa.bindparam("b_at"), client_ip=sa.bindparam("b_ip")),
                    # in id order, as every batch that updates several links locks them (no deadlock)
                    [{"b_id": k, "b_at": at, "b_ip": ip} for k, (at, ip) in sorted(link_items.items())],
                )
                if self.locator is not None:
                    # each link's newest address in this flush counts as one observation: a link
                    # synced many times within flush_s is one sync here
                    await self.locator.observe(conn, link_items)
            if device_items:
                await conn.execute(
                    devices.update().where(devices.c.id == sa.bindparam("b_id"))
                    .values(last_seen_at=sa.bindparam("b_at"), last_ip=sa.bindparam("b_ip"),
                            extension_version=sa.bindparam("b_v")),
                    [{"b_id": k, "b_at": at, "b_ip": ip, "b_v": v}
                     for k, (at, ip, v) in sorted(device_items.items())],
                )
