"""Where Unipile places a session (issue #15 §1): the connect and reconnect bodies the simulator
received, for IPv6, private and public addresses and the integrator's country or proxy; the proxy
password only as ciphertext at rest; bad override values refused naming the field."""
from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from pathlib import Path

import msgspec
import sqlalchemy as sa

from cookiesync.db.schema import users
from cookiesync.domain.location.geoip import CountryOf
from cookiesync.keys import rotate
from cookiesync.security import KeyRing, decrypt_proxy_password, new_key_entry
from cookiesync.simulator.redact import fingerprint
from tests.support.console import add_staff, link_id, signed_in
from tests.support.history import history
from tests.support.reconnect import fire, point_webhooks
from tests.support.service import USED_SECRETS, settled
from tests.support.simulator import sim_get, sim_script
from tests.support.wait import wait_for

UA = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0"
V6_FR = "2a01:e0a::1"   # a Free SAS (France) block, as the registries list it
V4_PUBLIC = "81.2.69.142"
PROXY_PASSWORD = "px-pass-never-stored-plain-9f3"
country_of = CountryOf()


def auth_bodies(sim) -> list[dict]:
    """The create and reconnect bodies the simulator received, oldest first."""
    calls = sim_get(sim, "/_sim/calls").json()["items"]
    return [c["body"] for c in calls if c["method"] == "POST" and c["path"].startswith("/api/v1/accounts")
            and isinstance(c["body"], dict) and "access_token" in c["body"]]


def sync_from(svc, token: str, address: str | None, li_at: str, plain_id: str):
    USED_SECRETS.add(li_at)
    headers = {"Authorization": f"Bearer {token}"} | ({"X-Forwarded-For": address} if address else {})
    body = {"li_at": li_at, "li_a": None, "user_agent": UA, "plain_id": plain_id, "extension_version": "1.0.0"}
    return svc.http.post("/v1/extension/sync", json=body, headers=headers)


def location_of(svc, user_id: str) -> dict:
    return svc.accounts(user_id)[0]["location"]


def connect_from(svc, sim, user_id: str, plain_id: str, li_at: str, address: str | None, **user) -> tuple:
    """A new user (with the fields `user`), paired, whose first sync comes from `address` (through
    the trusted proxy; None: the peer itself) and connects; returns the token and the PUT's answer."""
    sim_script(sim, li_at, plain_id)
    put = svc.integrator("PUT", f"/v1/users/{user_id}", json={"email": f"{user_id}@example.com"} | user)
    assert put.status_code == 200, put.text
    token = svc.pair(user_id)
    assert sync_from(svc, token, address, li_at, plain_id).status_code == 200
    assert settled(svc, user_id, plain_id) == "connected"
    return token, put


def test_the_test_addresses_are_where_the_registries_say() -> None:
    assert country_of(V6_FR) == "FR"
    assert country_of(V4_PUBLIC) not in (None, "FR")
    for private in ("10.1.2.3", "192.168.0.9", "127.0.0.1", "::1", "fe80::1", "fd00::5", "100.64.0.1",
                    "2001:db8::1", "not an address", None):
        assert country_of(private) is None, private
    assert country_of("::ffff:" + V4_PUBLIC) == country_of(V4_PUBLIC)  # a dual-stack socket's IPv4 client


def test_ipv6_behind_a_trusted_proxy_connects_with_its_country_and_no_ip(service_factory, simulator) -> None:
    svc = service_factory(trusted_proxies="127.0.0.1")
    connect_from(svc, simulator, "loc-1", "8101", "AQEDAR-loc-v6-cookie", V6_FR)
    [body] = auth_bodies(simulator)
    assert body["country"] == "FR" and "ip" not in body and "proxy" not in body
    assert location_of(svc, "loc-1") == {"country": "FR", "source": "geoip"}
    placed = [e for e in history(svc, "8101") if e["kind"] == "location_changed"]
    assert [(e["data"]["country"], e["data"]["source"], e["data"]["from_country"]) for e in placed] == [
        ("FR", "geoip", None)]


def test_ipv6_loopback_listener_connects_with_the_default_country(service_factory, simulator) -> None:
    svc = service_factory(listen_on="::1", default_country="DE")
    assert svc.url.startswith("http://[::1]:")
    connect_from(svc, simulator, "loc-2", "8102", "AQEDAR-loc-v6-loopback", None)
    [body] = auth_bodies(simulator)
    assert body["country"] == "DE" and "ip" not in body  # ::1 says nothing: the operator's default
    assert location_of(svc, "loc-2") == {"country": None, "source": None}

    async def client_ip(conn):
        from cookiesync.db.schema import links
        return (await conn.execute(sa.select(links.c.client_ip))).scalar_one()

    assert svc.db(client_ip) == "::1"


def test_no_location_at_all_sends_neither_field(service_factory, simulator) -> None:
    svc = service_factory()
    connect_from(svc, simulator, "loc-3", "8103", "AQEDAR-loc-nowhere", None)
    [body] = auth_bodies(simulator)
    assert not {"country", "ip", "proxy"} & set(body)


def test_a_private_address_keeps_the_last_known_location_on_reconnect(service_factory, simulator) -> None:
    svc = service_factory(trusted_proxies="127.0.0.1", touch_flush_s=0.1)
    public_country = country_of(V4_PUBLIC)
    token, _ = connect_from(svc, simulator, "loc-4", "8104", "AQEDAR-loc-private", V4_PUBLIC)
    account_id = svc.accounts("loc-4")[0]["unipile_account_id"]
    # the same cookie again, now from behind an unlisted load balancer (a private address)
    assert sync_from(svc, token, "10.20.30.40", "AQEDAR-loc-private", "8104").status_code == 200

    async def client_ip(conn):
        from cookiesync.db.schema import links
        return (await conn.execute(sa.select(links.c.client_ip))).scalar_one()

    wait_for(lambda: svc.db(client_ip) == "10.20.30.40")
    point_webhooks(svc, simulator)
    fire(simulator, account_id, "CREDENTIALS")
    wait_for(lambda: len(auth_bodies(simulator)) == 2, timeout=20)
    first, again = auth_bodies(simulator)
    assert first["country"] == again["country"] == public_country
    assert "ip" not in first and "ip" not in again
    assert again["access_token"] == fingerprint("AQEDAR-loc-private")  # the reconnect, same cookie
    assert settled(svc, "loc-4", "8104") == "connected"
    assert location_of(svc, "loc-4") == {"country": public_country, "source": "geoip"}


def test_the_integrators_country_is_exactly_what_connects(service_factory, simulator) -> None:
    svc = service_factory(trusted_proxies="127.0.0.1")
    _, r = connect_from(svc, simulator, "loc-5", "8105", "AQEDAR-loc-integrator", V6_FR, country="IT")
    assert r.json()["country"] == "IT" and r.json()["proxy"] is None
    [body] = auth_bodies(simulator)
    assert body["country"] == "IT" and "ip" not in body and "proxy" not in body
    assert location_of(svc, "loc-5") == {"country": "IT", "source": "integrator"}
    add_staff(svc, "op@example.com", "operator")
    page = signed_in(svc).get(f"/support/links/{link_id(svc, 'loc-5', '8105')}").text
    assert '<dd id="location"><b>IT</b> <span class="muted small">(from integrator)</span></dd>' in page
    assert "location — (none) → IT (integrator) · trigger attempt" in page  # its history row
    # a PUT that does not name the country keeps it; null takes it back
    assert svc.integrator("PUT", "/v1/users/loc-5", json={"email": "x@example.com"}).json()["country"] == "IT"
    assert svc.integrator("PUT", "/v1/users/loc-5", json={"country": None}).json()["country"] is None
    assert location_of(svc, "loc-5") == {"country": None, "source": None}
    moves = [(e["data"]["country"], e["data"]["source"], e["actor"]) for e in history(svc, "8105")
             if e["kind"] == "location_changed"]
    assert moves == [("IT", "integrator", None), (None, None, "apikey:tests")]


def test_the_integrators_proxy_connects_and_its_password_is_only_ciphertext(service_factory, simulator,
                                                                            caplog) -> None:
    caplog.set_level(logging.DEBUG)
    USED_SECRETS.add(PROXY_PASSWORD)
    svc = service_factory()
    proxy = {"protocol": "socks5", "host": "proxy.example.net", "port": 1080, "username": "acme",
             "password": PROXY_PASSWORD}
    _, put = connect_from(svc, simulator, "loc-6", "8106", "AQEDAR-loc-proxy-cookie", None, country="ES",
                          proxy=proxy)
    responses = [put]
    assert put.json()["proxy"] == {"host": "proxy.example.net", "port": 1080, "protocol": "socks5",
                                   "username": "acme", "password_set": True}
    [body] = auth_bodies(simulator)
    assert body["proxy"] == proxy | {"password": fingerprint(PROXY_PASSWORD)}  # as the simulator keeps it
    assert "country" not in body and "ip" not in body
    responses += [svc.integrator("GET", "/v1/users/loc-6/accounts"), svc.integrator("GET", "/v1/users/loc-6/export")]
    assert responses[1].json()["items"][0]["location"] == {"country": "ES", "source": "proxy"}
    assert responses[2].json()["user"]["proxy"]["password_set"] is True

    # the key rotation re-encrypts it, and it still decrypts to the password
    async def stored(conn):
        return (await conn.execute(sa.select(users.c.proxy_key_id, users.c.proxy_password_ciphertext)
                                   .where(users.c.user_id == "loc-6"))).one()

    kid, blob = svc.db(stored)
    ring = KeyRing(svc.settings.encryption_keys)
    assert decrypt_proxy_password(ring, kid, blob, "loc-6") == PROXY_PASSWORD
    rotated = msgspec.structs.replace(svc.settings, encryption_keys=new_key_entry("k-new") + ","
                                      + svc.settings.encryption_keys)
    assert asyncio.run(rotate(rotated, say=lambda m: None)) >= 2  # the cookie and the proxy password
    kid2, blob2 = svc.db(stored)
    assert kid2 == "k-new" and blob2 != blob
    assert decrypt_proxy_password(KeyRing(rotated.encryption_keys), kid2, blob2, "loc-6") == PROXY_PASSWORD
    svc.server.stop()  # flush and close the database

    url = svc.settings.database
    if url.startswith("sqlite"):
        db_path = Path(url.split("///", 1)[1])
        blobs = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    else:
        dsn = url.replace("+asyncpg", "")
        blobs = subprocess.run(["pg_dump", dsn], capture_output=True, check=True).stdout
        blobs += subprocess.run(["pg_dump", "-Fc", "-Z0", dsn], capture_output=True, check=True).stdout
        assert b"proxy_password_ciphertext" in blobs
    assert b"proxy.example.net" in blobs  # the dump is readable: the check below means something
    assert PROXY_PASSWORD.encode() not in blobs
    assert PROXY_PASSWORD not in caplog.text
    for resp in responses:
        assert PROXY_PASSWORD not in resp.text


BAD = [
    ({"country": "ZZ"}, "country"),
    ({"country": "fr"}, "country"),
    ({"country": "FRA"}, "country"),
    ({"country": 33}, "country"),
    ({"proxy": {"host": "p.example", "port": 0}}, "port"),
    ({"proxy": {"host": "p.example", "port": 70000}}, "port"),
    ({"proxy": {"host": "p.example", "port": 8080, "protocol": "ftp"}}, "protocol"),
    ({"proxy": {"host": "p example", "port": 8080}}, "host"),
    ({"proxy": {"port": 8080}}, "host"),
    ({"proxy": {"host": "p.example", "port": 8080, "secret": "x"}}, "secret"),
    ({"proxy": {"host": "p.example", "port": 8080, "password": ""}}, "password"),
    ({"proxy": "http://p.example:8080"}, "proxy"),
]


def test_bad_location_values_get_a_400_naming_the_field(service) -> None:
    service.new_user("loc-7")

    async def user(conn):
        return (await conn.execute(sa.select(users.c.country, users.c.proxy_host, users.c.updated_at)
                                   .where(users.c.user_id == "loc-7"))).one()

    before = service.db(user)
    for body, field in BAD:
        r = service.integrator("PUT", "/v1/users/loc-7", json=body)
        assert r.status_code == 400 and field in r.text, (body, r.text)
    assert service.db(user) == before


def test_a_sustained_move_seen_in_syncs_moves_the_link_and_its_next_reconnect(service_factory, simulator) -> None:
    svc = service_factory(trusted_proxies="127.0.0.1", touch_flush_s=0.1, location_moves_after=3,
                          location_moves_after_s=0)
    home = country_of(V4_PUBLIC)
    token, _ = connect_from(svc, simulator, "loc-8", "8108", "AQEDAR-loc-moving", V4_PUBLIC)
    account_id = svc.accounts("loc-8")[0]["unipile_account_id"]

    def syncs_from(address: str, n: int) -> None:
        for _ in range(n):
            assert sync_from(svc, token, address, "AQEDAR-loc-moving", "8108").status_code == 200
            time.sleep(0.3)  # one last-seen flush each: each counts as one sync

    syncs_from(V6_FR, 2)
    syncs_from(V4_PUBLIC, 1)  # home again: the streak ends
    syncs_from(V6_FR, 2)
    assert location_of(svc, "loc-8") == {"country": home, "source": "geoip"}
    syncs_from(V6_FR, 1)      # the third in a row
    wait_for(lambda: location_of(svc, "loc-8")["country"] == "FR")
    moves = [(e["data"]["from_country"], e["data"]["country"], e["data"]["trigger"]) for e in history(svc, "8108")
             if e["kind"] == "location_changed"]
    assert moves == [(None, home, "attempt"), (home, "FR", "sync")]
    point_webhooks(svc, simulator)
    fire(simulator, account_id, "CREDENTIALS")
    wait_for(lambda: len(auth_bodies(simulator)) == 2, timeout=20)
    assert [b.get("country") for b in auth_bodies(simulator)] == [home, "FR"]
