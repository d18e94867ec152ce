"""The LinkedIn profile after a connect (issue #15 §4), end to end on SQLite and PostgreSQL: the
member's name read from the simulator's `GET /accounts/{id}` shows in the accounts API, the support
console and the emails, escaped; it refreshes on reconnect; a failed read never fails the connect
and is tried again; a cookie of another member is recorded, alerted and shown, and with
`COOKIESYNC_MEMBER_CHECK=enforce` disables the link and deletes the Unipile account."""
from __future__ import annotations

import asyncio

import sqlalchemy as sa

from cookiesync.db.schema import links, utcnow
from cookiesync.domain.integrator.services import create_api_key
from tests.support.console import add_staff, link_events, link_id, signed_in
from tests.support.history import history
from tests.support.reconnect import connect_one, fast, fire
from tests.support.service import in_service_loop, settled, status_of
from tests.support.simulator import sim_get, sim_post, sim_script
from tests.support.wait import wait_for

RAW_NAME = "Jane\u202e <i>Doe</i>\x07"   # what the member wrote: a bidi override, markup, a control char
NAME = "Jane <i>Doe</i>"                  # what we keep
ESCAPED = "Jane &lt;i&gt;Doe&lt;/i&gt;"
MISMATCH_ALERT = "cookie of another LinkedIn member than the link's"


def linkedin(svc, user_id: str) -> dict:
    return svc.accounts(user_id)[0]["linkedin"]


def read_name(svc, user_id: str, name: str) -> dict:
    return wait_for(lambda: (info := linkedin(svc, user_id))["name"] == name and info, timeout=15)


def kinds(svc, plain_id: str) -> list[str]:
    return [e["kind"] for e in history(svc, plain_id)]


def alerts(svc, reason: str) -> float:
    for line in svc.http.get("/metrics").text.splitlines():
        if line.startswith("cookiesync_operator_alerts_total{") and f'reason="{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_name_after_a_connect_in_the_api_the_console_and_the_email(service_factory, simulator, smtp) -> None:
    svc = service_factory(**fast(smtp_host="127.0.0.1", smtp_port=smtp.port))
    sim_post(simulator, "/_sim/members/5151", json={"name": RAW_NAME, "premium_features": ["sales_navigator"]})
    _, account_id = connect_one(svc, simulator, "p-1", "5151", "AQEDAR-profile-cookie-p1",
                                ["ok", "checkpoint:2FA"], name=RAW_NAME)
    info = read_name(svc, "p-1", NAME)
    assert sim_get(simulator, "/_sim/accounts").json()["items"][0]["name"] == RAW_NAME  # as the member wrote it
    assert info["public_identifier"] == "jane-i-doe-i-5151" and info["premium"] == ["sales_navigator"]
    assert info["member_check"] == "match" and info["member_seen"] is None and info["read_at"]
    assert "profile_read" in kinds(svc, "5151")

    # the console: the list and the link page, escaped and isolated
    add_staff(svc, "op@example.com", "operator")
    staff = signed_in(svc)
    lid = link_id(svc, "p-1", "5151")
    page = staff.get(f"/support/links/{lid}").text
    assert f'<b id="linkedin-name"><bdi>{ESCAPED}</bdi></b>' in page
    assert f'<dd id="profile-name"><bdi>{ESCAPED}</bdi></dd>' in page and "sales_navigator" in page
    assert "<i>Doe</i>" not in page and "member-mismatch" not in page
    listed = staff.get("/support/links", params={"user_id": "p-1"}).text
    assert f'<span class="linkedin-name"><bdi>{ESCAPED}</bdi></span>' in listed

    # the email: a reconnect that meets a checkpoint writes one, naming the account
    fire(simulator, account_id)
    msg = wait_for(lambda: smtp.messages, timeout=15)[0]
    html = next(p for p in msg.walk() if p.get_content_type() == "text/html").get_content()
    text = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_content()
    assert f"Your LinkedIn account <strong>{ESCAPED}</strong>" in html and "LinkedIn member 5151" not in html
    assert f"Your LinkedIn account {NAME} is disconnected" in text


def test_the_name_refreshes_on_reconnect(service_factory, simulator) -> None:
    svc = service_factory(**fast())
    _, account_id = connect_one(svc, simulator, "p-2", "5252", "AQEDAR-profile-cookie-p2", name="Jane Doe")
    read_name(svc, "p-2", "Jane Doe")
    # the member renames themself and buys Recruiter; nothing is read until the account reconnects
    sim_post(simulator, "/_sim/members/5252", json={"name": "Jane Smith", "premium_features": ["recruiter"]})
    assert linkedin(svc, "p-2")["name"] == "Jane Doe"
    fire(simulator, account_id)
    info = read_name(svc, "p-2", "Jane Smith")
    assert info["premium"] == ["recruiter"] and status_of(svc, "p-2", "5252") == "connected"
    reads = [e for e in history(svc, "5252") if e["kind"] == "profile_read"]
    assert len(reads) == 2 and reads[1]["data"]["name_changed"] is True


def test_a_failed_profile_read_does_not_fail_the_connect_and_is_retried(service_factory, simulator) -> None:
    svc = service_factory(**fast(profile_retry_s=0.3))
    # the first two reads fail: a 503, then no answer Unipile could give (a 500)
    sim_post(simulator, "/_sim/reads", json={"outcomes": ["503", "500"]}).raise_for_status()
    connect_one(svc, simulator, "p-3", "5353", "AQEDAR-profile-cookie-p3", name="Ann Read")
    assert status_of(svc, "p-3", "5353") == "connected"
    info = read_name(svc, "p-3", "Ann Read")
    events = history(svc, "5353")
    failed = [e for e in events if e["kind"] == "profile_read_failed"]
    assert [e["data"]["error"] for e in failed] == ["503 errors/service_unavailable", "500 errors/provider_error"]
    assert failed[0]["data"]["next_read_at"] and failed[1]["data"]["failures"] == 2
    # the connect was recorded, as connected, before any read; no attempt came of the failures
    order = [e["kind"] for e in events]
    assert order.index("attempt") < order.index("profile_read_failed")
    assert order.count("attempt") == 1 and status_of(svc, "p-3", "5353") == "connected"
    assert info["member_check"] == "match"

    async def due(conn):
        return (await conn.execute(sa.select(links.c.profile_due_at, links.c.profile_failures))).one()

    assert tuple(svc.db(due)) == (None, 0)


def test_a_read_due_when_the_service_stopped_is_made_by_the_next_one(service_factory, simulator) -> None:
    """Crash-safe: the read is recorded with the connect, so a service that stops before reading
    (here: every read failing, with a long wait) leaves it due, and the next service reads it."""
    first = service_factory(**fast(profile_retry_s=3600))
    sim_post(simulator, "/_sim/reads", json={"outcomes": ["sticky:503"]}).raise_for_status()
    connect_one(first, simulator, "p-4", "5454", "AQEDAR-profile-cookie-p4", name="Bo Later")
    wait_for(lambda: "profile_read_failed" in kinds(first, "5454"))
    first.http.close()
    first.server.stop()

    async def due_now(conn):
        await conn.execute(links.update().values(profile_due_at=utcnow()))

    first.db(due_now)  # as if the hour had passed while no service ran
    sim_post(simulator, "/_sim/reads", json={"clear": True}).raise_for_status()
    second = service_factory(**fast())
    assert read_name(second, "p-4", "Bo Later")["member_check"] == "match"


def _mismatched(svc, sim, user_id: str, own: str, other: str, li_at: str) -> str:
    """The extension reports member `own`, but the cookie is member `other`'s."""
    sim_script(sim, li_at, other, name="Someone Else")
    svc.new_user(user_id, email=f"{user_id}@example.com")
    token = svc.pair(user_id)
    assert svc.sync(token, li_at=li_at, plain_id=own).status_code == 200
    return settled(svc, user_id, own)


def test_a_member_mismatch_is_recorded_alerted_and_shown(service_factory, simulator) -> None:
    svc = service_factory(**fast())
    assert _mismatched(svc, simulator, "p-5", "5555", "6666", "AQEDAR-profile-cookie-p5") == "connected"
    info = wait_for(lambda: (i := linkedin(svc, "p-5"))["member_check"] == "mismatch" and i, timeout=15)
    assert info["member_seen"] == "6666" and info["name"] == "Someone Else"
    events = history(svc, "5555")
    [mismatch] = [e for e in events if e["kind"] == "member_mismatch"]
    assert mismatch["data"] | {"unipile_account_id": None} == {"plain_id": "5555", "member_seen": "6666",
                                                               "unipile_account_id": None, "enforced": False}
    assert [e["data"]["reason"] for e in events if e["kind"] == "operator_alert"] == [MISMATCH_ALERT]
    assert alerts(svc, MISMATCH_ALERT) == 1
    assert status_of(svc, "p-5", "5555") == "connected"  # recorded only: enforcement is off

    add_staff(svc, "op@example.com", "operator")
    staff = signed_in(svc)
    page = staff.get(f"/support/links/{link_id(svc, 'p-5', '5555')}").text
    assert 'id="member-mismatch"' in page and "member <b><bdi>6666</bdi></b>" in page
    assert "member mismatch: Unipile says the cookie is LinkedIn member 6666" in page  # the timeline
    assert "member-mismatch" in staff.get("/support/links", params={"user_id": "p-5"}).text


def test_a_reconnect_with_another_members_session_is_a_mismatch(service_factory, simulator) -> None:
    """The simulator's /users/me made to answer another member (a control for this test): the
    check runs on every reconnect, not only the first connect."""
    svc = service_factory(**fast())
    _, account_id = connect_one(svc, simulator, "p-6", "5656", "AQEDAR-profile-cookie-p6", name="Cy Own")
    assert read_name(svc, "p-6", "Cy Own")["member_check"] == "match"
    sim_post(simulator, f"/_sim/accounts/{account_id}/me", json={"plain_id": "7777"}).raise_for_status()
    fire(simulator, account_id)
    info = wait_for(lambda: (i := linkedin(svc, "p-6"))["member_check"] == "mismatch" and i, timeout=15)
    assert info["member_seen"] == "7777"
    # the account's own member again (a second identical webhook would be a redelivery: staff retry)
    sim_post(simulator, f"/_sim/accounts/{account_id}/me", json={"plain_id": None}).raise_for_status()
    key = asyncio.run(create_api_key(svc.settings, "support-tests", "support"))
    r = svc.http.post(f"/v1/support/links/{link_id(svc, 'p-6', '5656')}/actions/retry",
                      headers={"Authorization": f"Bearer {key}"}, json={"reason": "member check"})
    assert r.status_code == 200, r.text
    wait_for(lambda: linkedin(svc, "p-6")["member_check"] == "match", timeout=15)
    assert linkedin(svc, "p-6")["member_seen"] is None
    assert kinds(svc, "5656").count("member_mismatch") == 1


def test_enforced_a_mismatch_disables_the_link_and_deletes_the_account(service_factory, simulator) -> None:
    svc = service_factory(**fast(member_check="enforce"))
    # connected first (the read may have disabled it by the time we look)
    assert _mismatched(svc, simulator, "p-7", "5757", "6767", "AQEDAR-profile-cookie-p7") in ("connected", "disabled")
    wait_for(lambda: status_of(svc, "p-7", "5757") == "disabled", timeout=15)
    lid = link_id(svc, "p-7", "5757")
    deleted = wait_for(lambda: link_events(svc, lid, "unipile_account_deleted"), timeout=15)[0]["data"]
    account_id = deleted["unipile_account_id"]
    assert deleted["deleted"] is True and account_id
    assert account_id not in [a["id"] for a in sim_get(simulator, "/_sim/accounts").json()["items"]]
    [account] = svc.accounts("p-7")
    assert account["unipile_account_id"] is None and account["linkedin"]["member_check"] == "mismatch"
    [enforced] = link_events(svc, lid, "member_check_enforced")
    assert (enforced["data"]["from_state"], enforced["data"]["to_state"]) == ("connected", "disabled")
    assert [e["data"]["enforced"] for e in link_events(svc, lid, "member_mismatch")] == [True]
    assert alerts(svc, MISMATCH_ALERT) == 1
    # no cookie is tried while the link is disabled, not even a fresh one of the right member
    attempts = len(link_events(svc, lid, "attempt"))
    sim_script(simulator, "AQEDAR-profile-cookie-p7b", "5757", name="Right Member")
    assert svc.sync(svc.pair("p-7"), li_at="AQEDAR-profile-cookie-p7b", plain_id="5757").status_code == 200
    assert status_of(svc, "p-7", "5757") == "disabled" and len(link_events(svc, lid, "attempt")) == attempts
    # staff enable: a new account is made with the newest cookie, and checked again
    key = asyncio.run(create_api_key(svc.settings, "support-tests", "support"))
    r = svc.http.post(f"/v1/support/links/{lid}/actions/enable", headers={"Authorization": f"Bearer {key}"},
                      json={"reason": "right cookie now"})
    assert r.status_code == 200, r.text
    info = read_name(svc, "p-7", "Right Member")
    assert info["member_check"] == "match" and info["member_seen"] is None
    [account] = svc.accounts("p-7")
    assert account["status"] == "connected" and account["unipile_account_id"] not in (None, account_id)
    assert len(link_events(svc, lid, "member_mismatch")) == 1


def test_a_connect_finished_by_webhook_is_read_by_the_sweep(service_factory, simulator) -> None:
    """A first connect that met an in-app checkpoint ends when the member approves it: Unipile's
    CREATION_SUCCESS webhook connects the link, and the sweep reads the profile it marked due."""
    svc = service_factory(**fast())
    sim_post(simulator, "/_sim/config", json={
        "webhook_url": f"{svc.url}/v1/webhooks/unipile/account-status",
        "webhook_header": svc.settings.webhook_header, "webhook_secret": svc.settings.webhook_secret,
    }).raise_for_status()
    sim_script(simulator, "AQEDAR-profile-cookie-p8", "5858", ["checkpoint:IN_APP_VALIDATION"], name="Di Approved")
    svc.new_user("p-8", email="p-8@example.com")
    assert svc.sync(svc.pair("p-8"), li_at="AQEDAR-profile-cookie-p8", plain_id="5858").status_code == 200
    assert settled(svc, "p-8", "5858") == "checkpoint"
    assert linkedin(svc, "p-8")["name"] is None  # not connected: nothing read
    [account] = sim_get(simulator, "/_sim/accounts").json()["items"]
    sim_post(simulator, f"/_sim/accounts/{account['id']}/approve").raise_for_status()
    wait_for(lambda: status_of(svc, "p-8", "5858") == "connected", timeout=15)
    assert read_name(svc, "p-8", "Di Approved")["member_check"] == "match"
    order = kinds(svc, "5858")
    assert order.index("webhook") < order.index("profile_read")


def test_a_reconnect_during_a_read_leaves_its_own_read_due(service_factory, simulator) -> None:
    """A read answers what the account was when Unipile answered; a reconnect recorded while that
    read was under way marks a read of its own due, which the older answer must not clear."""
    svc = service_factory(**fast(scheduler="off"))  # no sweep: this test drives the reader
    connect_one(svc, simulator, "p-9", "5959", "AQEDAR-profile-cookie-p9", name="Ed First")
    read_name(svc, "p-9", "Ed First")
    lid = link_id(svc, "p-9", "5959")

    def mark_due(conn):
        return conn.execute(links.update().where(links.c.id == lid).values(profile_due_at=utcnow()))

    svc.db(mark_due)
    reader = svc.rt.profiles
    [claimed] = in_service_loop(svc, reader.claim_due())
    svc.db(mark_due)  # the reconnect, recorded while the read below is under way
    in_service_loop(svc, reader.read(claimed.id, claimed.unipile_account_id, claimed.profile_due_at))
    row = svc.db(lambda conn: _link(conn, lid))
    assert row.profile_due_at is not None and row.profile_due_at < claimed.profile_due_at
    assert row.member_check == "match" and row.profile_read_at is not None
    # that read is made, and then nothing is due
    sim_post(simulator, "/_sim/members/5959", json={"name": "Ed Second"}).raise_for_status()
    assert in_service_loop(svc, reader.read_due()) == 1
    row = svc.db(lambda conn: _link(conn, lid))
    assert row.linkedin_name == "Ed Second" and row.profile_due_at is None


async def _link(conn, lid: int):
    return (await conn.execute(sa.select(links).where(links.c.id == lid))).one()
