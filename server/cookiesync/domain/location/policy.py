"""The location policy: where Unipile places a link's LinkedIn session. State and one event in,
one decision out.

Unipile runs each session through a proxy in the country the connect call names (contract §1:
`country`, or `ip` for an IPv4 address it locates itself, or the integrator's own `proxy`). LinkedIn
ends sessions that jump between countries, so the link keeps one country and moves it only on a
sustained change: the sync addresses of `moves_after` consecutive observations that all name the
same new country, the first of them at least `moves_after_time` before the last. Observations of
the link's own country break a streak; observations that say nothing (a private, loopback or
unknown address) neither count nor break it.

The integrator's word wins: a user's country (`integrator`) or proxy (`proxy`) replaces what the
addresses said, and while it holds no observation changes the link. When the integrator takes it
back, the link forgets its country and the next observation places it at once, as for a new link.

What it will not do: no clock (``at`` is passed in), no database, no network, no address lookups
(the caller turns an address into a country, `geoip.CountryOf`); it does not decide what a connect
call sends when the link knows no country (`body`, with the operator's default, does).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class Source(StrEnum):
    GEOIP = "geoip"            # the sync addresses, through the policy below
    INTEGRATOR = "integrator"  # PUT /v1/users/{id} {"country": …}
    PROXY = "proxy"            # PUT /v1/users/{id} {"proxy": …}: the integrator's own proxy


@dataclass(frozen=True)
class Config:
    moves_after: int = 5                          # consecutive observations of the new country…
    moves_after_time: timedelta = timedelta(days=2)  # …the first at least this long before the last


@dataclass(frozen=True)
class Location:
    country: str | None = None
    source: Source | None = None
    candidate: str | None = None      # the other country the latest observations named
    candidate_count: int = 0
    candidate_since: datetime | None = None


@dataclass(frozen=True)
class Observed:
    """A sync came from an address in `country` (None: the address says nothing)."""

    country: str | None


@dataclass(frozen=True)
class Overridden:
    """The integrator set the user's country and/or proxy (both None: took them back)."""

    country: str | None
    proxy: bool


Event = Observed | Overridden


@dataclass(frozen=True)
class Decision:
    location: Location
    changed: bool   # a field to write
    moved: bool     # country or source changed: a history row
    note: str


def decide(loc: Location, event: Event, at: datetime, cfg: Config) -> Decision:
    match event:
        case Overridden(country=country, proxy=proxy):
            return _overridden(loc, country, proxy)
        case Observed(country=None):
            return _same(loc, "the address says nothing about location")
        case Observed() if loc.source in (Source.INTEGRATOR, Source.PROXY):
            return _same(loc, f"the integrator's {loc.source.value} wins over the address")
        case Observed(country=country) if loc.country is None:
            return _moved(loc, Location(country, Source.GEOIP), f"placed in {country}")
        case Observed(country=country) if country == loc.country:
            if loc.candidate is None:
                return _same(loc, "same country")
            return _changed(loc, Location(loc.country, loc.source),
                            f"back in {country}: the streak from {loc.candidate} ends")
        case Observed(country=country):
            return _streak(loc, country, at, cfg)
    raise AssertionError(event)


def _streak(loc: Location, country: str, at: datetime, cfg: Config) -> Decision:
    if loc.candidate == country and loc.candidate_since is not None:
        count, since = loc.candidate_count + 1, loc.candidate_since
    else:
        count, since = 1, at
    if count >= cfg.moves_after and at - since >= cfg.moves_after_time:
        return _moved(loc, Location(country, Source.GEOIP),
                      f"moved from {loc.country} to {country} after {count} syncs since {since.isoformat()}")
    return _changed(loc, replace(loc, candidate=country, candidate_count=count, candidate_since=since),
                    f"seen in {country} {count} time(s) since {since.isoformat()}; stays in {loc.country}")


def _overridden(loc: Location, country: str | None, proxy: bool) -> Decision:
    if proxy:
        want = Location(country, Source.PROXY)
    elif country is not None:
        want = Location(country, Source.INTEGRATOR)
    elif loc.source in (Source.INTEGRATOR, Source.PROXY):
        return _moved(loc, Location(), "the integrator took its location back: the next sync places it")
    else:
        return _same(loc, "no override, none held")
    if want == loc:
        return _same(loc, "override already held")
    return _moved(loc, want, f"integrator set {want.source.value} {want.country or ''}".strip())


def _same(loc: Location, note: str) -> Decision:
    return Decision(loc, changed=False, moved=False, note=note)


def _changed(loc: Location, new: Location, note: str) -> Decision:
    return Decision(new, changed=new != loc, moved=False, note=note)


def _moved(loc: Location, new: Location, note: str) -> Decision:
    return Decision(new, changed=new != loc, moved=(new.country, new.source) != (loc.country, loc.source),
                    note=note)


@dataclass(frozen=True)
class Proxy:
    """The integrator's proxy, as Unipile takes it (contract §1); `password` decrypted only to send."""

    protocol: str | None
    host: str
    port: int
    username: str | None = None
    password: str | None = None


def body(loc: Location, proxy: Proxy | None, default_country: str | None) -> dict:
    """The location fields of a connect or reconnect body.

    A country, never `ip`: Unipile would locate an IPv4 `ip` itself, for that one call, which
    bypasses the stability rule above (one sync from a hotel would move the session), can not
    take IPv6, and hands the user's exact address to a third party when a country is all it needs.
    """
    if loc.source is Source.PROXY and proxy is not None:
        out: dict = {"host": proxy.host, "port": proxy.port}
        for name in ("protocol", "username", "password"):
            if (value := getattr(proxy, name)) is not None:
                out[name] = value
        return {"proxy": out}
    country = loc.country or default_country
    return {"country": country} if country else {}
