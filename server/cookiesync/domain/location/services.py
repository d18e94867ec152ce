"""The location policy carried out: observations from sync addresses, the integrator's override,
and the location fields of each connect and reconnect. Every change is written (with its history
row) in the caller's transaction before anything is sent with it."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cookiesync.db.engine import reader

from cookiesync.db.schema import events, links, users
from cookiesync.domain.location import policy
from cookiesync.domain.location.geoip import CountryOf
from cookiesync.domain.location.policy import Location, Source
from cookiesync.security import DecryptError, KeyRing, decrypt_proxy_password

log = logging.getLogger("cookiesync.location")

LOCATION_COLUMNS = (links.c.id, links.c.user_id, links.c.country, links.c.country_source, links.c.country_candidate,
                    links.c.country_candidate_count, links.c.country_candidate_since)
OVERRIDE_COLUMNS = (users.c.country, users.c.proxy_protocol, users.c.proxy_host, users.c.proxy_port,
                    users.c.proxy_username, users.c.proxy_password_ciphertext, users.c.proxy_key_id)

COLUMNS = ("country", "country_source", "country_candidate", "country_candidate_count", "country_candidate_since")
# One UPDATE shape for every location write of a batch, run as an executemany
_LOCATION_BY_KEY = links.update().where(links.c.id == sa.bindparam("link_key")).values(
    **{name: sa.bindparam("b_" + name) for name in COLUMNS})


def location_of(row: Any) -> Location:
    source = row.country_source
    return Location(row.country, Source(source) if source else None, row.country_candidate,
                    row.country_candidate_count or 0, row.country_candidate_since)


def _columns(loc: Location) -> dict:
    return dict(zip(COLUMNS, (loc.country, loc.source.value if loc.source else None, loc.candidate,
                              loc.candidate_count, loc.candidate_since)))


def _params(link_id: int, loc: Location) -> dict:
    return {"link_key": link_id} | {"b_" + name: value for name, value in _columns(loc).items()}


def history_row(user_id: str, link_id: int, before: Location, d: policy.Decision, at: datetime,
                actor: str | None, trigger: str) -> dict:
    return {"at": at, "user_id": user_id, "link_id": link_id, "kind": "location_changed", "actor": actor,
            "data": {"country": d.location.country, "source": d.location.source.value if d.location.source else None,
                     "from_country": before.country, "from_source": before.source.value if before.source else None,
                     "trigger": trigger, "note": d.note}}


class Locator:
    """This instance's address lookups and the policy's settings (one per runtime)."""

    def __init__(self, settings) -> None:
        self.country_of = CountryOf(settings.geoip_mmdb_path)
        self.config = policy.Config(moves_after=settings.location_moves_after,
                                    moves_after_time=timedelta(seconds=settings.location_moves_after_s))
        self.default_country = settings.default_country or None

    def close(self) -> None:
        self.country_of.close()

    async def observe(self, conn: AsyncConnection, syncs: dict[int, tuple[datetime, str | None]]) -> int:
        """Links' latest syncs (link id -> (when, address)) through the policy; returns how many
        links moved. Links whose address says nothing are not read at all."""
        seen = {k: c for k, (_, ip) in syncs.items() if (c := self.country_of(ip)) is not None}
        if not seen:
            return 0
        rows = (await conn.execute(sa.select(*LOCATION_COLUMNS).where(links.c.id.in_(sorted(seen)))
                                   .order_by(links.c.id))).all()
        updates, history = [], []
        for r in rows:
            before = location_of(r)
            at = syncs[r.id][0]
            d = policy.decide(before, policy.Observed(seen[r.id]), at, self.config)
            if d.changed:
                updates.append(_params(r.id, d.location))
            if d.moved:
                history.append(history_row(r.user_id, r.id, before, d, at, None, "sync"))
        if updates:
            await conn.execute(_LOCATION_BY_KEY, updates)
        if history:
            await conn.execute(events.insert(), history)
        return len(history)

    async def for_attempt(self, engine: AsyncEngine, keyring: KeyRing, row: Any, at: datetime) -> dict:
        """The location fields of the connect or reconnect about to be sent for link `row`.

        The user's override is brought onto the link first (a link made after the integrator set
        it); a link that knows no country yet is placed from its last sync address. A change is
        written (with its history row) before the call, so what was sent is what the link shows;
        the read takes no write lock (SQLite), since nearly every attempt changes nothing."""
        async with reader(engine) as conn:
            user = (await conn.execute(sa.select(*OVERRIDE_COLUMNS).where(users.c.user_id == row.user_id))).first()
        before = location_of(row)
        has_proxy = user is not None and user.proxy_host is not None
        if user is not None and (has_proxy or user.country):
            event: policy.Event = policy.Overridden(user.country, proxy=has_proxy)
        elif before.source in (Source.INTEGRATOR, Source.PROXY):
            event = policy.Overridden(None, proxy=False)  # taken back while this link was not written
        else:
            event = policy.Observed(self.country_of(row.client_ip) if before.country is None else None)
        d = policy.decide(before, event, at, self.config)
        if d.changed:
            async with engine.begin() as conn:
                written = (await conn.execute(links.update().where(links.c.id == row.id)
                                              .values(**_columns(d.location)))).rowcount
                if d.moved and written:  # not for a link erased meanwhile
                    await conn.execute(events.insert(), [history_row(row.user_id, row.id, before, d, at, None,
                                                                     "attempt")])
        proxy = None
        if has_proxy:
            password = None
            if user.proxy_password_ciphertext is not None:
                try:
                    password = decrypt_proxy_password(keyring, user.proxy_key_id, user.proxy_password_ciphertext,
                                                      row.user_id)
                except DecryptError as exc:
                    log.error("user of link %s: proxy password cannot be decrypted (%s)", row.id, exc)
            proxy = policy.Proxy(user.proxy_protocol, user.proxy_host, user.proxy_port, user.proxy_username,
                                 password)
        return policy.body(d.location, proxy, self.default_country)


async def override(conn: AsyncConnection, locator: Locator, user_id: str, country: str | None, proxy: bool,
                   at: datetime, actor: str | None) -> int:
    """The integrator's (new) override onto every link of the user; returns how many moved."""
    rows = (await conn.execute(sa.select(*LOCATION_COLUMNS).where(links.c.user_id == user_id)
                               .order_by(links.c.id))).all()
    updates, history = [], []
    for r in rows:
        before = location_of(r)
        d = policy.decide(before, policy.Overridden(country, proxy), at, locator.config)
        if d.changed:
            updates.append(_params(r.id, d.location))
        if d.moved:
            history.append(history_row(user_id, r.id, before, d, at, actor, "integrator"))
    if updates:
        await conn.execute(_LOCATION_BY_KEY, updates)
    if history:
        await conn.execute(events.insert(), history)
    return len(history)
