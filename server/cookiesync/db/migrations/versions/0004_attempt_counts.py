"""attempt counters per UTC hour, kind and outcome (the support overview's figures)

Filled from the attempt events already recorded, so an upgraded database keeps its figures.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# One row per (hour, kind, outcome) of the attempt events. The hour is written as the service
# writes a UTC datetime: SQLite 'YYYY-MM-DD HH:00:00.000000' (naive UTC text), PostgreSQL a
# timestamptz. A kind or outcome missing from an event counts as 'unknown', as the overview
# counted such rows before (in the totals, in no outcome).
BACKFILL = {
    "sqlite": "INSERT INTO attempt_counts (hour, kind, outcome, count) "
              "SELECT strftime('%Y-%m-%d %H:00:00.000000', at), "
              "coalesce(json_extract(data, '$.kind'), 'unknown'), "
              "coalesce(json_extract(data, '$.outcome'), 'unknown'), count(*) "
              "FROM events WHERE kind = 'attempt' GROUP BY 1, 2, 3",
    "postgresql": "INSERT INTO attempt_counts (hour, kind, outcome, count) "
                  "SELECT date_trunc('hour', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', "
                  "coalesce(data->>'kind', 'unknown'), coalesce(data->>'outcome', 'unknown'), count(*) "
                  "FROM events WHERE kind = 'attempt' GROUP BY 1, 2, 3",
}


def upgrade() -> None:
    op.create_table(
        "attempt_counts",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "kind", "outcome", name=op.f("pk_attempt_counts")),
    )
    op.execute(BACKFILL[op.get_bind().dialect.name])


def downgrade() -> None:
    op.drop_table("attempt_counts")
