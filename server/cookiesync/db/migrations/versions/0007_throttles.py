"""attempt throttles in the database, reserved before the check; login_failures goes

`throttles` holds one row a throttled key (pairing per address, staff sign-in per account and
address, sign-in per address): an attempt is reserved in it before the slow check, so concurrent
guesses cannot all pass a limit that is only counted after them, and every instance sees the same
counts. It replaces `login_failures` (counted after the check, locked an account from
everywhere); its rows are not carried over: a failure count restarts at zero once.

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "throttles",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("subject", sa.String(length=320), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_throttles")),
    )
    with op.batch_alter_table("throttles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_throttles_subject"), ["subject"], unique=False)
        batch_op.create_index(batch_op.f("ix_throttles_expires_at"), ["expires_at"], unique=False)
    op.drop_table("login_failures")


def downgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_failures")),
    )
    with op.batch_alter_table("throttles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_throttles_expires_at"))
        batch_op.drop_index(batch_op.f("ix_throttles_subject"))
    op.drop_table("throttles")
