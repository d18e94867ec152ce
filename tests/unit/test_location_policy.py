"""The location policy, table-driven: every (link location, event) pair; then the sequences the
rule is for (a trip abroad does not move the session, a move does)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cookiesync.domain.location import policy as p
from cookiesync.domain.location.policy import Location, Source

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
CFG = p.Config(moves_after=3, moves_after_time=timedelta(days=1))
OLD = NOW - timedelta(days=2)      # a streak that began long enough ago
RECENT = NOW - timedelta(hours=1)  # one that did not

STATES = {
    "new": Location(),
    "home": Location("FR", Source.GEOIP),
    "home-streak-1": Location("FR", Source.GEOIP, "ES", 1, RECENT),
    "home-streak-ripe": Location("FR", Source.GEOIP, "ES", 2, OLD),   # one more ES moves it
    "home-streak-young": Location("FR", Source.GEOIP, "ES", 5, RECENT),  # enough syncs, too soon
    "integrator": Location("DE", Source.INTEGRATOR),
    "proxy": Location(None, Source.PROXY),
}
EVENTS = {
    "seen-nothing": p.Observed(None),
    "seen-home": p.Observed("FR"),
    "seen-ES": p.Observed("ES"),
    "seen-IT": p.Observed("IT"),
    "set-country": p.Overridden("DE", proxy=False),
    "set-proxy": p.Overridden(None, proxy=True),
    "cleared": p.Overridden(None, proxy=False),
}
GEO = Source.GEOIP
UNCHANGED = "unchanged"
# (state, event) -> (country, source, candidate, candidate_count, moved) or UNCHANGED
TABLE = {
    **{(s, "seen-nothing"): UNCHANGED for s in STATES},  # a private address says nothing
    ("new", "seen-home"): ("FR", GEO, None, 0, True),     # a new link is placed at once
    ("new", "seen-ES"): ("ES", GEO, None, 0, True),
    ("new", "seen-IT"): ("IT", GEO, None, 0, True),
    ("home", "seen-home"): UNCHANGED,
    ("home", "seen-ES"): ("FR", GEO, "ES", 1, False),      # one foreign sync: stays
    ("home", "seen-IT"): ("FR", GEO, "IT", 1, False),
    ("home-streak-1", "seen-home"): ("FR", GEO, None, 0, False),  # back home: the streak ends
    ("home-streak-1", "seen-ES"): ("FR", GEO, "ES", 2, False),
    ("home-streak-1", "seen-IT"): ("FR", GEO, "IT", 1, False),    # another country starts over
    ("home-streak-ripe", "seen-home"): ("FR", GEO, None, 0, False),
    ("home-streak-ripe", "seen-ES"): ("ES", GEO, None, 0, True),  # sustained: moves
    ("home-streak-ripe", "seen-IT"): ("FR", GEO, "IT", 1, False),
    ("home-streak-young", "seen-home"): ("FR", GEO, None, 0, False),
    ("home-streak-young", "seen-ES"): ("FR", GEO, "ES", 6, False),  # many syncs in an hour: stays
    ("home-streak-young", "seen-IT"): ("FR", GEO, "IT", 1, False),
    **{(s, e): UNCHANGED for s in ("integrator", "proxy") for e in ("seen-home", "seen-ES", "seen-IT")},
    **{(s, "set-country"): ("DE", Source.INTEGRATOR, None, 0, True) for s in STATES if s != "integrator"},
    ("integrator", "set-country"): UNCHANGED,
    **{(s, "set-proxy"): (None, Source.PROXY, None, 0, True) for s in STATES if s != "proxy"},
    ("proxy", "set-proxy"): UNCHANGED,
    **{(s, "cleared"): UNCHANGED for s in STATES if s not in ("integrator", "proxy")},
    ("integrator", "cleared"): (None, None, None, 0, True),  # forgotten: the next sync places it
    ("proxy", "cleared"): (None, None, None, 0, True),
}


def test_the_table_covers_every_pair() -> None:
    assert set(TABLE) == {(s, e) for s in STATES for e in EVENTS}


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize("event", list(EVENTS))
def test_every_state_event_pair(state: str, event: str) -> None:
    before = STATES[state]
    d = p.decide(before, EVENTS[event], NOW, CFG)
    want = TABLE[state, event]
    assert d.note
    if want == UNCHANGED:
        assert d.location == before and not d.changed and not d.moved
        return
    country, source, candidate, count, moved = want
    loc = d.location
    assert (loc.country, loc.source, loc.candidate, loc.candidate_count) == (country, source, candidate, count), d.note
    assert d.changed and d.moved is moved
    if candidate is None:
        assert loc.candidate_since is None
    elif count == 1:
        assert loc.candidate_since == NOW
    else:
        assert loc.candidate_since == before.candidate_since  # the streak keeps its start


def run(events: list[tuple[timedelta, str | None]], start: Location = Location("FR", Source.GEOIP)) -> Location:
    loc = start
    for offset, country in events:
        loc = p.decide(loc, p.Observed(country), NOW + offset, CFG).location
    return loc


def test_a_week_abroad_with_syncs_from_home_in_between_does_not_move() -> None:
    trip = [(timedelta(hours=h), "ES" if h % 10 else "FR") for h in range(0, 24 * 7)]
    assert run(trip).country == "FR"


def test_a_sustained_move_does_and_private_addresses_do_not_break_it() -> None:
    moving = [(timedelta(hours=h), "ES" if h % 2 else None) for h in range(0, 40)]
    assert run(moving).country == "ES"
    assert run(moving[:20]).country == "FR"  # 10 syncs but under a day: not yet


@pytest.mark.parametrize("loc, proxy, default, want", [
    (Location("FR", Source.GEOIP), None, "DE", {"country": "FR"}),
    (Location(), None, "DE", {"country": "DE"}),          # nothing known: the operator's default
    (Location(), None, None, {}),                         # nor that: Unipile decides
    (Location("IT", Source.INTEGRATOR), None, None, {"country": "IT"}),
    (Location(None, Source.PROXY), p.Proxy("socks5", "px.example", 1080, "u", "pw"), "DE",
     {"proxy": {"protocol": "socks5", "host": "px.example", "port": 1080, "username": "u", "password": "pw"}}),
    (Location(None, Source.PROXY), p.Proxy(None, "px.example", 8080), None,
     {"proxy": {"host": "px.example", "port": 8080}}),
])
def test_the_connect_body_says_a_country_or_the_proxy_never_an_ip(loc, proxy, default, want) -> None:
    assert p.body(loc, proxy, default) == want
