"""outbox rows keep a reconnect link's claims, not its token

An email's reconnect link carries a signed token that mints a hosted-auth link for the user's
account: a live credential, which the outbox kept in plaintext in both bodies. From here on the
bodies hold the slot `/reconnect/[reconnect-token]`, the row keeps the claims (its `link_id`,
`reconnect_incident_id`, `reconnect_expires_at`), and the mailer signs them at send time.

Existing rows: each token in a body is read (its payload is base64 JSON: the claims, in the
clear; only the signature needs the secret, and it is not needed here), its claims are kept in
the new columns and the token is replaced by the slot, in every row whatever its status. A row
whose token cannot be read (not one of ours, or another link's) loses it all the same; if it was
still to be sent, it is marked failed with the reason, for staff to resend (which renders anew).

Downgrade drops the columns. The bodies keep their slots (the tokens cannot be made again
without the secret): emails still to be sent are marked failed, for a resend after the upgrade.

Revision ID: 0006
Revises: 0004
"""
import base64
import json
import re
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None

SLOT = "/reconnect/[reconnect-token]"  # = cookiesync.domain.email.outbox's, as of this revision
TOKEN = re.compile(r"/reconnect/([A-Za-z0-9_\-]+)\.([A-Za-z0-9_\-]+)")
UNREADABLE = "its reconnect link was unreadable at upgrade 0006: resend it from the console"
NEEDS_0006 = "its reconnect link needs revision 0006: resend it from the console after upgrading"
TO_SEND = ("pending", "held", "sending")

outbox = sa.table(
    "outbox", sa.column("id", sa.Integer), sa.column("link_id", sa.Integer), sa.column("status", sa.String),
    sa.column("body_text", sa.Text), sa.column("body_html", sa.Text), sa.column("last_error", sa.String),
    sa.column("reconnect_incident_id", sa.Integer),
    sa.column("reconnect_expires_at", sa.DateTime(timezone=True)),
)


def _claims(payload: str) -> dict | None:
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int) or not isinstance(claims.get("l"), int):
        return None
    if claims.get("i") is not None and not isinstance(claims["i"], int):
        return None
    return claims


def _when(exp: int, dialect: str) -> datetime:
    at = datetime.fromtimestamp(exp, tz=timezone.utc)
    return at.replace(tzinfo=None) if dialect == "sqlite" else at  # as db.schema.UTCDateTime writes it


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reconnect_incident_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reconnect_expires_at", sa.DateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.select(outbox.c.id, outbox.c.link_id, outbox.c.status, outbox.c.body_text,
                                  outbox.c.body_html).where(sa.or_(outbox.c.body_text.contains("/reconnect/"),
                                                                   outbox.c.body_html.contains("/reconnect/")))).all()
    for row in rows:
        found = TOKEN.findall(row.body_text) + TOKEN.findall(row.body_html)
        if not found:
            continue
        claims = [_claims(payload) for payload, _mac in found]
        readable = all(c is not None and c["l"] == row.link_id for c in claims) and \
            len({(c["l"], c.get("i"), c["exp"]) for c in claims}) == 1
        values = {"body_text": TOKEN.sub(SLOT, row.body_text), "body_html": TOKEN.sub(SLOT, row.body_html)}
        if readable:
            values |= {"reconnect_incident_id": claims[0].get("i"),
                       "reconnect_expires_at": _when(claims[0]["exp"], bind.dialect.name)}
        elif row.status in TO_SEND:
            values |= {"status": "failed", "last_error": UNREADABLE}
        bind.execute(outbox.update().where(outbox.c.id == row.id).values(**values))


def downgrade() -> None:
    op.execute(outbox.update().where(outbox.c.reconnect_expires_at.is_not(None), outbox.c.status.in_(TO_SEND))
               .values(status="failed", last_error=NEEDS_0006))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("reconnect_expires_at")
        batch_op.drop_column("reconnect_incident_id")
