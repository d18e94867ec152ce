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
            mailer = Mailer(settings, engine, "instance-a")
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
