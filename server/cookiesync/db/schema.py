"""Tables, as SQLAlchemy Core metadata. Alembic migrations create them; this
module is what the code queries against. Same schema on SQLite and PostgreSQL.

Times are stored as timezone-aware UTC; secrets only as hashes or ciphertext.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator):
    """Always aware UTC in Python, whatever the backend keeps."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is not timezone.utc:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the database")
            value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def dialect_insert(conn, table: sa.Table):
    """The connection's own INSERT, which has ON CONFLICT (PostgreSQL and SQLite alike)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def insert_missing(conn, table: sa.Table, **values):
    """INSERT that leaves an existing row (any unique key) as it is: ON CONFLICT DO NOTHING."""
    return dialect_insert(conn, table).values(**values).on_conflict_do_nothing()


users = sa.Table(
    "users", metadata,
    sa.Column("user_id", sa.String(200), primary_key=True),
    sa.Column("email", sa.String(320)),
    sa.Column("display_name", sa.String(200)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # the integrator's location for the user's sessions (domain/location; migration 0013)
    sa.Column("country", sa.String(2)),
    sa.Column("proxy_protocol", sa.String(10)),
    sa.Column("proxy_host", sa.String(255)),
    sa.Column("proxy_port", sa.Integer),
    sa.Column("proxy_username", sa.String(255)),
    sa.Column("proxy_password_ciphertext", sa.LargeBinary),  # AES-GCM, like the cookies (security.py)
    sa.Column("proxy_key_id", sa.String(40)),
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("scopes", sa.String(200), nullable=False, server_default="integrator"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
)

pairing_codes = sa.Table(
    "pairing_codes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.String(200), sa.ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime),
)

devices = sa.Table(
    "devices", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(200), sa.ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("extension_version", sa.String(50)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime),
    sa.Column("last_ip", sa.String(64)),
    sa.Column("revoked_at", UTCDateTime),
)

links = sa.Table(
    "links", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(200), sa.ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
    sa.Column("plain_id", sa.String(40), nullable=False),
    sa.Column("state", sa.String(20), nullable=False, index=True),
    sa.Column("auto_connect", sa.Boolean, nullable=False),
    sa.Column("hold_reason", sa.String(200)),
    sa.Column("unipile_account_id", sa.String(100), index=True),
    # newest cookie, encrypted (AES-GCM, AAD = link identity)
    sa.Column("cookie_ciphertext", sa.LargeBinary),
    sa.Column("cookie_key_id", sa.String(40)),
    sa.Column("cookie_fingerprint", sa.String(64)),
    sa.Column("user_agent", sa.String(1000)),
    sa.Column("client_ip", sa.String(64)),
    sa.Column("date_last_cookie", UTCDateTime),
    # the extension reported the newest cookie gone from its browser (signed out; migration 0012);
    # cleared by the next cookie written
    sa.Column("cookie_signed_out_at", UTCDateTime),
    # incident and schedule
    sa.Column("incident_id", sa.Integer),
    sa.Column("incident_started_at", UTCDateTime),
    sa.Column("next_slot", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, index=True),
    sa.Column("attempt_trigger", sa.String(20)),
    sa.Column("attempts_in_incident", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("last_attempt_at", UTCDateTime),
    sa.Column("last_error", sa.String(200)),
    sa.Column("checkpoint_type", sa.String(40)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # the LinkedIn profile, read from Unipile after each connect (domain/profile; migration 0011):
    # user-controlled text, cleaned on the way in (validation.clean_text)
    sa.Column("linkedin_name", sa.String(200)),
    sa.Column("linkedin_public_id", sa.String(100)),
    sa.Column("linkedin_premium", sa.JSON),            # ["sales_navigator", ...]; NULL: not said
    sa.Column("profile_due_at", UTCDateTime, index=True),  # a read is due; a claim pushes it on (lease)
    sa.Column("profile_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("profile_read_at", UTCDateTime),
    sa.Column("member_check", sa.String(20)),          # match | mismatch | unverified; NULL: not yet
    sa.Column("member_seen", sa.String(40)),           # the member /users/me named, when not plain_id
    # where Unipile places the session (domain/location/policy.py; migration 0013)
    sa.Column("country", sa.String(2)),
    sa.Column("country_source", sa.String(20)),         # geoip | integrator | proxy
    sa.Column("country_candidate", sa.String(2)),       # another country the latest syncs came from
    sa.Column("country_candidate_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("country_candidate_since", UTCDateTime),
    sa.UniqueConstraint("user_id", "plain_id"),
)

incidents = sa.Table(
    "incidents", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("link_id", sa.Integer, sa.ForeignKey("links.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),  # connect | reconnect
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("closed_at", UTCDateTime),
    sa.Column("outcome", sa.String(40)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
)

events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("link_id", sa.Integer),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200)),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Index("ix_events_link_id_id", "link_id", "id"),
    sa.Index("ix_events_user_id_id", "user_id", "id"),
    sa.Index("ix_events_kind_at", "kind", "at"),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dedupe_key", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("user_id", sa.String(200), nullable=False, index=True),
    sa.Column("link_id", sa.Integer, index=True),
    sa.Column("to_addr", sa.String(320)),
    sa.Column("subject", sa.String(300), nullable=False),
    sa.Column("body_text", sa.Text, nullable=False),
    sa.Column("body_html", sa.Text, nullable=False),
    # An email with a reconnect link keeps what mints it, not the token (a live credential): the
    # bodies hold email.outbox.TOKEN_SLOT where it goes, and the mailer signs {link_id, this
    # incident, this expiry} into it at send time. NULL expiry: the email has no reconnect link.
    sa.Column("reconnect_incident_id", sa.Integer),
    sa.Column("reconnect_expires_at", UTCDateTime),
    sa.Column("message_id", sa.String(200), nullable=False, unique=True),
    sa.Column("status", sa.String(20), nullable=False, index=True),  # pending|held|sending|sent|failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("last_error", sa.String(500)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
)

# A webhook body seen again within this window is a redelivery, answered without acting twice
# (domain/webhooks/controllers.py); the retention prune keeps receipts at least this long.
DEDUPE_WINDOW = timedelta(minutes=15)

webhook_receipts = sa.Table(
    "webhook_receipts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(40), nullable=False),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Index("ix_webhook_receipts_body_hash_received_at", "body_hash", "received_at"),
)

leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("until", UTCDateTime, nullable=False),
    sa.Column("last_run_at", UTCDateTime),
    sa.Column("last_duration_ms", sa.Integer),
    # what the last run did, for the console and /metrics on every instance (the prune's: removed per
    # table, domain/retention/services.py); migration 0008
    sa.Column("last_result", sa.JSON),
)

# --- support console (migration 0002) ----------------------------------------
staff = sa.Table(
    "staff", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),  # lower-cased
    sa.Column("role", sa.String(20), nullable=False),                 # viewer | operator
    sa.Column("password_hash", sa.String(200), nullable=False),       # argon2id
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("disabled_at", UTCDateTime),
    sa.Column("last_login_at", UTCDateTime),
)

staff_sessions = sa.Table(
    "staff_sessions", metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),            # SHA-256 of the cookie value
    sa.Column("staff_id", sa.Integer, sa.ForeignKey("staff.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("ip", sa.String(64)),
    sa.Column("user_agent", sa.String(300)),
)

# Attempt throttles (domain/throttle): one row a key, e.g. "pair:<address>",
# "login:<email>|<address>", "login-from:<address>". An attempt is reserved here before it is
# checked; the statements are in db/throttle_sql.py.
throttles = sa.Table(
    "throttles", metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("subject", sa.String(320), index=True),       # the staff email it throttles (`staff unlock`)
    sa.Column("attempts", sa.Integer, nullable=False),       # reserved in this window: failures + in flight
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("next_at", UTCDateTime),                       # no attempt before this (progressive delay)
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),  # meaningless after: dropped on write
    sa.Column("version", sa.Integer, nullable=False),        # bumped by every write: the reservation's guard
)

# Indexes the console's lists and overview rely on (100k+ links, no full scans per page).
sa.Index("ix_links_updated_at_id", links.c.updated_at, links.c.id)
sa.Index("ix_links_state_updated_at_id", links.c.state, links.c.updated_at, links.c.id)
sa.Index("ix_links_plain_id", links.c.plain_id)
sa.Index("ix_users_email", users.c.email)
sa.Index("ix_incidents_closed_at", incidents.c.closed_at)
sa.Index("ix_outbox_status_id", outbox.c.status, outbox.c.id)

# --- integrator notifications (migration 0003) ------------------------------------
notifications = sa.Table(
    "notifications", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("msg_id", sa.String(60), nullable=False, unique=True),
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("user_id", sa.String(200), nullable=False, index=True),
    sa.Column("link_id", sa.Integer, index=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("last_attempt_at", UTCDateTime),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.String(300)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("delivered_at", UTCDateTime),
    sa.Index("ix_notifications_status_next_attempt_at", "status", "next_attempt_at"),
)

# --- attempt counters (migration 0004) ----------------------------------------------
# How many connect/reconnect attempts ended how, per UTC hour: the support overview's figures
# read these few rows instead of the attempt events. Bumped in the transaction that records
# the attempt's result (domain/reconnect/counters.count_attempt); at most 6 rows an hour. Anonymous
# aggregates: erasing a user's history leaves them as they are.
attempt_counts = sa.Table(
    "attempt_counts", metadata,
    sa.Column("hour", UTCDateTime, primary_key=True),        # the attempt's time, truncated to the UTC hour
    sa.Column("kind", sa.String(20), primary_key=True),      # connect | reconnect
    sa.Column("outcome", sa.String(20), primary_key=True),   # connected | failed | checkpoint
    sa.Column("count", sa.Integer, nullable=False),
)

# --- retention (migration 0008) -------------------------------------------------------
# The indexes the prune keeps to (db/prune.py), each statement one index range. The partial ones
# name their condition as a literal, and so must the statements that use them.
sa.Index("ix_events_cookie_received_link_id_id", events.c.link_id, events.c.id,
         postgresql_where=sa.text("kind = 'cookie_received'"), sqlite_where=sa.text("kind = 'cookie_received'"))
sa.Index("ix_webhook_receipts_received_at", webhook_receipts.c.received_at)
sa.Index("ix_notifications_status_delivered_at", notifications.c.status, notifications.c.delivered_at)
sa.Index("ix_outbox_sent_at_with_bodies", outbox.c.sent_at,
         postgresql_where=sa.text("status = 'sent' AND body_text <> ''"),
         sqlite_where=sa.text("status = 'sent' AND body_text <> ''"))
