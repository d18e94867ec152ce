"""Migration 0006 takes the reconnect tokens out of the outbox rows already written: each
token's claims go to the row's new columns and its place in both bodies becomes the slot the
mailer fills at send time, so an email still to be sent goes out with the very link it was
written with. A token that cannot be read is removed too, and its email, if still to be sent,
is marked failed for staff to resend. SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import command

from cookiesync.db.engine import alembic_config, make_engine, migrate
from cookiesync.db.schema import UTCDateTime, metadata, outbox
from cookiesync.domain.email.outbox import Mailer
from cookiesync.security import Signer
from tests.support.settings import make_settings

SECRET = "migration-test-signing-secret-0123456789"
BASE = "http://cookiesync.example"

# the outbox as revision 0004 has it
outbox_0004 = sa.table(
    "outbox", *[sa.column(c) for c in ("id", "dedupe_key", "kind", "user_id", "link_id", "to_addr", "subject",
                                       "body_text", "body_html", "message_id", "status", "attempts",
                                       "last_error")],
    sa.column("next_attempt_at", UTCDateTime), sa.column("created_at", UTCDateTime))


def bodies(url: str) -> tuple[str, str]:
    return (f"Reconnect LinkedIn: {url}\n(The link works for 7 days.)\n",
            f'<p><a href="{url}" style="color:#fff">Reconnect LinkedIn</a></p>')


def run(url: str, fn):
    async def go():
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                return await fn(conn)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_upgrade_keeps_the_claims_and_drops_every_token(tmp_path, database_url) -> None:
    signer = Signer(SECRET, "reconnect-link")
    exp = int(time.time()) + 86400
    live = signer.sign_until({"l": 7, "i": 3}, exp)
    sent = signer.sign_until({"l": 8, "i": None}, exp - 3600)
    elsewhere = signer.sign_until({"l": 99, "i": 1}, exp)  # names another link than its row's
    garbage = "bm90LWpzb24.c2lnbmF0dXJl"                   # not a token of ours
    now = datetime.now(timezone.utc)
    rows = [  # (id, link_id, status, token in both bodies)
        (1, 7, "pending", live), (2, 8, "sent", sent), (3, 9, "pending", elsewhere), (4, 10, "held", garbage),
        (5, 11, "sent", garbage), (6, 12, "pending", None)]
    migrate(database_url, "0004")

    async def fill(conn):
        for id_, link, status, token in rows:
            text, html = bodies(f"{BASE}/reconnect/{token}" if token else f"{BASE}/support/")
            await conn.execute(outbox_0004.insert().values(
                id=id_, dedupe_key=f"k{id_}", kind="gave_up", user_id="u", link_id=link, to_addr="u@example.com",
                subject="s", body_text=text, body_html=html, message_id=f"<m{id_}@example.com>", status=status,
                attempts=0, last_error=None, next_attempt_at=now, created_at=now))

    run(database_url, fill)
    migrate(database_url)

    async def everything(conn):
        dump = repr({t.name: (await conn.execute(sa.select(t))).all() for t in metadata.sorted_tables})
        return dump, {r.id: r for r in (await conn.execute(sa.select(outbox))).all()}

    dump, after = run(database_url, everything)
    for token in (live, sent, elsewhere, garbage):
        assert token not in dump and token.split(".")[1] not in dump
    slot = f"{BASE}/reconnect/[reconnect-token]"
    assert [r.id for r in after.values() if slot in r.body_text and slot in r.body_html] == [1, 2, 3, 4, 5]
    assert (after[1].reconnect_incident_id, after[1].reconnect_expires_at) == (
        3, datetime.fromtimestamp(exp, tz=timezone.utc))
    assert (after[2].reconnect_incident_id, after[2].status) == (None, "sent") and after[2].reconnect_expires_at
    assert [(after[i].status, after[i].reconnect_expires_at) for i in (3, 4, 5)] == [
        ("failed", None), ("failed", None), ("sent", None)]
    assert "unreadable at upgrade 0006" in after[3].last_error and after[5].last_error is None
    assert (after[6].status, after[6].body_text) == ("pending", bodies(f"{BASE}/support/")[0])
    # the email still to be sent goes out with the link it was written with
    settings = make_settings(tmp_path, database_url=database_url, signing_secret=SECRET)
    message = Mailer(settings, None, "test", signer)._message(after[1])
    parts = {p.get_content_type(): p.get_content() for p in message.walk() if not p.is_multipart()}
    assert f"{BASE}/reconnect/{live}\n" in parts["text/plain"] and f'href="{BASE}/reconnect/{live}"' in parts["text/html"]

    # downgrade: the columns go, and an email that could no longer be signed is not sent as it is
    command.downgrade(alembic_config(database_url), "0004")

    async def statuses(conn):
        return dict((await conn.execute(sa.select(outbox_0004.c.id, outbox_0004.c.status))).all())

    assert run(database_url, statuses) == {1: "failed", 2: "sent", 3: "failed", 4: "failed", 5: "sent", 6: "pending"}
    migrate(database_url)
