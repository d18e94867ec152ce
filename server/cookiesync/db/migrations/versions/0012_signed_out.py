"""signed out: when the browser extension reported that LinkedIn's session cookie is gone

- cookie_signed_out_at: set by `POST /v1/extension/signed-out` when the browser the link's newest
  cookie came from no longer has it (the user signed out of LinkedIn there, or LinkedIn ended the
  session): that cookie is dead. Cleared by the next cookie written to the link. The give-up email
  and the extension then tell the user to sign in to LinkedIn again in that browser.

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.add_column(sa.Column("cookie_signed_out_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.drop_column("cookie_signed_out_at")
