"""profile: the LinkedIn member's name, public identifier and premium products on each link, when
they are to be read (again) from Unipile, and whether the cookie's member is the link's

- linkedin_name, linkedin_public_id, linkedin_premium (JSON list; NULL: Unipile did not say):
  read from `GET /accounts/{id}` after each connect and reconnect (domain/profile);
- profile_due_at: a read is due (set in the transaction that records the connect; pushed on by a
  reader's claim and by the retry after a failed read), profile_failures: failed reads in a row,
  profile_read_at: the last read that succeeded;
- member_check (match | mismatch | unverified) and member_seen: the member `GET /users/me`
  answered, kept when it is not the link's plain_id.

Revision ID: 0011
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.add_column(sa.Column("linkedin_name", sa.String(200), nullable=True))
        batch.add_column(sa.Column("linkedin_public_id", sa.String(100), nullable=True))
        batch.add_column(sa.Column("linkedin_premium", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("profile_due_at", UTC, nullable=True))
        batch.add_column(sa.Column("profile_failures", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("profile_read_at", UTC, nullable=True))
        batch.add_column(sa.Column("member_check", sa.String(20), nullable=True))
        batch.add_column(sa.Column("member_seen", sa.String(40), nullable=True))
    op.create_index("ix_links_profile_due_at", "links", ["profile_due_at"])


def downgrade() -> None:
    op.drop_index("ix_links_profile_due_at", table_name="links")
    with op.batch_alter_table("links") as batch:
        for name in ("member_seen", "member_check", "profile_read_at", "profile_failures", "profile_due_at",
                     "linkedin_premium", "linkedin_public_id", "linkedin_name"):
            batch.drop_column(name)
