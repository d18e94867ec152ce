"""retention: the indexes the prune keeps to, and the record of its last run

Each prune statement (db/prune.py) reads one index range, so on a large table it never scans:
- events: each link's cookie_received rows by id (partial), so "is this the link's newest
  cookie?" is one probe;
- webhook_receipts by received_at; notifications by (status, delivered_at);
- outbox: sent emails that still have their bodies, by sent_at (partial: the blanked ones drop out).
leases.last_result: what the last prune removed per table (JSON), for every instance to show.

On PostgreSQL, for a large live table, create these indexes CONCURRENTLY by hand first (the same
names); this migration then skips them (IF NOT EXISTS).

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_events_cookie_received_link_id_id":
        "ON events (link_id, id) WHERE kind = 'cookie_received'",
    "ix_webhook_receipts_received_at": "ON webhook_receipts (received_at)",
    "ix_notifications_status_delivered_at": "ON notifications (status, delivered_at)",
    "ix_outbox_sent_at_with_bodies": "ON outbox (sent_at) WHERE status = 'sent' AND body_text <> ''",
}


def upgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("last_result", sa.JSON(), nullable=True))
    for name, spec in INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} {spec}")


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("last_result")
