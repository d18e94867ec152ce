"""The simulator's control API is locked and tells no secrets (issue 18, item 2), over real sockets:
every route but the Unipile API and the hosted-auth page needs the control token; no `/_sim` answer
carries a cookie or a secret, even after a real sync, webhook and hosted reconnect through the
service in local mode; the simulator keeps no cookie at all; its logs are bounded; its key and
token are made per data folder."""
from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import os
import re
from collections import deque
from datetime import timedelta

import httpx
import msgspec
import pytest

from cookiesync.runtime import SIM_CONTROL_TOKEN, SIM_MOUNT, sim_control_token
from cookiesync.settings import Settings, ensure_local_secrets
from cookiesync.simulator.app import SimulatorConfig, create_simulator_app
from cookiesync.simulator.control import CONTROL
from cookiesync.simulator.redact import fingerprint
from cookiesync.simulator.transport import API, HOSTED
from tests.support.servers import ServerThread
from tests.support.service import USED_SECRETS, in_service_loop, settled, start_service
from tests.support.settings import make_settings

KEY, TOKEN = "control-test-api-key", "control-test-token-0123456789"
UA = "Mozilla/5.0 (X11; Linux x86_64) ControlTest/1.0"


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def _locked_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route the app has outside the Unipile API and the hosted page."""
    found = []
    for route in app.routes:
        if route.path.startswith(API + "/") or route.path.startswith(HOSTED):
            continue
        for method in sorted(getattr(route, "methods", ()) or ()):
            found.append((method, _concrete(route.path)))
    return found


@pytest.fixture
def sim():
    app = create_simulator_app(SimulatorConfig(api_key=KEY, control_token=TOKEN))
    with ServerThread(app) as srv:
        srv.app = app
        yield srv


def _raw(srv, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request with the path exactly as given (httpx would resolve `..` and `//`)."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    try:
        conn.request(method, path, body=b"{}" if method == "POST" else None,
                     headers={"content-type": "application/json"} | (headers or {}))
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_every_route_outside_the_api_answers_401_without_the_token(sim) -> None:
    routes = _locked_routes(sim.app)
    control = {(m, _concrete(r.path)) for r in CONTROL.routes for m in r.methods}
    assert control and control <= set(routes), "the control router's routes are all behind the token"
    client = httpx.Client(base_url=sim.url, timeout=10)
    for method, path in routes + [("GET", "/_sim"), ("GET", "/_sim/not-a-route"), ("GET", "/anything")]:
        for headers in ({}, {"X-Sim-Token": "wrong"}, {"X-Sim-Token": ""}, {"X-Sim-Token": TOKEN[:-1]},
                        {"X-API-KEY": KEY}, {"Authorization": f"Bearer {TOKEN}"}):
            r = client.request(method, path, headers=headers, json={} if method == "POST" else None)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.json()["type"] == "errors/missing_credentials" and "X-Sim-Token" in r.json()["detail"]
            assert r.headers["content-type"] == "application/json; charset=utf-8"
            assert r.headers["x-unipile-simulator"] == "1"
    # paths the router reads as a control route, written another way
    for path in ("//_sim/calls", "/_sim//calls", "/_sim/calls/", "/%5Fsim/calls", "/api/v1/../../_sim/calls",
                 "/hosted/../_sim/calls", "/api/v1/../_sim/calls"):
        assert _raw(sim, "GET", path)[0] == 401, path
        assert _raw(sim, "GET", path, {"X-API-KEY": KEY})[0] == 401, path
    # the Unipile API written another way still needs its API key (the router read
    # /api//v1/accounts as /api/v1/accounts, and the key check did not)
    for path in ("/api//v1/accounts", "/api/v1//accounts"):
        assert _raw(sim, "GET", path)[0] == 401, path
        assert _raw(sim, "GET", path, {"X-API-KEY": KEY})[0] == 200, path
    assert _raw(sim, "GET", "/api/./v1/accounts")[0] == 401


def test_with_the_token_every_control_route_answers(sim) -> None:
    control = httpx.Client(base_url=sim.url, headers={"X-Sim-Token": TOKEN}, timeout=10)
    api = httpx.Client(base_url=sim.url + API, headers={"X-API-KEY": KEY}, timeout=10)
    assert control.post("/_sim/cookies", json={"li_at": "AQEDAR-ctl-cp", "plain_id": "4100",
                                               "outcomes": ["checkpoint:IN_APP_VALIDATION"]}).status_code == 200
    pending = api.post("/accounts", json={"provider": "LINKEDIN", "access_token": "AQEDAR-ctl-cp"}).json()
    account_id = pending["account_id"]
    # one good request per control route; a route added to the router must be added here
    requests = {
        ("POST", "/_sim/reset"): None, ("GET", "/_sim/config"): None, ("GET", "/_sim/stats"): None,
        ("POST", "/_sim/config"): {"latency_ms": 0}, ("POST", "/_sim/cookies"): {"li_at": "AQEDAR-ctl-2"},
        ("POST", "/_sim/outcomes"): {"outcomes": ["ok"]}, ("GET", "/_sim/calls"): None,
        ("GET", "/_sim/accounts"): None, ("POST", "/_sim/accounts/x/approve"): None,
        ("POST", "/_sim/accounts/x/status"): {"message": "CREDENTIALS"}, ("GET", "/_sim/hosted-links"): None,
        ("GET", "/_sim/webhook-deliveries"): None, ("POST", "/_sim/members/x"): {"name": "Ctl Member"},
        ("POST", "/_sim/accounts/x/me"): {"plain_id": "4101"}, ("POST", "/_sim/reads"): {"outcomes": ["ok"]},
        ("POST", "/_sim/listing"): {"outcomes": ["ok"]},
        ("POST", "/_sim/accounts/bulk"): {"id_prefix": "ctl-bulk-", "count": 3},
    }
    routes = {(m, _concrete(r.path)) for r in CONTROL.routes for m in r.methods if m != "OPTIONS"}
    assert set(requests) == routes
    for (method, path), body in requests.items():
        if path == "/_sim/reset":
            continue  # last, so the account is still there for the others
        r = control.request(method, path.replace("/x/", f"/{account_id}/"), json=body)
        assert r.status_code in (200, 201), (method, path, r.text)  # approve answers as the API does
    assert control.post("/_sim/reset").status_code == 200
    assert control.get("/schema/openapi.json").status_code == 200  # the token opens the rest too


def _all_strings(value, seen: set[int] | None = None):
    """Every str reachable from `value` (dicts, lists, deques, sets, dataclasses, msgspec Structs)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode(errors="replace")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _all_strings(k, seen)
            yield from _all_strings(v, seen)
    elif isinstance(value, (list, tuple, set, frozenset, deque)):
        for v in value:
            yield from _all_strings(v, seen)
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _all_strings(getattr(value, f.name), seen)
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from _all_strings(getattr(value, name), seen)


def test_the_simulator_keeps_no_cookie_value(sim) -> None:
    li_at, li_a, li_at_2 = "AQEDAR-kept-nowhere-cookie-1", "AQJ-kept-nowhere-premium", "AQEDAR-kept-nowhere-2"
    proxy_password = "proxy-password-kept-nowhere"
    control = httpx.Client(base_url=sim.url, headers={"X-Sim-Token": TOKEN}, timeout=10)
    api = httpx.Client(base_url=sim.url + API, headers={"X-API-KEY": KEY}, timeout=10)
    assert control.post("/_sim/cookies", json={"li_at": li_at, "plain_id": "4200"}).status_code == 200
    created = api.post("/accounts", json={"provider": "LINKEDIN", "access_token": li_at, "premium_token": li_a,
                                          "user_agent": UA, "proxy": {"host": "proxy.example", "port": 8080,
                                                                      "password": proxy_password}})
    account_id = created.json()["account_id"]
    assert api.post(f"/accounts/{account_id}", json={"provider": "LINKEDIN", "access_token": li_at_2}).status_code \
        == 201
    api.post("/accounts", content=f'{{"access_token": "{li_at}", not json'.encode())
    kept = [s for s in _all_strings(vars(sim.app.state.sim))
            if any(secret in s for secret in (li_at, li_a, li_at_2, proxy_password))]
    assert kept == []
    accounts = control.get("/_sim/accounts").json()["items"]
    assert [(a["li_at_fingerprint"], a["li_a_fingerprint"]) for a in accounts] == [(fingerprint(li_at_2), None)]
    assert fingerprint(li_at) == "sha256:" + hashlib.sha256(li_at.encode()).hexdigest()[:16]


def test_no_cookie_or_secret_in_any_control_answer_after_a_real_sync(tmp_path) -> None:
    """`make run`'s set-up: local mode, the simulator mounted in the service. A sync connects the
    account, the service registers its webhook (with its secret header) and mints a hosted
    reconnect link (its secret in notify_url), Unipile fires a status webhook and the user finishes
    the hosted page; then every control route is read with the token."""
    from cookiesync.domain.webhooks.registration import register_webhook

    li_at, li_a = "AQEDAR-control-leak-probe-li-at-0001", "AQJ-control-leak-probe-li-a-0001"
    svc = start_service(make_settings(tmp_path, unipile_dsn="", unipile_api_key=""))
    try:
        s = svc.settings
        sim_url = svc.url + SIM_MOUNT
        token = sim_control_token(s)
        control = httpx.Client(base_url=sim_url, headers={"X-Sim-Token": token}, timeout=10)
        svc.new_user("leak-1")
        assert svc.sync(svc.pair("leak-1"), li_at=li_at, li_a=li_a, user_agent=UA,
                        plain_id="4300").status_code == 200
        assert settled(svc, "leak-1", "4300") == "connected"
        account_id = svc.accounts("leak-1")[0]["unipile_account_id"]

        answers = [control.post("/_sim/cookies", json={"li_at": li_at, "plain_id": "4300"})]
        in_service_loop(svc, register_webhook(s, svc.rt.unipile))
        hosted = in_service_loop(svc, svc.rt.unipile.hosted_reconnect_link(
            account_id, name="leak-1", notify_url=f"{svc.url}/v1/webhooks/unipile/hosted-auth?secret="
                                                  f"{s.hosted_auth_secret}",
            success_url=svc.url + "/ok", failure_url=svc.url + "/ko", ttl=timedelta(minutes=10)))
        answers.append(control.post(f"/_sim/accounts/{account_id}/status", json={"message": "CREDENTIALS"}))
        assert {d["status"] for d in answers[-1].json()["deliveries"]} == {200}  # the secret header worked
        assert httpx.post(hosted, follow_redirects=False).status_code == 303
        answers.append(control.post("/_sim/config", json={}))
        answers.append(control.post("/_sim/outcomes", json={"outcomes": []}))
        answers += [control.get(path) for method, path in _locked_routes(create_simulator_app())
                    if method == "GET" and "/x" not in path]
        assert all(r.status_code == 200 for r in answers), [(r.url, r.status_code) for r in answers]

        stored = json.loads((tmp_path / "data" / "secrets.json").read_text())
        secrets = {"li_at": li_at, "li_a": li_a, "api key": s.unipile_api_key, "webhook secret": s.webhook_secret,
                   "hosted-auth secret": s.hosted_auth_secret, "control token": token,
                   **{name: v for name, v in stored.items() if len(v) >= 8}}
        text = "\n".join(r.text for r in answers)
        assert not [name for name, value in secrets.items() if value in text]
        # … while the fingerprints show what reached the simulator
        accounts = control.get("/_sim/accounts").json()["items"]
        assert [(a["li_at_fingerprint"], a["li_a_fingerprint"], a["user_agent"]) for a in accounts] == \
            [(fingerprint(li_at), fingerprint(li_a), UA)]
        config = control.get("/_sim/config").json()
        assert (config["api_key"], config["webhook_secret"], config["control_token"]) == \
            (fingerprint(s.unipile_api_key), fingerprint(s.webhook_secret), fingerprint(token))
        notify = control.get("/_sim/hosted-links").json()["items"][0]["body"]["notify_url"]
        assert notify.endswith("?secret=" + fingerprint(s.hosted_auth_secret))
        # and the token is what the secrets file says
        assert stored[SIM_CONTROL_TOKEN] == token
        assert httpx.get(sim_url + "/_sim/calls").status_code == 401
    finally:
        svc.http.close()
        svc.server.stop()


def test_call_and_delivery_logs_stay_bounded() -> None:
    small = create_simulator_app(SimulatorConfig(api_key=KEY, control_token=TOKEN, calls_max=5, deliveries_max=3))
    with ServerThread(small) as srv:
        control = httpx.Client(base_url=srv.url, headers={"X-Sim-Token": TOKEN}, timeout=10)
        api = httpx.Client(base_url=srv.url + API, headers={"X-API-KEY": KEY}, timeout=10)
        account_id = api.post("/accounts", json={"provider": "LINKEDIN", "access_token": "AQEDAR-bounded"}
                              ).json()["account_id"]
        for _ in range(11):
            assert api.get("/accounts").status_code == 200
        for message in ("CREDENTIALS", "OK", "CREDENTIALS", "OK", "STOPPED"):
            assert control.post(f"/_sim/accounts/{account_id}/status", json={"message": message}).status_code == 200
        calls = control.get("/_sim/calls").json()["items"]
        assert [c["seq"] for c in calls] == [8, 9, 10, 11, 12]  # the newest five of twelve
        stats = control.get("/_sim/stats").json()
        assert (stats["calls"], stats["calls_total"]) == (5, 12)
        deliveries = control.get("/_sim/webhook-deliveries").json()["items"]
        assert [d["message"] for d in deliveries] == ["CREDENTIALS", "OK", "STOPPED"]
    assert SimulatorConfig().calls_max == 10_000 and SimulatorConfig().deliveries_max == 1_000


def test_simulator_key_and_token_are_made_per_data_folder(tmp_path) -> None:
    made = []
    for name in ("one", "two"):
        s = ensure_local_secrets(Settings(mode="local", data_dir=str(tmp_path / name)), say=lambda m: None)
        again = ensure_local_secrets(Settings(mode="local", data_dir=str(tmp_path / name)), say=lambda m: None)
        assert s.unipile_api_key == again.unipile_api_key and len(s.unipile_api_key) >= 24
        assert sim_control_token(s) == sim_control_token(again) and len(sim_control_token(s)) >= 32
        made.append((s.unipile_api_key, sim_control_token(s)))
    assert made[0][0] != made[1][0] and made[0][1] != made[1][1]
    assert "sim-api-key" not in {key for key, _ in made}
    # a key given explicitly is kept; a real Unipile gets no made-up key
    given = ensure_local_secrets(Settings(mode="local", data_dir=str(tmp_path / "one"), unipile_api_key="given"))
    assert given.unipile_api_key == "given"
    real = ensure_local_secrets(Settings(mode="local", data_dir=str(tmp_path / "three"),
                                         unipile_dsn="https://api8.unipile.com:13851"))
    assert real.unipile_api_key == ""
    # a simulator made without them has its own
    a, b = SimulatorConfig(), SimulatorConfig()
    assert a.api_key != b.api_key and a.control_token != b.control_token and a.api_key != "sim-api-key"


def test_serve_banner_shows_where_the_control_token_is(tmp_path, monkeypatch, capsys) -> None:
    import uvicorn

    from cookiesync.cli import main

    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: None)
    for name in [k for k in os.environ if k.startswith("COOKIESYNC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("COOKIESYNC_DATA_DIR", str(tmp_path / "data"))
    main(["serve", "--port", "8123"])
    out = capsys.readouterr().out
    stored = json.loads((tmp_path / "data" / "secrets.json").read_text())
    USED_SECRETS.add(stored[SIM_CONTROL_TOKEN])  # printed by the banner, never logged
    line = next(line for line in out.splitlines() if "simulator control:" in line)
    assert f"http://127.0.0.1:8123{SIM_MOUNT}/_sim/" in line and f"X-Sim-Token: {stored[SIM_CONTROL_TOKEN]}" in line
    assert str(tmp_path / "data" / "secrets.json") in line


def test_outcomes_replace_empties_the_queue_so_a_sticky_fault_window_can_end(sim) -> None:
    """An outage is `sticky:503` until `replace` with `[]` ends it; without `replace` the queue grows."""
    control = httpx.Client(base_url=sim.url, headers={"X-Sim-Token": TOKEN}, timeout=10)
    assert control.post("/_sim/outcomes", json={"outcomes": ["sticky:503"]}).json()["outcomes"] == ["sticky:503"]
    assert control.post("/_sim/outcomes", json={"outcomes": ["429"]}).json()["outcomes"] == ["sticky:503", "429"]
    assert control.post("/_sim/outcomes", json={"outcomes": ["sticky:429"], "replace": True}).json()["outcomes"] \
        == ["sticky:429"]
    assert control.post("/_sim/outcomes", json={"outcomes": [], "replace": True}).json()["outcomes"] == []
    api = httpx.Client(base_url=sim.url, headers={"X-API-KEY": KEY}, timeout=10)
    r = api.post("/api/v1/accounts", json={"provider": "LINKEDIN", "access_token": "AQEDAR-replace-test-0001"})
    assert r.status_code == 201, r.text  # nothing scripted is left
    assert control.post("/_sim/outcomes", json={"outcomes": [], "replace": "yes"}).status_code == 400
