"""The user's rights over what is held on them: the export hands out everything and no secret;
the erasure leaves nothing of the user in any table. Both over the real API, on SQLite and
PostgreSQL, with a user who went through pairing, a connect, a disconnect, every retry, a
give-up email over SMTP and notifications to the integrator."""
from __future__ import annotations

import json
import re

import msgspec
import sqlalchemy as sa

from cookiesync.db.schema import links, metadata
from cookiesync.security import hash_token
from tests.support.reconnect import connect_one, fast, fire
from tests.support.servers import free_port
from tests.support.service import USED_SECRETS, status_of
from tests.support.wait import wait_for

HOOK_SECRET = "whsec_" + "ZXhwb3J0LXRlc3Qtbm90aWZpY2F0aW9uLWtleQ=="


def _lived(svc, sim, smtp, user_id: str, plain_id: str, li_at: str) -> dict:
    """A user with a whole life in the service; returns what identifies them and their secrets."""
    linkedin_name = f"LinkedIn Name {user_id}"
    token, account_id = connect_one(svc, sim, user_id, plain_id, li_at, ["ok", "sticky:invalid_credentials"],
                                    name=linkedin_name)
    wait_for(lambda: svc.accounts(user_id)[0]["linkedin"]["name"] == linkedin_name)  # read after the connect
    proxy_password = f"proxy-password-of-{user_id}"
    USED_SECRETS.add(proxy_password)
    r = svc.integrator("PUT", f"/v1/users/{user_id}",
                       json={"email": f"{user_id}@example.com", "display_name": f"Name of {user_id}",
                             "proxy": {"host": "proxy.example.net", "port": 3128, "password": proxy_password}})
    assert r.status_code == 200, r.text
    fire(sim, account_id)
    wait_for(lambda: status_of(svc, user_id, plain_id) == "needs_user", timeout=20)
    msg = wait_for(lambda: [m for m in smtp.messages if m["To"] == f"{user_id}@example.com"], timeout=10)[0]
    html = next(p for p in msg.walk() if p.get_content_type() == "text/html").get_content()
    reconnect_token = re.search(r"/reconnect/([^\"'<\s]+)", html).group(1)
    code = svc.integrator("POST", f"/v1/users/{user_id}/pairing-codes").json()["code"]  # one left unused

    async def link_row(conn):
        return (await conn.execute(sa.select(links).where(links.c.plain_id == plain_id))).one()

    link = svc.db(link_row)
    device_id = svc.db(lambda conn: _device_id(conn, user_id))
    return dict(user_id=user_id, email=f"{user_id}@example.com", name=f"Name of {user_id}", plain_id=plain_id,
                linkedin_name=linkedin_name, public_identifier=link.linkedin_public_id,
                account_id=account_id, device_id=device_id, link_id=link.id, fingerprint=link.cookie_fingerprint,
                secrets=[li_at, token, hash_token(token), reconnect_token, code, proxy_password,
                         link.cookie_fingerprint])


async def _device_id(conn, user_id):
    from cookiesync.db.schema import devices
    return (await conn.execute(sa.select(devices.c.id).where(devices.c.user_id == user_id))).scalar_one()


def _cells(svc) -> dict[str, list[tuple]]:
    """Every row of every table, as text per cell."""
    async def dump(conn):
        out = {}
        for table in metadata.sorted_tables:
            rows = (await conn.execute(sa.select(table))).all()
            out[table.name] = [tuple(json.dumps(v, default=str) if isinstance(v, (dict, list)) else
                                     v.hex() if isinstance(v, bytes) else str(v) for v in r) for r in rows]
        return out
    return svc.db(dump)


def _tables_holding(cells: dict[str, list[tuple]], person: dict) -> dict[str, int]:
    """Per table, the rows that name the person, or point at their link by id."""
    marks = [person[k] for k in ("user_id", "email", "name", "plain_id", "account_id", "device_id", "fingerprint",
                                 "linkedin_name", "public_identifier")]
    found: dict[str, int] = {}
    for name, rows in cells.items():
        cols = [c.name for c in metadata.tables[name].columns]
        link_cols = [i for i, c in enumerate(cols) if c == "link_id" or (name == "links" and c == "id")]
        n = sum(1 for row in rows if any(m in cell for cell in row for m in marks)
                or any(row[i] == str(person["link_id"]) for i in link_cols))
        if n:
            found[name] = n
    return found


def test_export_holds_everything_and_no_secret_and_erase_leaves_nothing(service_factory, simulator, smtp) -> None:
    hook_port = free_port()  # nobody listens: the notifications stay in the table, pending
    svc = service_factory(**fast(smtp_host="127.0.0.1", smtp_port=smtp.port, stale_cookie_s=3600,
                                 integrator_webhook_url=f"http://127.0.0.1:{hook_port}/hooks",
                                 integrator_webhook_secret=HOOK_SECRET, notify_retry_base_s=3600))
    person = _lived(svc, simulator, smtp, "gdpr-u1", "7700101", "AQEDAR-export-me-cookie-0001")
    other = _lived(svc, simulator, smtp, "gdpr-u2", "7700202", "AQEDAR-keep-me-cookie-00002")

    r = svc.integrator("GET", "/v1/users/gdpr-u1/export")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["user"] == {"user_id": "gdpr-u1", "email": "gdpr-u1@example.com", "display_name": "Name of gdpr-u1",
                           "created_at": doc["user"]["created_at"], "updated_at": doc["user"]["updated_at"],
                           "country": None, "proxy": {"host": "proxy.example.net", "port": 3128, "protocol": None,
                                                      "username": None, "password_set": True}}
    assert [d["device_id"] for d in doc["devices"]] == [person["device_id"]]
    assert doc["devices"][0]["extension_version"] == "1.0.0" and doc["devices"][0]["last_ip"] == "127.0.0.1"
    [link] = doc["links"]
    assert (link["plain_id"], link["status"], link["unipile_account_id"]) == ("7700101", "needs_user",
                                                                              person["account_id"])
    assert link["linkedin"] == {"name": "LinkedIn Name gdpr-u1", "public_identifier": person["public_identifier"],
                                "premium": [], "read_at": link["linkedin"]["read_at"], "member_check": "match",
                                "member_seen": None}
    assert person["public_identifier"] == "linkedin-name-gdpr-u1-7700101" and link["linkedin"]["read_at"]
    assert link["location"] == {"country": None, "source": "proxy"}  # the integrator's proxy, set after pairing
    assert [i["kind"] for i in link["incidents"]] == ["connect", "reconnect"]
    assert link["incidents"][0]["outcome"] == "connected" and link["incidents"][1]["attempts"] == 5
    assert link["incidents"][1]["closed_at"] is None  # still open: it waits for the user
    [email] = doc["emails"]
    assert email["to"] == "gdpr-u1@example.com" and email["status"] == "sent" and email["subject"]
    assert {n["event_type"] for n in doc["notifications"]} == {"link.connected", "link.needs_user"}
    assert len(doc["pairing_codes"]) == 2 and sum(p["used_at"] is None for p in doc["pairing_codes"]) == 1
    kinds = [e["kind"] for e in doc["history"]]
    for kind in ("user_created", "device_paired", "cookie_received", "attempt", "email_queued", "profile_read"):
        assert kind in kinds, kinds
    assert kinds.count("attempt") >= 6
    text = r.text
    for secret in person["secrets"][:-1] + [svc.api_key, svc.settings.webhook_secret, svc.settings.signing_secret,
                                            svc.settings.hosted_auth_secret, HOOK_SECRET]:
        assert secret not in text
    assert other["user_id"] not in text and other["plain_id"] not in text
    # the export is in the user's history, and an unknown user has none
    assert svc.integrator("GET", "/v1/users/gdpr-u1/export").json()["history"][-1]["kind"] == "user_exported"
    assert svc.integrator("GET", "/v1/users/nobody/export").status_code == 404
    assert svc.http.get("/v1/users/gdpr-u1/export").status_code == 401

    cells_before = _cells(svc)
    # the LinkedIn name is held (on the link) until the erasure, which must remove it
    assert any(person["linkedin_name"] in cell for row in cells_before["links"] for cell in row)
    before = _tables_holding(cells_before, person)
    # the scan sees the person wherever the service keeps them
    assert set(before) >= {"users", "devices", "links", "incidents", "events", "outbox", "notifications",
                           "pairing_codes"}, before
    assert svc.integrator("DELETE", "/v1/users/gdpr-u1").status_code == 200
    cells = _cells(svc)
    assert _tables_holding(cells, person) == {}
    assert set(_tables_holding(cells, other)) >= set(before)  # the other user is untouched
    for secret in person["secrets"]:
        assert not any(secret in cell for rows in cells.values() for row in rows for cell in row)
    assert msgspec.json.decode(svc.integrator("GET", "/v1/users/gdpr-u1/export").content)["status_code"] == 404
