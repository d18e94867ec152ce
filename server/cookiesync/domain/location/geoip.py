"""The country of a client address, offline, for IPv4 and IPv6.

Two sources, both read from this machine (no lookup leaves it):
- `iptocc` (MIT OR Apache-2.0): the Regional Internet Registries' delegation files, compiled into
  the wheel and released with fresh data often, so `uv lock --upgrade-package iptocc` updates them.
  RIR data names the country a block is registered to, which agrees with commercial databases for
  about 95% of IPv4 addresses (the package's own figure);
- an operator's MaxMind-format country database (`COOKIESYNC_GEOIP_MMDB_PATH`: DB-IP's CC-BY
  "IP to Country Lite", MaxMind GeoLite2/GeoIP2 Country), read with `maxminddb`, which is asked
  first when set; an address it does not know falls back to `iptocc`.

Only public unicast addresses are looked up: private, loopback, link-local, shared (CGNAT),
documentation, multicast and other reserved ranges say nothing about where the user is.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Callable

import iptocc

from cookiesync.domain.location.countries import is_alpha2

log = logging.getLogger("cookiesync.location")


def public_address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, if it is one the Internet routes to a user; None otherwise."""
    if not text:
        return None
    try:
        addr = ipaddress.ip_address(text.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:a.b.c.d from a dual-stack socket is the IPv4 client
    # is_global is False for RFC 1918, loopback, link-local, 100.64/10, documentation, 6to4-reserved…
    if not addr.is_global or addr.is_multicast:
        return None
    return addr


def _bare(address: str) -> str:
    """The address without [brackets] or a %zone; an IPv4-mapped IPv6 one as its IPv4 address."""
    text = address.strip().strip("[]").split("%", 1)[0]
    if text[:7].lower() == "::ffff:" and "." in text:
        return text[7:]
    return text


def _alpha2(value: object) -> str | None:
    """An assigned country code or None: the registries' "EU" and "AP" blocks name no country."""
    if isinstance(value, str) and is_alpha2(value.upper()):
        return value.upper()
    return None


class CountryOf:
    """`country_of(address) -> "FR" | None`. Built once per process (the mmdb file is opened once)."""

    def __init__(self, mmdb_path: str = "") -> None:
        self.reader = None
        if mmdb_path:
            import maxminddb  # only when an operator's database is configured

            # MODE_MMAP shares the file's pages between processes and reads only what lookups touch
            self.reader = maxminddb.open_database(mmdb_path, maxminddb.MODE_MMAP)
            meta = self.reader.metadata()
            log.info("country database %s: %s, built %s", mmdb_path, meta.database_type, meta.build_epoch)
        self.fallback: Callable[[str], str | None] = iptocc.country_code

    def __call__(self, address: str | None) -> str | None:
        if self.reader is None:
            # The registries' delegations hold none of the special-purpose ranges (RFC 6890: private,
            # loopback, link-local, CGNAT, documentation, multicast…), so the lookup alone says nothing
            # for them (tests/unit/test_geoip.py holds it to that), in ~0.3 µs; parsing the address in
            # Python first (`public_address`) costs a hundred times that, on every synced link.
            return _alpha2(self.fallback(_bare(address))) if address else None
        addr = public_address(address)
        if addr is None:
            return None
        record = self.reader.get(addr)
        if isinstance(record, dict):
            # GeoIP2/GeoLite2 and DB-IP lite: {"country": {"iso_code": "FR", ...}}
            country = record.get("country")
            found = _alpha2(country.get("iso_code") if isinstance(country, dict) else record.get("country_code"))
            if found:
                return found
        return _alpha2(self.fallback(str(addr)))

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
