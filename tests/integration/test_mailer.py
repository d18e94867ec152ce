"""The mailer records an email sent as soon as the SMTP server has accepted it, before QUIT:
a crash can then resend it only in the moment between the server's 250 and that commit,
and a QUIT that fails or never comes back changes nothing."""
from __future__ import annotations

import asyncio
import email
import email.policy

import msgspec
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from cookiesync.db.engine import make_engine, migrate
from cookiesync.db.schema import outbox
from cookiesync.domain.email.outbox import Mailer, enqueue
from cookiesync.security import Signer
from tests.support.servers import free_port
from tests.support.settings import make_settings


class QuitWatcher:
    """Keeps each message, and the outbox row's status at the moment QUIT arrives."""

    def __init__(self, url: str, answer_quit: bool) -> None:
        self.url, self.answer_quit = url, answer_quit
        self.messages: list = []
        self.status_at_quit: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):
        engine = make_engine(self.url)  # this server's own loop: an engine of its own
        try:
            async with engine.connect() as conn:
                self.status_at_quit.append((await conn.execute(sa.select(outbox.c.status))).scalar_one())
        finally:
            await engine.dispose()
        if not self.answer_quit:
            session.transport.abort()  # the connection drops instead of a 221
            return "221 never sent"
        return "221 Bye"


@pytest.mark.parametrize("answer_quit", [True, False], ids=["quit-answered", "quit-dropped"])
def test_an_accepted_email_is_recorded_sent_before_quit(tmp_path, database_url, answer_quit) -> None:
    watcher = QuitWatcher(database_url, answer_quit)
    port = free_port()
    controller = Controller(watcher, hostname="127.0.0.1", port=port)
    controller.start()
    settings = msgspec.structs.replace(make_settings(tmp_path), database_url=database_url,
                                       smtp_host="127.0.0.1", smtp_port=port)
    migrate(settings.database)

    async def go() -> tuple[int, int, dict]:
        engine = make_engine(settings.database)
        try:
            async with engine.begin() as conn:
                assert await enqueue(conn, dedupe_key="gave_up:link1:incident1", kind="gave_up", user_id="u-1",
                                     link_id=None, to_addr="u-1@example.com", subject="Reconnect",
                                     body_text="text", body_html="<p>html</p>", domain="example.com")
            mailer = Mailer(settings, engine, "instance-a", Signer(settings.signing_secret, "reconnect-link"))
            first = await mailer.deliver_due()
            again = await mailer.deliver_due()
            async with engine.connect() as conn:
                row = (await conn.execute(sa.select(outbox))).one()._asdict()
            return first, again, row
        finally:
            await engine.dispose()

    try:
        first, again, row = asyncio.run(go())
    finally:
        controller.stop()
    assert (first, again) == (1, 0)
    assert watcher.status_at_quit == ["sent"]
    assert row["status"] == "sent" and row["attempts"] == 1 and row["lease_until"] is None
    assert len(watcher.messages) == 1 and watcher.messages[0]["Message-ID"] == row["message_id"]


def test_a_reconnect_email_is_sent_with_a_working_link_whose_token_no_table_holds(service_factory, simulator,
                                                                                 smtp) -> None:
    """The give-up email over real SMTP: its link reconnects, and its token (a credential that
    mints a hosted-auth link for the account) is in no row of any table, before or after sending:
    the outbox keeps the link's claims and the mailer signs them into the message it sends."""
    import re

    import httpx

    from cookiesync.db.schema import metadata
    from tests.support.reconnect import INTERVAL, connect_one, fast, fire
    from tests.support.service import status_of
    from tests.support.wait import wait_for

    svc = service_factory(**fast(smtp_host="127.0.0.1", smtp_port=smtp.port))
    _, account_id = connect_one(svc, simulator, "m-1", "9101", "AQEDAR-mailer-cookie-m1",
                                ["ok", "sticky:invalid_credentials"])
    fire(simulator, account_id)
    msg = wait_for(lambda: smtp.messages, timeout=INTERVAL * 4 + 15)[0]

    async def everything(conn) -> tuple[str, list]:
        rows = {t.name: (await conn.execute(sa.select(t))).all() for t in metadata.sorted_tables}
        return repr(rows), rows["outbox"]

    wait_for(lambda: svc.db(everything)[1][0].status == "sent")
    dump, (row,) = svc.db(everything)
    text = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_content()
    html = next(p for p in msg.walk() if p.get_content_type() == "text/html").get_content()
    token = re.search(r"/reconnect/([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)", text).group(1)
    payload, mac = token.split(".")
    assert f'href="{svc.url}/reconnect/{token}"' in html
    assert token not in dump and payload not in dump and mac not in dump
    assert row.body_text.count("/reconnect/[reconnect-token]") == 1 and row.reconnect_expires_at is not None
    # a retried delivery would carry the same link: the claims sign to the same token
    again = svc.rt.mailer._message(row)
    assert token in next(p for p in again.walk() if p.get_content_type() == "text/plain").get_content()

    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        first = browser.get(f"{svc.url}/reconnect/{token}")
        assert first.status_code == 302 and first.headers["location"].startswith(simulator.url)
        done = browser.post(first.headers["location"])
        assert done.status_code in (302, 303)
    wait_for(lambda: status_of(svc, "m-1", "9101") == "connected")
