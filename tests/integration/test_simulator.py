"""The Unipile simulator against the v1 contract, over real sockets."""
from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from cookiesync.simulator.app import SimulatorConfig, create_simulator_app
from cookiesync.simulator.redact import fingerprint
from tests.support.servers import ServerThread, free_port

KEY = "sim-test-key"
TOKEN = "sim-test-control-token"
CONTROL = {"X-Sim-Token": TOKEN}
JSON_CT = "application/json; charset=utf-8"
UA = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0"


class Receiver:
    """A tiny ASGI app that keeps every POST it gets (webhooks, notify_url)."""

    def __init__(self) -> None:
        self.hits: list[dict] = []
        self.answer = 200

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.hits.append({"path": scope["path"], "query": scope["query_string"].decode(),
                          "headers": {k.decode().lower(): v.decode() for k, v in scope["headers"]},
                          "json": httpx.Response(200, content=body).json() if body else None})
        await send({"type": "http.response.start", "status": self.answer,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    def wait(self, n: int = 1, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.hits) < n:
            assert time.monotonic() < deadline, f"expected {n} hit(s), got {self.hits}"
            time.sleep(0.02)
        return self.hits


@pytest.fixture(scope="module")
def server():
    port = free_port()
    app = create_simulator_app(SimulatorConfig(api_key=KEY, control_token=TOKEN, public_url=f"http://127.0.0.1:{port}"))
    with ServerThread(app, port=port) as srv:
        yield srv


@pytest.fixture(scope="module")
def receiver_server():
    rec = Receiver()
    with ServerThread(rec) as srv:
        srv.rec = rec
        yield srv


@pytest.fixture
def receiver(receiver_server):
    receiver_server.rec.hits.clear()
    receiver_server.rec.answer = 200
    return receiver_server


@pytest.fixture
def sim(server):
    with httpx.Client(base_url=server.url, headers=CONTROL, timeout=10) as client:
        client.post("/_sim/reset").raise_for_status()
        client.post("/_sim/config", json={"latency_ms": 0, "webhook_url": None, "webhook_secret": None,
                                          "webhook_header": "Unipile-Auth", "timeout_s": 30.0}).raise_for_status()
        client.url = server.url
        yield client


def api(sim: httpx.Client, method: str, path: str, **kw) -> httpx.Response:
    return sim.request(method, "/api/v1" + path, headers={"X-API-KEY": KEY} | kw.pop("headers", {}), **kw)


def body(li_at: str, **extra) -> dict:
    return {"provider": "LINKEDIN", "access_token": li_at, "user_agent": UA} | extra


def register(sim, li_at: str, plain_id: str | None = None, outcomes: list[str] | None = None, **extra) -> dict:
    payload = {"li_at": li_at} | ({"plain_id": plain_id} if plain_id else {}) | extra
    if outcomes:
        payload["outcomes"] = outcomes
    r = sim.post("/_sim/cookies", json=payload)
    assert r.status_code == 200, r.text
    return r.json()


def create(sim, li_at: str, **extra) -> str:
    r = api(sim, "POST", "/accounts", json=body(li_at, **extra))
    assert r.status_code == 201 and r.json()["object"] == "AccountCreated", r.text
    return r.json()["account_id"]


def expires(delta: timedelta = timedelta(hours=1)) -> str:
    when = datetime.now(timezone.utc) + delta
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def sim_account(sim, account_id: str) -> dict:
    return next(a for a in sim.get("/_sim/accounts").json()["items"] if a["id"] == account_id)


# --- transport ----------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"X-API-KEY": "wrong"}, {"X-API-KEY": ""}])
def test_bad_or_missing_key_is_401_missing_credentials(sim, headers) -> None:
    for method, path in [("GET", "/accounts"), ("POST", "/accounts"), ("GET", "/webhooks"),
                         ("POST", "/hosted/accounts/link"), ("GET", "/nope")]:
        r = sim.request(method, "/api/v1" + path, headers=headers, json={})
        assert r.status_code == 401
        assert r.json() == {"status": 401, "type": "errors/missing_credentials", "title": "Missing credentials"}
        assert r.headers["content-type"] == JSON_CT
        assert r.headers["x-unipile-simulator"] == "1"
    assert not sim.get("/_sim/accounts").json()["items"]  # nothing happened


def test_content_type_is_exact_everywhere(sim) -> None:
    account_id = create(sim, "AQEDAR-ct")
    answers = [
        api(sim, "GET", "/accounts"), api(sim, "GET", f"/accounts/{account_id}"),
        api(sim, "GET", "/accounts/missing"), api(sim, "POST", "/accounts", content=b"{not json"),
        api(sim, "GET", f"/users/me?account_id={account_id}"), api(sim, "GET", "/webhooks"),
        api(sim, "GET", "/no/such/route"), sim.get("/_sim/calls"), sim.post("/_sim/reset"),
    ]
    for r in answers:
        assert r.headers["content-type"] == JSON_CT, (r.request.url, r.headers)
        assert r.headers["x-unipile-simulator"] == "1"
    assert answers[2].json()["type"] == "errors/resource_not_found"
    assert answers[3].status_code == 400 and answers[3].json()["type"] == "errors/malformed_request"
    assert answers[6].status_code == 404
    schema = sim.get("/schema/openapi.json").json()
    assert schema["info"]["title"] == "Unipile simulator (SIMULATED)"


# --- create / get / list / users/me ------------------------------------------------------------
def test_member_controls_name_premium_another_me_and_scripted_reads(sim) -> None:
    """The controls the profile tests use: a member's name and premium products as GET /accounts/{id}
    shows them, /users/me answering another member, and scripted read errors (one each, in order)."""
    register(sim, "AQEDAR-carol", "4343", name="Carol Example")
    account_id = api(sim, "POST", "/accounts", json=body("AQEDAR-carol")).json()["account_id"]
    im = api(sim, "GET", f"/accounts/{account_id}").json()["connection_params"]["im"]
    assert im["premiumFeatures"] == [] and im["username"] == "Carol Example"

    r = sim.post("/_sim/members/4343", json={"name": "Carol\u202e Renamed", "premium_features": ["recruiter"]})
    assert r.status_code == 200 and r.json()["premium_features"] == ["recruiter"]
    account = api(sim, "GET", f"/accounts/{account_id}").json()
    assert account["name"] == "Carol\u202e Renamed"  # as the member wrote it: the client must clean it
    assert account["connection_params"]["im"]["premiumFeatures"] == ["recruiter"]
    assert api(sim, "GET", f"/users/me?account_id={account_id}").json()["premium"] is True
    for bad in ({"premium_features": ["gold"]}, {"premium_features": [{}]}, {"nickname": "x"}, {"name": 3}):
        assert sim.post("/_sim/members/4343", json=bad).status_code == 400, bad

    assert sim.post(f"/_sim/accounts/{account_id}/me", json={"plain_id": "9999"}).json()["me_plain_id"] == "9999"
    assert api(sim, "GET", f"/users/me?account_id={account_id}").json()["object_urn"] == "urn:li:member:9999"
    assert api(sim, "GET", f"/accounts/{account_id}").json()["connection_params"]["im"]["username"] == \
        "Carol\u202e Renamed"  # the account itself is unchanged
    sim.post(f"/_sim/accounts/{account_id}/me", json={"plain_id": None}).raise_for_status()
    assert api(sim, "GET", f"/users/me?account_id={account_id}").json()["object_urn"] == "urn:li:member:4343"
    assert sim.post("/_sim/accounts/nope/me", json={"plain_id": "1"}).status_code == 404

    assert sim.post("/_sim/reads", json={"outcomes": ["503", "error:500:provider_error"]}).status_code == 200
    assert api(sim, "GET", f"/accounts/{account_id}").status_code == 503
    assert api(sim, "GET", f"/users/me?account_id={account_id}").json()["type"] == "errors/provider_error"
    assert api(sim, "GET", f"/accounts/{account_id}").status_code == 200
    assert sim.post("/_sim/reads", json={"outcomes": ["checkpoint:2FA"]}).status_code == 400
    sim.post("/_sim/reads", json={"outcomes": ["sticky:429"]}).raise_for_status()
    assert [api(sim, "GET", f"/accounts/{account_id}").status_code for _ in range(2)] == [429, 429]
    assert sim.post("/_sim/reads", json={"clear": True}).json()["outcomes"] == []
    assert api(sim, "GET", f"/accounts/{account_id}").status_code == 200


def test_create_then_account_shapes_and_identity(sim) -> None:
    register(sim, "AQEDAR-alice", "4242", provider_id="ACoAAAlice0001", name="Alice Example")
    r = api(sim, "POST", "/accounts", json=body("AQEDAR-alice", premium_token="AQJ-premium", country="fr",
                                               ip="203.0.113.9"))
    assert r.status_code == 201
    data = r.json()
    assert set(data) == {"object", "account_id"} and data["object"] == "AccountCreated"
    account_id = data["account_id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", account_id)

    account = api(sim, "GET", f"/accounts/{account_id}").json()
    assert account == {
        "object": "Account", "type": "LINKEDIN", "id": account_id, "name": "Alice Example",
        "created_at": account["created_at"], "groups": [],
        "sources": [{"id": f"{account_id}_MESSAGING", "status": "OK"}],
        "connection_params": {"im": {
            "id": "ACoAAAlice0001", "publicIdentifier": "alice-example-4242", "username": "Alice Example",
            "connection_method": "cookies", "premiumId": account["connection_params"]["im"]["premiumId"],
            "premiumFeatures": ["sales_navigator"], "premiumContractId": None, "organizations": [],
            "proxy": {"country": "FR"}}},
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", account["created_at"])

    me = api(sim, "GET", f"/users/me?account_id={account_id}").json()
    assert me["object"] == "AccountOwnerProfile" and me["provider"] == "LINKEDIN"
    assert me["provider_id"] == "ACoAAAlice0001" and me["object_urn"] == "urn:li:member:4242"
    assert me["entity_urn"] == "urn:li:fsd_profile:ACoAAAlice0001"
    assert api(sim, "GET", "/users/me").json()["type"] == "errors/missing_parameters"

    internal = sim_account(sim, account_id)
    assert internal["li_at_fingerprint"] == fingerprint("AQEDAR-alice")
    assert internal["li_a_fingerprint"] == fingerprint("AQJ-premium")
    assert internal["user_agent"] == UA and internal["ip"] == "203.0.113.9"
    assert internal["plain_id"] == "4242" and internal["provider_id"] == "ACoAAAlice0001"
    assert internal["status"] == "OK"

    calls = sim.get("/_sim/calls").json()["items"]
    first = calls[0]
    assert first["method"] == "POST" and first["path"] == "/api/v1/accounts" and first["status"] == 201
    assert first["body"]["access_token"] == fingerprint("AQEDAR-alice") and first["account_id"] == account_id
    assert first["body"]["premium_token"] == fingerprint("AQJ-premium")
    assert [c["seq"] for c in calls] == sorted(c["seq"] for c in calls)


def test_unregistered_cookie_gets_a_stable_generated_member(sim) -> None:
    a = create(sim, "AQEDAR-nobody")
    b = create(sim, "AQEDAR-nobody")
    sa, sb = sim_account(sim, a), sim_account(sim, b)
    assert sa["plain_id"] == sb["plain_id"] and sa["plain_id"].isdigit()
    assert sa["provider_id"].startswith("ACoAA")


def test_list_paginates_with_cursor_and_counts(sim) -> None:
    ids = [create(sim, f"AQEDAR-list-{i}") for i in range(5)]
    sim.post(f"/_sim/accounts/{ids[0]}/status", json={"message": "CREDENTIALS"}).raise_for_status()
    first = api(sim, "GET", "/accounts", params={"limit": 2}).json()
    assert first["object"] == "AccountList" and len(first["items"]) == 2 and first["cursor"]
    assert first["total_count"] == 5
    assert first["status_counts"] == {"OK": 4, "CONNECTING": 0, "CREDENTIALS": 1, "STOPPED": 0}
    seen = [i["id"] for i in first["items"]]
    cursor = first["cursor"]
    while cursor:
        page = api(sim, "GET", "/accounts", params={"limit": 2, "cursor": cursor}).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["cursor"]
    assert seen == ids
    assert api(sim, "GET", "/accounts", params={"limit": 251}).json()["type"] == "errors/limit_too_high"
    assert api(sim, "GET", "/accounts", params={"limit": 0}).status_code == 400


def test_a_listing_fails_half_way_when_scripted_and_bulk_accounts_are_listed(sim) -> None:
    made = sim.post("/_sim/accounts/bulk", json={"id_prefix": "bulk-", "first": 1, "count": 300,
                                                 "statuses": ["CREDENTIALS"]})
    assert made.status_code == 200 and made.json()["created"] == 300
    sim.post("/_sim/listing", json={"outcomes": ["ok", "503"]}).raise_for_status()
    first = api(sim, "GET", "/accounts", params={"limit": 250})
    assert first.status_code == 200 and [i["id"] for i in first.json()["items"]] == [f"bulk-{i}" for i in range(1, 251)]
    assert {i["sources"][0]["status"] for i in first.json()["items"]} == {"CREDENTIALS"}
    assert first.json()["status_counts"]["CREDENTIALS"] == 300
    cursor = first.json()["cursor"]
    failed = api(sim, "GET", "/accounts", params={"limit": 250, "cursor": cursor})
    assert failed.status_code == 503 and failed.json()["type"] == "errors/service_unavailable"
    last = api(sim, "GET", "/accounts", params={"limit": 250, "cursor": cursor}).json()  # the script is spent
    assert len(last["items"]) == 50 and last["cursor"] is None
    assert api(sim, "GET", "/accounts/bulk-7").json()["sources"] == [{"id": "bulk-7_MESSAGING", "status": "CREDENTIALS"}]
    assert sim.post("/_sim/accounts/bulk", json={"id_prefix": "b-", "count": 0}).status_code == 400
    mixed = sim.post("/_sim/accounts/bulk", json={"id_prefix": "m-", "count": 4, "statuses": ["OK", "STOPPED"]})
    assert mixed.status_code == 200
    assert [api(sim, "GET", f"/accounts/m-{i}").json()["sources"][0]["status"] for i in range(4)] == \
        ["OK", "STOPPED", "OK", "STOPPED"]
    assert sim.post("/_sim/listing", json={"outcomes": ["checkpoint:2FA"]}).status_code == 400


@pytest.mark.parametrize("payload,error_type", [
    ({"provider": "LINKEDIN"}, "errors/missing_parameters"),
    ({"access_token": "AQEDAR-x"}, "errors/missing_parameters"),
    ({"provider": "LINKEDIN", "access_token": "AQEDAR-x", "favourite_colour": "blue"}, "errors/invalid_parameters"),
    ({"provider": "LINKEDIN", "access_token": "AQEDAR-x", "account_id": "abc"}, "errors/invalid_parameters"),
    ({"provider": "WHATSAPP", "access_token": "AQEDAR-x"}, "errors/invalid_parameters"),
    ({"provider": "LINKEDIN", "access_token": "AQEDAR-x", "country": "FRA"}, "errors/invalid_parameters"),
    ({"provider": "LINKEDIN", "access_token": "AQEDAR-x", "ip": "not-an-ip"}, "errors/invalid_parameters"),
    ({"provider": "LINKEDIN", "access_token": "AQEDAR-x", "proxy": {"host": "p"}}, "errors/invalid_parameters"),
    # location (contract §1): ip is IPv4 only, country an assigned alpha-2 code, proxy as Unipile takes it
    ({"provider": "LINKEDIN", "access_token": "AQEDAR-x", "ip": "2a01:e0a::1"}, "errors/invalid_parameters"),
    ({"provider": "LINKEDIN", "access_token": "AQEDAR-x", "ip": "::ffff:8.8.8.8"}, "errors/invalid_parameters"),
    ({"provider": "LINKEDIN", "access_token": "AQEDAR-x", "country": "ZZ"}, "errors/invalid_parameters"),
    ({"provider": "LINKEDIN", "access_token": "AQEDAR-x", "country": 33}, "errors/invalid_parameters"),
    ({"provider": "LINKEDIN", "access_token": "AQEDAR-x", "proxy": {"host": "p", "port": "8080"}},
     "errors/invalid_parameters"),
    ({"provider": "LINKEDIN", "access_token": "AQEDAR-x", "proxy": {"host": "p", "port": True}},
     "errors/invalid_parameters"),
    ({"provider": "LINKEDIN", "access_token": "AQEDAR-x", "proxy": {"host": "p", "port": 8080, "protocol": "ftp"}},
     "errors/invalid_parameters"),
    ({"provider": "LINKEDIN", "access_token": "AQEDAR-x", "proxy": {"host": "p", "port": 8080, "username": 7}},
     "errors/invalid_parameters"),
    ({"provider": "LINKEDIN", "access_token": "AQEDAR-x", "proxy": {"host": "p", "port": 8080, "source": "USER"}},
     "errors/invalid_parameters"),
])
def test_create_validation(sim, payload, error_type) -> None:
    r = api(sim, "POST", "/accounts", json=payload)
    assert r.status_code == 400 and r.json()["type"] == error_type and r.json()["status"] == 400
    assert r.json()["title"] and r.json()["detail"]


# --- outcomes ------------------------------------------------------------------------------------
ERRORS = [
    ("invalid_credentials", 401, "errors/invalid_credentials"),
    ("expired_credentials", 401, "errors/expired_credentials"),
    ("disconnected_account", 401, "errors/disconnected_account"),
    ("wrong_account", 401, "errors/wrong_account"),
    ("account_restricted", 403, "errors/account_restricted"),
    ("429", 429, "errors/too_many_requests"),
    ("500", 500, "errors/provider_error"),
    ("intent_error", 500, "errors/authentication_intent_error"),
    ("503", 503, "errors/service_unavailable"),
    ("425", 425, "errors/authentication_in_progress"),
    ("error:403:account_mismatch", 403, "errors/account_mismatch"),
]


@pytest.mark.parametrize("outcome,status,error_type", ERRORS)
def test_every_error_outcome_on_create_and_reconnect(sim, outcome, status, error_type) -> None:
    li_at = f"AQEDAR-{outcome}"
    register(sim, li_at, "5005", [outcome])
    r = api(sim, "POST", "/accounts", json=body(li_at))
    assert r.status_code == status
    assert r.json()["type"] == error_type and r.json()["status"] == status and r.json()["title"]
    assert r.headers["content-type"] == JSON_CT
    assert sim.get("/_sim/accounts").json()["items"] == []  # a failed create leaves nothing behind
    # the queue is consumed: next time it works, then the account's own queue applies on reconnect
    account_id = create(sim, li_at)
    sim.post("/_sim/outcomes", json={"account_id": account_id, "outcomes": [outcome]}).raise_for_status()
    r = api(sim, "POST", f"/accounts/{account_id}", json=body(li_at))
    assert r.status_code == status and r.json()["type"] == error_type
    assert api(sim, "POST", f"/accounts/{account_id}", json=body(li_at)).json()["object"] == "AccountReconnected"


def test_timeout_outcome_answers_504_after_timeout_s(sim) -> None:
    sim.post("/_sim/config", json={"timeout_s": 0.6}).raise_for_status()
    register(sim, "AQEDAR-slow", "6006", ["timeout", "timeout"])
    with pytest.raises(httpx.ReadTimeout):
        api(sim, "POST", "/accounts", json=body("AQEDAR-slow"), timeout=0.2)
    time.sleep(0.6)  # let the abandoned intent finish
    started = time.monotonic()
    r = api(sim, "POST", "/accounts", json=body("AQEDAR-slow"))
    assert time.monotonic() - started >= 0.55
    assert r.status_code == 504 and r.json()["type"] == "errors/request_timeout"


def test_queue_priority_and_sticky(sim) -> None:
    sim.post("/_sim/outcomes", json={"outcomes": ["503"]}).raise_for_status()
    register(sim, "AQEDAR-prio", "7007", ["429"])
    assert api(sim, "POST", "/accounts", json=body("AQEDAR-prio")).status_code == 429  # cookie queue first
    assert api(sim, "POST", "/accounts", json=body("AQEDAR-prio")).status_code == 503  # then the global one
    account_id = create(sim, "AQEDAR-prio")  # then the default: ok
    sim.post("/_sim/outcomes", json={"account_id": account_id, "outcomes": ["500", "sticky:expired_credentials"]})
    statuses = [api(sim, "POST", f"/accounts/{account_id}", json=body("AQEDAR-prio")).json()["type"]
                for _ in range(4)]
    assert statuses == ["errors/provider_error"] + ["errors/expired_credentials"] * 3
    assert sim.post("/_sim/outcomes", json={"outcomes": ["bogus"]}).status_code == 400
    assert sim.post("/_sim/cookies", json={"li_at": "x", "outcomes": ["checkpoint:NOPE"]}).status_code == 400


# --- checkpoints -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,expected", [
    ("2FA", {"type": "2FA", "source": "APP"}),
    ("OTP", {"type": "OTP"}),
    ("PHONE_REGISTER", {"type": "PHONE_REGISTER"}),
    ("IN_APP_VALIDATION", {"type": "IN_APP_VALIDATION"}),
    ("CAPTCHA", {"type": "CAPTCHA", "public_key": "3117BF26-4762-4F5A-8ED9-A85E69209A46", "data": "sim-arkose-blob"}),
    ("CONTRACT_CHOOSER", {"type": "CONTRACT_CHOOSER", "contract_options": [
        {"id": "sim-contract-1", "name": "Recruiter Lite (simulated)"},
        {"id": "sim-contract-2", "name": "Recruiter Corporate (simulated)"}]}),
])
def test_checkpoint_shapes_on_create_then_solve(sim, kind, expected) -> None:
    register(sim, f"AQEDAR-cp-{kind}", "8008", [f"checkpoint:{kind}"])
    r = api(sim, "POST", "/accounts", json=body(f"AQEDAR-cp-{kind}"))
    assert r.status_code == 202
    data = r.json()
    assert data == {"object": "Checkpoint", "account_id": data["account_id"], "checkpoint": expected}
    account_id = data["account_id"]
    assert api(sim, "GET", f"/accounts/{account_id}").json()["sources"][0]["status"] == "CONNECTING"
    solve = {"account_id": account_id, "provider": "LINKEDIN"}
    wrong = api(sim, "POST", "/accounts/checkpoint", json=solve | {"code": "000000"})
    assert wrong.status_code == 401 and wrong.json()["type"] == "errors/invalid_checkpoint_solution"
    resend = api(sim, "POST", "/accounts/checkpoint/resend", json={"account_id": account_id, "provider": "LINKEDIN"})
    assert resend.json() == {"object": "CheckpointResend", "account_id": account_id, "success": True}
    if kind == "PHONE_REGISTER":  # a phone number leads to an OTP: checkpoints chain
        chained = api(sim, "POST", "/accounts/checkpoint", json=solve | {"code": "(+33)0612345678"})
        assert chained.status_code == 202 and chained.json()["checkpoint"] == {"type": "OTP"}
    ok = api(sim, "POST", "/accounts/checkpoint", json=solve | {"code": "123456"})
    assert ok.status_code == 201 and ok.json() == {"object": "AccountCreated", "account_id": account_id}
    assert sim_account(sim, account_id)["status"] == "OK"
    again = api(sim, "POST", "/accounts/checkpoint", json=solve | {"code": "123456"})
    assert again.status_code == 400


@pytest.mark.parametrize("code", ["\u0661\u0662\u0663\u0664\u0665\u0666", "(+33)\u0660\u0666\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668"])
def test_checkpoint_codes_are_ascii_digits_to_the_end(sim, code) -> None:
    """A code of Arabic-Indic digits (`\\d` took them) is no OTP, and no phone number to chain on."""
    kind = "PHONE_REGISTER" if code.startswith("(") else "OTP"
    register(sim, f"AQEDAR-cp-ascii-{kind}", "8009", [f"checkpoint:{kind}"])
    account_id = api(sim, "POST", "/accounts", json=body(f"AQEDAR-cp-ascii-{kind}")).json()["account_id"]
    r = api(sim, "POST", "/accounts/checkpoint", json={"account_id": account_id, "provider": "LINKEDIN", "code": code})
    assert r.status_code == 401 and r.json()["type"] == "errors/invalid_checkpoint_solution", r.text


@pytest.mark.parametrize("params", [{"limit": "\u0661\u0662"}, {"limit": "2\n"}, {"limit": " 2"},
                                    {"cursor": "2aE"}])  # base64url of "١" (int() takes it)
def test_list_paging_takes_ascii_integers_only(sim, params) -> None:
    r = api(sim, "GET", "/accounts", params=params)
    assert r.status_code == 400 and r.json()["type"] == "errors/invalid_parameters", r.text


def test_checkpoint_on_reconnect_solves_to_account_reconnected(sim) -> None:
    register(sim, "AQEDAR-rc-old", "9009")
    account_id = create(sim, "AQEDAR-rc-old")
    register(sim, "AQEDAR-rc-new", "9009", ["checkpoint:2FA:SMS"])
    r = api(sim, "POST", f"/accounts/{account_id}", json=body("AQEDAR-rc-new", account_id=account_id))
    assert r.status_code == 202
    assert r.json() == {"object": "Checkpoint", "account_id": account_id,
                        "checkpoint": {"type": "2FA", "source": "SMS"}}
    assert sim_account(sim, account_id)["li_at_fingerprint"] == fingerprint("AQEDAR-rc-old")  # not yet
    other = api(sim, "POST", "/accounts/checkpoint", json={"account_id": account_id, "provider": "LINKEDIN",
                                                            "code": "TRY_ANOTHER_WAY"})
    assert other.status_code == 202 and other.json()["checkpoint"]["type"] == "OTP"
    ok = api(sim, "POST", "/accounts/checkpoint", json={"account_id": account_id, "provider": "LINKEDIN",
                                                         "code": "654321"})
    assert ok.status_code == 201 and ok.json() == {"object": "AccountReconnected", "account_id": account_id}
    assert sim_account(sim, account_id)["li_at_fingerprint"] == fingerprint("AQEDAR-rc-new")


def test_in_app_validation_approved_through_control_api(sim, receiver) -> None:
    sim.post("/_sim/config", json={"webhook_url": receiver.url + "/hook"}).raise_for_status()
    register(sim, "AQEDAR-inapp", "9119", ["checkpoint:IN_APP_VALIDATION"])
    account_id = api(sim, "POST", "/accounts", json=body("AQEDAR-inapp")).json()["account_id"]
    assert sim.post(f"/_sim/accounts/{account_id}/approve").json()["object"] == "AccountCreated"
    assert api(sim, "GET", f"/accounts/{account_id}").json()["sources"][0]["status"] == "OK"
    hit = receiver.rec.wait(1)[0]
    assert hit["json"]["AccountStatus"] == {"account_id": account_id, "account_type": "LINKEDIN",
                                            "message": "CREATION_SUCCESS"}


# --- reconnect ----------------------------------------------------------------------------------
def test_reconnect_updates_credentials_and_checks_the_member(sim) -> None:
    register(sim, "AQEDAR-m1-a", "1111", name="Member One")
    register(sim, "AQEDAR-m2-a", "2222", name="Member Two")
    account_id = create(sim, "AQEDAR-m1-a")

    wrong = api(sim, "POST", f"/accounts/{account_id}", json=body("AQEDAR-m2-a"))
    assert wrong.status_code == 401 and wrong.json()["type"] == "errors/wrong_account"
    assert sim_account(sim, account_id)["li_at_fingerprint"] == fingerprint("AQEDAR-m1-a")

    # an unknown cookie is taken as the account's own member
    r = api(sim, "POST", f"/accounts/{account_id}",
            json=body("AQEDAR-m1-fresh", account_id="ignored-by-unipile", premium_token="AQJ-2", ip="198.51.100.7",
                      user_agent="NewUA/2"))
    assert r.status_code == 201 and r.json() == {"object": "AccountReconnected", "account_id": account_id}
    internal = sim_account(sim, account_id)
    assert (internal["li_at_fingerprint"], internal["li_a_fingerprint"], internal["ip"], internal["user_agent"]) == \
        (fingerprint("AQEDAR-m1-fresh"), fingerprint("AQJ-2"), "198.51.100.7", "NewUA/2")
    assert internal["plain_id"] == "1111"

    missing = api(sim, "POST", "/accounts/doesNotExist0000000000", json=body("AQEDAR-m1-a"))
    assert missing.status_code == 404 and missing.json()["type"] == "errors/resource_not_found"
    bad = api(sim, "POST", f"/accounts/{account_id}", json=body("AQEDAR-m1-a", username="x"))
    assert bad.status_code == 400 and bad.json()["type"] == "errors/invalid_parameters"


def test_concurrent_create_for_the_same_cookie_is_425(sim) -> None:
    register(sim, "AQEDAR-busy", "1212", latency_ms=500)
    results: list[httpx.Response] = []

    def call() -> None:
        results.append(api(sim, "POST", "/accounts", json=body("AQEDAR-busy")))

    first = threading.Thread(target=call)
    first.start()
    time.sleep(0.2)
    second = api(sim, "POST", "/accounts", json=body("AQEDAR-busy"))
    first.join()
    assert second.status_code == 425
    assert second.json()["title"] == "Authentication in progress"
    assert results[0].status_code == 201
    # the same for a reconnect racing on the account with a different cookie
    account_id = results[0].json()["account_id"]
    sim.post("/_sim/config", json={"latency_ms": 400}).raise_for_status()
    register(sim, "AQEDAR-busy-2", "1212", latency_ms=400)
    racer = threading.Thread(target=call)
    results.clear()
    racer.start()
    time.sleep(0.15)
    clash = api(sim, "POST", f"/accounts/{account_id}", json=body("AQEDAR-busy"))
    assert clash.status_code == 425
    racer.join()
    assert results[0].status_code == 201


# --- delete / restart / webhooks ----------------------------------------------------------------------
def test_webhooks_api_and_account_status_delivery(sim, receiver) -> None:
    sim.post("/_sim/config", json={"webhook_url": receiver.url + "/configured", "webhook_header": "Unipile-Auth",
                                   "webhook_secret": "s3cret"}).raise_for_status()
    created = api(sim, "POST", "/webhooks", json={
        "request_url": receiver.url + "/registered", "source": "account_status", "name": "acct", "format": "json",
        "headers": [{"key": "Content-Type", "value": "application/json"}, {"key": "X-Other", "value": "v"}]})
    assert created.status_code == 201 and created.json()["object"] == "WebhookCreated"
    webhook_id = created.json()["webhook_id"]
    api(sim, "POST", "/webhooks", json={"request_url": receiver.url + "/messages", "source": "messaging"})
    listing = api(sim, "GET", "/webhooks").json()
    assert listing["object"] == "WebhookList" and listing["cursor"] is None
    mine = next(w for w in listing["items"] if w["id"] == webhook_id)
    assert mine["object"] == "Webhook" and mine["source"] == "account_status"
    assert mine["request_url"] == receiver.url + "/registered" and mine["enabled"] is True
    bad = api(sim, "POST", "/webhooks", json={"request_url": receiver.url, "source": "account_status", "x": 1})
    assert bad.status_code == 400 and bad.json()["type"] == "errors/invalid_parameters"
    assert api(sim, "POST", "/webhooks", json={"source": "account_status"}).json()["type"] == \
        "errors/missing_parameters"

    account_id = create(sim, "AQEDAR-hook")
    fired = sim.post(f"/_sim/accounts/{account_id}/status", json={"message": "CREDENTIALS"})
    assert fired.status_code == 200
    assert sorted((d["target"].split(":")[0], d["status"]) for d in fired.json()["deliveries"]) == \
        [("config", 200), ("webhook", 200)]
    hits = {h["path"]: h for h in receiver.rec.wait(2)}
    expected = {"AccountStatus": {"account_id": account_id, "account_type": "LINKEDIN", "message": "CREDENTIALS"}}
    assert hits["/configured"]["json"] == expected and hits["/registered"]["json"] == expected
    assert hits["/configured"]["headers"]["unipile-auth"] == "s3cret"
    assert hits["/configured"]["headers"]["content-type"] == "application/json"
    assert hits["/registered"]["headers"]["x-other"] == "v"
    assert "/messages" not in hits
    assert sim_account(sim, account_id)["status"] == "CREDENTIALS"
    assert api(sim, "GET", f"/accounts/{account_id}").json()["sources"][0]["status"] == "CREDENTIALS"
    assert api(sim, "GET", f"/users/me?account_id={account_id}").json()["type"] == "errors/disconnected_account"

    # restart: CREDENTIALS -> OK fires OK; restarting a healthy account fires nothing
    receiver.rec.hits.clear()
    assert api(sim, "POST", f"/accounts/{account_id}/restart").json() == {"object": "AccountRestarted"}
    assert {h["json"]["AccountStatus"]["message"] for h in receiver.rec.wait(2)} == {"OK"}
    receiver.rec.hits.clear()
    assert api(sim, "POST", f"/accounts/{account_id}/restart").status_code == 200
    time.sleep(0.3)
    assert receiver.rec.hits == []

    assert api(sim, "DELETE", f"/webhooks/{webhook_id}").json() == {"object": "WebhookDeleted"}
    assert api(sim, "DELETE", f"/webhooks/{webhook_id}").status_code == 404
    deleted = api(sim, "DELETE", f"/accounts/{account_id}")
    assert deleted.status_code == 200 and deleted.json() == {"object": "AccountDeleted"}
    hit = receiver.rec.wait(1)[0]
    assert hit["path"] == "/configured" and hit["json"]["AccountStatus"]["message"] == "DELETED"
    assert api(sim, "GET", f"/accounts/{account_id}").status_code == 404
    assert sim.get("/_sim/webhook-deliveries").json()["items"]


# --- hosted auth ----------------------------------------------------------------------------------------
def hosted_body(account_id: str, **extra) -> dict:
    return {"type": "reconnect", "reconnect_account": account_id, "api_url": "https://api8.unipile.com:13851",
            "expiresOn": expires()} | extra


@pytest.mark.parametrize("change,status,error_type", [
    ({"expiresOn": "2030-07-01T12:30:00Z"}, 400, "errors/invalid_parameters"),  # no milliseconds
    ({"expiresOn": "2030-07-01T12:30:00.000+00:00"}, 400, "errors/invalid_parameters"),
    ({"expiresOn": None}, 400, "errors/missing_parameters"),
    ({"api_url": None}, 400, "errors/missing_parameters"),
    ({"type": "upgrade"}, 400, "errors/invalid_parameters"),
    ({"reconnect_account": None}, 400, "errors/missing_parameters"),
    ({"reconnect_account": "unknownAccount00000000"}, 404, "errors/resource_not_found"),
    ({"type": "create", "reconnect_account": None}, 400, "errors/missing_parameters"),  # providers
    ({"surprise": True}, 400, "errors/invalid_parameters"),
    ({"expiresOn": expires() + "\n"}, 400, "errors/invalid_parameters"),  # `$` took a final newline
    ({"expiresOn": "\u0662\u0660\u0663\u0660" + expires()[4:]}, 400, "errors/invalid_parameters"),  # \d: any digits
])
def test_hosted_link_validation(sim, change, status, error_type) -> None:
    account_id = create(sim, "AQEDAR-hosted-v")
    payload = {k: v for k, v in (hosted_body(account_id) | change).items() if v is not None}
    r = api(sim, "POST", "/hosted/accounts/link", json=payload)
    assert r.status_code == status and r.json()["type"] == error_type, r.text


def test_hosted_reconnect_page_flow(sim, receiver) -> None:
    sim.post("/_sim/config", json={"webhook_url": receiver.url + "/hook", "webhook_secret": "whs"})
    register(sim, "AQEDAR-hosted", "3131", name="Hosted Member")
    account_id = create(sim, "AQEDAR-hosted")
    sim.post(f"/_sim/accounts/{account_id}/status", json={"message": "CREDENTIALS", "webhook": False})
    r = api(sim, "POST", "/hosted/accounts/link", json=hosted_body(
        account_id, name="user_42", notify_url=receiver.url + "/notify?token=t0k",
        success_redirect_url="https://app.example.com/ok", failure_redirect_url="https://app.example.com/ko"))
    assert r.status_code == 201 and r.json()["object"] == "HostedAuthURL"
    url = r.json()["url"]
    assert url.startswith(sim.url + "/hosted/")

    page = httpx.get(url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Unipile simulator — hosted auth" in page.text and 'id="sim-hosted-submit"' in page.text
    assert "Hosted Member" in page.text and "SIMULATED" in page.text

    done = httpx.post(url, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "https://app.example.com/ok"
    hits = {h["path"]: h for h in receiver.rec.wait(2)}
    assert hits["/notify"]["json"] == {"status": "RECONNECTED", "account_id": account_id, "name": "user_42"}
    assert hits["/notify"]["query"] == "token=t0k"
    assert hits["/notify"]["headers"]["content-type"] == "application/json"
    assert hits["/hook"]["json"]["AccountStatus"]["message"] == "RECONNECTED"
    assert hits["/hook"]["headers"]["unipile-auth"] == "whs"
    assert sim_account(sim, account_id)["status"] == "OK"

    links = sim.get("/_sim/hosted-links").json()["items"]
    assert links[0]["body"]["reconnect_account"] == account_id and links[0]["status"] == "completed"
    assert links[0]["notify"]["status"] == 200
    assert httpx.get(url).status_code == 410  # used
    assert httpx.get(sim.url + "/hosted/no-such-token").status_code == 404


def test_hosted_link_expired_and_failure_button(sim) -> None:
    account_id = create(sim, "AQEDAR-hosted-x")
    old = api(sim, "POST", "/hosted/accounts/link",
              json=hosted_body(account_id, expiresOn=expires(timedelta(seconds=-5)))).json()["url"]
    assert httpx.get(old).status_code == 410 and httpx.post(old).status_code == 410
    url = api(sim, "POST", "/hosted/accounts/link",
              json=hosted_body(account_id, failure_redirect_url="https://app.example.com/ko")).json()["url"]
    failed = httpx.post(url, data={"action": "fail"}, follow_redirects=False)
    assert failed.status_code == 303 and failed.headers["location"] == "https://app.example.com/ko"
    # without a redirect URL the page itself says it is done
    url = api(sim, "POST", "/hosted/accounts/link", json={
        "type": "create", "providers": ["LINKEDIN"], "api_url": "https://api8.unipile.com:13851",
        "expiresOn": expires()}).json()["url"]
    page = httpx.post(url)
    assert page.status_code == 200 and "connected" in page.text
    assert len(sim.get("/_sim/accounts").json()["items"]) == 2


# --- control API ------------------------------------------------------------------------------------------
def test_reset_forgets_everything_but_config(sim) -> None:
    sim.post("/_sim/config", json={"latency_ms": 1}).raise_for_status()
    account_id = create(sim, "AQEDAR-reset")
    api(sim, "POST", "/webhooks", json={"request_url": "http://127.0.0.1:9/x", "source": "account_status"})
    sim.post("/_sim/outcomes", json={"outcomes": ["503"]})
    sim.post("/_sim/reset").raise_for_status()
    assert sim.get("/_sim/accounts").json()["items"] == []
    assert sim.get("/_sim/calls").json()["items"] == []
    assert api(sim, "GET", "/webhooks").json()["items"] == []
    assert api(sim, "GET", f"/accounts/{account_id}").status_code == 404
    assert sim.get("/_sim/config").json()["latency_ms"] == 1
    assert create(sim, "AQEDAR-reset")  # the global 503 is gone
    assert sim.post("/_sim/config", json={"nope": 1}).status_code == 400
    assert sim.post(f"/_sim/accounts/{account_id}/status", json={"message": "CREDENTIALS"}).status_code == 404
    assert sim.post("/_sim/accounts/x/status", json={"message": "WHATEVER"}).status_code == 400


def test_mounted_under_a_prefix_like_the_embedded_demo() -> None:
    """cookiesync mounts the simulator at /unipile-sim; hosted URLs then carry the prefix."""
    from litestar import Litestar

    from cookiesync.simulator.app import simulator_mount

    mounted = simulator_mount("/unipile-sim", create_simulator_app(SimulatorConfig(api_key=KEY, control_token=TOKEN)))

    with ServerThread(Litestar(route_handlers=[mounted])) as srv:
        base = srv.url + "/unipile-sim"
        headers = {"X-API-KEY": KEY}
        r = httpx.post(base + "/api/v1/accounts", json=body("AQEDAR-mounted"), headers=headers)
        assert r.status_code == 201 and r.headers["content-type"] == JSON_CT
        account_id = r.json()["account_id"]
        link = httpx.post(base + "/api/v1/hosted/accounts/link", json=hosted_body(account_id), headers=headers)
        url = link.json()["url"]
        assert url.startswith(base + "/hosted/")
        assert "sim-hosted-submit" in httpx.get(url).text
        assert httpx.post(url).status_code == 200
        assert httpx.get(base + "/_sim/calls").status_code == 401
        calls = httpx.get(base + "/_sim/calls", headers=CONTROL).json()["items"]
        assert [c["path"] for c in calls] == ["/api/v1/accounts", "/api/v1/hosted/accounts/link"]
