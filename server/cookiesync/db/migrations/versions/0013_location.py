"""location: where Unipile places each link's session (domain/location)

- links.country, links.country_source (geoip | integrator | proxy): the link's current location,
  sent with every connect and reconnect;
- links.country_candidate, country_candidate_count, country_candidate_since: the other country the
  latest syncs came from, how many in a row, since when (the location policy's no-flap rule);
- users.country: the integrator's country for the user (PUT /v1/users/{id});
- users.proxy_*: the integrator's proxy for the user; its password only as AES-GCM ciphertext
  under a key of COOKIESYNC_ENCRYPTION_KEYS (proxy_key_id names it), like the cookies.

Revision ID: 0013
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
USER_COLUMNS = ("country", "proxy_protocol", "proxy_host", "proxy_port", "proxy_username",
                "proxy_password_ciphertext", "proxy_key_id")
LINK_COLUMNS = ("country", "country_source", "country_candidate", "country_candidate_count",
                "country_candidate_since")


def upgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.add_column(sa.Column("country", sa.String(2), nullable=True))
        batch.add_column(sa.Column("country_source", sa.String(20), nullable=True))
        batch.add_column(sa.Column("country_candidate", sa.String(2), nullable=True))
        batch.add_column(sa.Column("country_candidate_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("country_candidate_since", UTC, nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("country", sa.String(2), nullable=True))
        batch.add_column(sa.Column("proxy_protocol", sa.String(10), nullable=True))
        batch.add_column(sa.Column("proxy_host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("proxy_port", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("proxy_username", sa.String(255), nullable=True))
        batch.add_column(sa.Column("proxy_password_ciphertext", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("proxy_key_id", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        for name in reversed(USER_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("links") as batch:
        for name in reversed(LINK_COLUMNS):
            batch.drop_column(name)
