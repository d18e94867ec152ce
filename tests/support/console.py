"""The support console under test: a service whose Unipile is a closed port (every attempt
fails at once, as a transient network error: the "failed incident" the console shows), with
an operator and a viewer; links made through the real API, disconnected by Unipile's webhook,
and a queued give-up email. Used by tests/integration/test_support.py and, in Chromium, by
tests/e2e/test_support_console_chromium.py."""
from __future__ import annotations

import asyncio
import itertools
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import httpx
import sqlalchemy as sa

from cookiesync.db.schema import events, links, outbox
from tests.support.service import start_service
from tests.support.settings import make_settings
from tests.support.wait import wait_for

PASSWORD = "correct horse battery staple"
DEAD_UNIPILE = "http://127.0.0.1:9"  # nothing listens: attempts fail fast (transient)
_seq = itertools.count(1)


def add_staff(svc, email: str, role: str, password: str = PASSWORD) -> None:
    from cookiesync.domain.support.staff import add_staff as add

    asyncio.run(add(svc.settings, email, role, password))


def link_id(svc, user_id: str, plain_id: str) -> int:
    async def q(conn):
        return (await conn.execute(sa.select(links.c.id).where(links.c.user_id == user_id,
                                                               links.c.plain_id == plain_id))).scalar_one()

    return svc.db(q)


def link_row(svc, lid: int) -> dict:
    async def q(conn):
        return dict((await conn.execute(sa.select(links).where(links.c.id == lid))).one()._mapping)

    return svc.db(q)


def link_events(svc, lid: int, kind: str | None = None) -> list[dict]:
    async def q(conn):
        query = sa.select(events).where(events.c.link_id == lid).order_by(events.c.id)
        if kind:
            query = query.where(events.c.kind == kind)
        return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    return svc.db(q)


def make_link(svc, user_id: str, plain_id: str, li_at: str, li_a: str | None = None,
              email: str | None = "") -> tuple[int, str]:
    """A user, a paired device and one synced cookie; waits for the first (failing) attempt."""
    svc.new_user(user_id, email=f"{user_id}@example.com" if email == "" else email)
    token = svc.pair(user_id, version="1.4.2")
    r = svc.sync(token, li_at=li_at, li_a=li_a, plain_id=plain_id)
    assert r.status_code == 200, r.text
    lid = link_id(svc, user_id, plain_id)
    wait_for(lambda: link_events(svc, lid, "attempt"))
    return lid, token


def disconnect(svc, lid: int, account_id: str) -> None:
    """Give the link a Unipile account, then deliver Unipile's CREDENTIALS webhook for it:
    a reconnect incident opens and its first attempt, against the absent Unipile, fails."""
    # not while an attempt is in flight: its answer would overwrite the reconnect the webhook schedules
    def idle() -> bool:
        row = link_row(svc, lid)
        due = row["next_attempt_at"] is not None and row["next_attempt_at"] <= datetime.now(timezone.utc)
        return row["lease_owner"] is None and not due

    wait_for(idle)

    async def q(conn):
        await conn.execute(links.update().where(links.c.id == lid).values(
            unipile_account_id=account_id, state="connected", incident_started_at=None, next_attempt_at=None,
            next_slot=0, attempts_in_incident=0))  # the open connect incident, if any, gets superseded

    before = len(link_events(svc, lid, "attempt"))
    svc.db(q)
    body = {"AccountStatus": {"account_id": account_id, "account_type": "LINKEDIN", "message": "CREDENTIALS"}}
    r = svc.http.post("/v1/webhooks/unipile/account-status", json=body,
                      headers={svc.settings.webhook_header: svc.settings.webhook_secret})
    assert r.status_code == 200, r.text
    wait_for(lambda: len(link_events(svc, lid, "attempt")) > before)


def queue_email(svc, lid: int) -> int:
    """Write the give-up email for a link the way the service does (outbox, same renderer)."""
    from cookiesync.domain.reconnect import policy
    from cookiesync.domain.reconnect.services import write_email

    async def q(conn):
        row = (await conn.execute(sa.select(links).where(links.c.id == lid))).one()
        await write_email(svc.rt, conn, row, policy.Email.GAVE_UP, row.incident_id, datetime.now(timezone.utc))
        return (await conn.execute(sa.select(sa.func.max(outbox.c.id)).where(outbox.c.link_id == lid))).scalar()

    return svc.db(q)


def start_console(tmp_path: Path, **overrides):
    settings = make_settings(tmp_path, **({"unipile_dsn": DEAD_UNIPILE, "unipile_api_key": "none",
                                           "trusted_proxies": "127.0.0.1", "sweep_interval_s": 0.5} | overrides))
    svc = start_service(settings)
    add_staff(svc, "op@example.com", "operator")
    add_staff(svc, "viewer@example.com", "viewer")
    return svc


def stop(svc) -> None:
    svc.http.close()
    svc.server.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_seq)}"


def signed_in(svc, email: str = "op@example.com", ip: str = "198.51.100.77") -> httpx.Client:
    """A client signed in to the console through its login form (from `ip`, via the trusted proxy)."""
    client = httpx.Client(base_url=svc.url, follow_redirects=False, timeout=30, headers={"X-Forwarded-For": ip})
    form = client.get("/support/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    r = client.post("/support/login", data={"email": email, "password": PASSWORD, "csrf_token": token,
                                            "next": "/support/"})
    assert r.status_code == 303, r.text
    return client
