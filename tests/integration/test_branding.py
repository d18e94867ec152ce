"""The emails and the reconnect pages speak in the integrator's name, over a real SMTP server
(aiosmtpd) and a real HTTP server: the product name, sender, support contact, app link and logo
from the settings, never "cookiesync", a name the end user has never seen; the operator's own
templates replace the built-in ones, and one that uses an unknown variable stops the start."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import sqlalchemy as sa

from cookiesync.db.schema import links, outbox
from cookiesync.domain.email.outbox import reconnect_token
from cookiesync.security import new_key_entry
from tests.support.reconnect import INTERVAL, connect_one, fast, fire
from tests.support.wait import wait_for

BRAND = dict(product_name="Acme Outreach", email_from="noreply@acme.example", support_contact="help@acme.example",
             app_url="https://app.acme.example/home", logo_url="https://cdn.acme.example/logo.png")


def _parts(msg) -> dict[str, str]:
    return {p.get_content_type(): p.get_content() for p in msg.walk() if not p.is_multipart()}


def _everything(msg) -> str:
    """Every header and every decoded part: what the user's mail client can show."""
    return "\n".join([*(f"{k}: {v}" for k, v in msg.items()), *_parts(msg).values()])


def _give_up_email(svc, simulator, smtp, user_id: str, plain_id: str):
    _, account_id = connect_one(svc, simulator, user_id, plain_id, f"AQEDAR-brand-cookie-{user_id}",
                                ["ok", "sticky:invalid_credentials"])
    fire(simulator, account_id)
    return wait_for(lambda: smtp.messages, timeout=INTERVAL * 4 + 15)[0]


def test_a_give_up_email_is_in_the_integrators_name(service_factory, simulator, smtp) -> None:
    svc = service_factory(**fast(smtp_host="127.0.0.1", smtp_port=smtp.port, **BRAND))
    msg = _give_up_email(svc, simulator, smtp, "b-1", "9201")

    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Auto-Submitted"] == "auto-generated" and "List-Unsubscribe" not in msg
    assert msg["From"] == "Acme Outreach <noreply@acme.example>"
    parts = _parts(msg)
    for body in (parts["text/plain"], parts["text/html"]):
        assert "disconnected from Acme Outreach" in body
        assert "help@acme.example" in body and "https://app.acme.example/home" in body
    assert 'href="mailto:help@acme.example"' in parts["text/html"]
    assert '<img src="https://cdn.acme.example/logo.png"' in parts["text/html"]
    assert "cookiesync" not in _everything(msg).lower()

    async def stored(conn):
        return (await conn.execute(sa.select(outbox))).one()

    row = svc.db(stored)  # both stored parts keep the link's slot, not its token
    assert row.body_text.count("/reconnect/[reconnect-token]") == 1
    assert row.body_html.count("/reconnect/[reconnect-token]") == 1


def test_an_override_folder_changes_the_email(service_factory, simulator, smtp, tmp_path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "subject.txt").write_text("[{{ product_name }}] {{ subject }}\n")
    (folder / "reconnect.txt").write_text(
        "Hi{% if name %} {{ name }}{% endif %}, {{ product_name }} lost your LinkedIn ({{ kind }}).\n"
        "Reconnect here: {{ reconnect_url }}\nHelp: {{ support_contact }}\n")
    svc = service_factory(**fast(smtp_host="127.0.0.1", smtp_port=smtp.port, email_templates_dir=str(folder),
                                 **BRAND))
    msg = _give_up_email(svc, simulator, smtp, "b-2", "9202")

    assert msg["Subject"] == "[Acme Outreach] Your LinkedIn account needs to be reconnected"
    parts = _parts(msg)
    hello, link, help_line = parts["text/plain"].splitlines()
    assert hello == "Hi Test User, Acme Outreach lost your LinkedIn (gave_up)." and help_line == "Help: help@acme.example"
    assert link.startswith(f"Reconnect here: {svc.url}/reconnect/ey")  # the token signed into the slot
    assert "Reconnect LinkedIn</a>" in parts["text/html"]  # no reconnect.html in the folder: the built-in one


def test_an_override_with_an_unknown_variable_refuses_to_start(tmp_path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    # inside a branch an unset COOKIESYNC_APP_URL never takes: the start-up render takes it anyway
    (folder / "reconnect.html").write_text("<p><a href=\"{{ reconnect_url }}\">Reconnect</a></p>\n"
                                           "{% if app_url %}\n<p>Your code: {{ coupon_code }}</p>\n{% endif %}\n")
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COOKIESYNC_")} | {
        "COOKIESYNC_MODE": "local", "COOKIESYNC_DATA_DIR": str(data), "COOKIESYNC_EMAIL_TEMPLATES_DIR": str(folder),
        "COOKIESYNC_ENCRYPTION_KEYS": new_key_entry("k1"), "COOKIESYNC_SIGNING_SECRET": "s" * 43,
        "COOKIESYNC_WEBHOOK_SECRET": "w" * 32, "COOKIESYNC_HOSTED_AUTH_SECRET": "h" * 32,
    }
    proc = subprocess.run([str(Path(sys.executable).parent / "cookiesync"), "serve"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"configuration error: COOKIESYNC_EMAIL_TEMPLATES_DIR: {folder / 'reconnect.html'}:3: "
        "UndefinedError: 'coupon_code' is undefined"]
    assert not (data / "cookiesync.db").exists()  # refused before it migrated or served


def test_the_reconnect_pages_show_the_product_name(service_factory, simulator) -> None:
    svc = service_factory(**BRAND)
    with httpx.Client(base_url=svc.url, timeout=10) as browser:
        gone = browser.get("/reconnect/not-a-token")
        assert gone.status_code == 410
        assert "<title>This reconnect link no longer works · Acme Outreach</title>" in gone.text
        assert "the browser extension of Acme Outreach" in gone.text
        assert 'href="mailto:help@acme.example"' in gone.text and 'href="https://app.acme.example/home"' in gone.text
        assert '<img src="https://cdn.acme.example/logo.png" alt="Acme Outreach">' in gone.text
        assert "cookiesync" not in gone.text.lower()

        connect_one(svc, simulator, "b-4", "9204", "AQEDAR-brand-cookie-b-4")

        async def link_id(conn):
            return (await conn.execute(sa.select(links.c.id))).scalar_one()

        token = reconnect_token(svc.rt.reconnect_signer, svc.db(link_id), None,
                                datetime.now(timezone.utc) + timedelta(hours=1))
        connected = browser.get(f"/reconnect/{token}")
        assert connected.status_code == 200 and 'id="already-connected"' in connected.text
        assert "· Acme Outreach</title>" in connected.text and "cookiesync" not in connected.text.lower()
