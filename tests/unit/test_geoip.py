"""The country of an address: the data shipped with iptocc, and an operator's mmdb file asked first
(built here with mmdb-writer, in the GeoIP2/DB-IP country layout)."""
from __future__ import annotations

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from cookiesync.domain.location.geoip import CountryOf, public_address
from cookiesync.settings import Settings, SettingsError


@pytest.fixture
def mmdb(tmp_path):
    writer = MMDBWriter(ip_version=6, database_type="DBIP-Country-Lite", ipv4_compatible=True)
    writer.insert_network(IPSet(["8.8.8.0/24"]), {"country": {"iso_code": "JP", "names": {"en": "Japan"}}})
    writer.insert_network(IPSet(["2a01:e0a::/32"]), {"country": {"iso_code": "BE"}})
    writer.insert_network(IPSet(["9.9.9.0/24"]), {"country": {"iso_code": "EU"}})  # names no country
    path = tmp_path / "country.mmdb"
    writer.to_db_file(str(path))
    return path


def test_the_shipped_data_knows_both_families() -> None:
    country_of = CountryOf()
    assert country_of("8.8.8.8") == "US"
    assert country_of("2a01:e0a::1") == "FR"
    assert country_of("[2a01:e0a::1]") == "FR" and country_of("::ffff:8.8.8.8") == "US"


@pytest.mark.parametrize("address", ["10.0.0.1", "172.16.5.4", "192.168.1.1", "127.0.0.1", "::1", "fe80::1%eth0",
                                     "fd12:3456::1", "100.64.1.1", "169.254.0.1", "192.0.2.1", "2001:db8::1",
                                     "224.0.0.1", "ff02::1", "0.0.0.0", "::", "", None, "example.org", "1.2.3"])
def test_addresses_that_say_nothing(address) -> None:
    assert public_address(address) is None
    assert CountryOf()(address) is None


def test_an_operators_database_is_asked_first_and_falls_back(mmdb) -> None:
    country_of = CountryOf(str(mmdb))
    try:
        assert country_of("8.8.8.8") == "JP"          # the operator's file wins
        assert country_of("2a01:e0a::1") == "BE"
        assert country_of("9.9.9.9") == CountryOf()("9.9.9.9")  # "EU" is no country: the shipped data
        assert country_of("1.1.1.1") == CountryOf()("1.1.1.1")  # not in the file: the shipped data
        assert country_of("10.0.0.1") is None
    finally:
        country_of.close()


def test_the_setting_names_a_file_that_must_exist(tmp_path, mmdb) -> None:
    assert Settings.from_env({"COOKIESYNC_GEOIP_MMDB_PATH": str(mmdb)}).geoip_mmdb_path == str(mmdb)
    with pytest.raises(SettingsError, match="GEOIP_MMDB_PATH"):
        Settings.from_env({"COOKIESYNC_GEOIP_MMDB_PATH": str(tmp_path / "missing.mmdb"),
                           "COOKIESYNC_DATA_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match="DEFAULT_COUNTRY"):
        Settings.from_env({"COOKIESYNC_DEFAULT_COUNTRY": "france"})
