"""The retention prune's SQL: every statement it runs, named and described here, and nowhere else.

Each statement touches at most `:n` rows (the batch) and runs in a transaction of its own
(domain/retention/services.py), and each reads one index range, so that on PostgreSQL none scans
a large table (tests/integration/test_retention.py runs EXPLAIN on each and finds no Seq Scan).
The same SQLAlchemy Core text serves SQLite and PostgreSQL.

| name                      | table            | what it does                                                    | index it keeps to                      |
|---------------------------|------------------|-----------------------------------------------------------------|----------------------------------------|
| `EVENT_KINDS`             | events           | the history kinds present: one probe per kind (loose index scan) | `ix_events_kind_at`                    |
| `EVENT_PAGE_END`          | events           | the `:skip`-th row of a kind older than the cut-off after the previous page: where this page ends | `ix_events_kind_at` |
| `DELETE_EVENT_PAGE`       | events           | the page's rows, but not an open incident's history             | `ix_events_kind_at`, `ix_incidents_link_id` |
| `DELETE_COOKIE_PAGE`      | events           | the same for `cookie_received`, keeping each link's newest      | ... and `ix_events_cookie_received_link_id_id` |
| `DELETE_INCIDENTS`        | incidents        | the `:n` longest-closed incidents closed before the cut-off     | `ix_incidents_closed_at`               |
| `DELETE_ATTEMPT_COUNTS`   | attempt_counts   | the `:hours` oldest hours' counters before the cut-off         | `pk_attempt_counts`                    |
| `DELETE_WEBHOOK_RECEIPTS` | webhook_receipts | the `:n` oldest receipts before the cut-off                     | `ix_webhook_receipts_received_at`      |
| `DELETE_NOTIFICATIONS`    | notifications    | the `:n` oldest delivered before the cut-off (pending, failed stay) | `ix_notifications_status_delivered_at` |
| `BLANK_EMAIL_BODIES`      | outbox           | the `:n` oldest sent emails' bodies, sent before the cut-off: `''` (the row stays) | `ix_outbox_sent_at_with_bodies` |

Events go a page at a time in (at, id) order, the page's start and end carried from one statement to
the next (a keyset): rows a rule keeps (a link's newest cookie, an open incident's history) are
stepped over once per prune, not read again by every batch. The other tables' statements take the
oldest `:n` rows that qualify (the counters: whole hours), until one removes fewer than `:n` (the
counters: none): what they skip, nothing qualifies for.

Literals, not parameters, where a partial index's condition must be recognised in the statement
(`kind = 'cookie_received'`, `status = 'sent' AND body_text <> ''`): neither SQLite nor a generic
PostgreSQL plan matches a parameter to an index's condition.
"""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from cookiesync.db.schema import attempt_counts, events, incidents, notifications, outbox, webhook_receipts

# The first page starts before any row, and the last ends at the cut-off (ids are int4 on PostgreSQL).
START = (datetime(1970, 1, 1, tzinfo=timezone.utc), 0)
LAST_ID = 2**31 - 1

_n = sa.bindparam("n", type_=sa.Integer)
_cutoff = sa.bindparam("cutoff", type_=events.c.at.type)
_kind = sa.bindparam("kind", type_=sa.String)
_after_at, _after_id = sa.bindparam("after_at", type_=events.c.at.type), sa.bindparam("after_id", type_=sa.Integer)
_end_at, _end_id = sa.bindparam("end_at", type_=events.c.at.type), sa.bindparam("end_id", type_=sa.Integer)

EVENT_KINDS = sa.text(
    "WITH RECURSIVE k(kind) AS ("
    " SELECT min(kind) FROM events"
    " UNION ALL"
    " SELECT (SELECT min(e.kind) FROM events e WHERE e.kind > k.kind) FROM k WHERE k.kind IS NOT NULL)"
    " SELECT kind FROM k WHERE kind IS NOT NULL")

e = events.c
# (at, id) > (after_at, after_id), spelled so that `at >= :after_at` bounds the index range
_after_start = sa.and_(e.at >= _after_at, sa.or_(e.at > _after_at, e.id > _after_id))
_page = sa.and_(e.kind == _kind, e.at < _cutoff, _after_start)

EVENT_PAGE_END = (sa.select(e.at, e.id).where(_page).order_by(e.at, e.id)
                  .offset(sa.bindparam("skip", type_=sa.Integer)).limit(1))

_i = incidents.alias("i")
_open_incident_history = sa.exists().where(_i.c.link_id == e.link_id, _i.c.closed_at.is_(None),
                                           _i.c.opened_at <= e.at)
_newer = events.alias("newer")
_newer_cookie = sa.exists().where(_newer.c.kind == sa.literal_column("'cookie_received'"),
                                  _newer.c.link_id == e.link_id, _newer.c.id > e.id)
_up_to_end = sa.and_(e.at <= _end_at, sa.or_(e.at < _end_at, e.id <= _end_id))

DELETE_EVENT_PAGE = events.delete().where(_page, _up_to_end, ~_open_incident_history)
DELETE_COOKIE_PAGE = events.delete().where(_page, _up_to_end, ~_open_incident_history, _newer_cookie)

class IdsFrom(sa.sql.expression.ColumnElement):
    """`column IN (select)`, which on PostgreSQL is `column = ANY(ARRAY(select))`: the ids are read
    once (an InitPlan) and looked up in the primary key. Spelled `IN (select)`, PostgreSQL may hash
    the ids and scan the whole table for them (it did, at 50,000 incidents)."""

    inherit_cache = True
    type = sa.types.NullType()

    def __init__(self, column, select) -> None:
        self.column, self.select = column, select


@compiles(IdsFrom)
def _ids_in(element, compiler, **kw):
    return f"{compiler.process(element.column, **kw)} IN ({compiler.process(element.select, **kw)})"


@compiles(IdsFrom, "postgresql")
def _ids_any(element, compiler, **kw):
    return f"{compiler.process(element.column, **kw)} = ANY(ARRAY({compiler.process(element.select, **kw)}))"


DELETE_INCIDENTS = incidents.delete().where(IdsFrom(incidents.c.id, (
    sa.select(incidents.c.id).where(incidents.c.closed_at < _cutoff).order_by(incidents.c.closed_at).limit(_n))))

# Whole hours at a time, the `:hours` oldest before the cut-off: at most 6 rows share an hour (kinds
# times outcomes), so `:hours` = batch // 6 keeps a statement within the batch.
_ac = attempt_counts.c
DELETE_ATTEMPT_COUNTS = attempt_counts.delete().where(IdsFrom(_ac.hour, (
    sa.select(_ac.hour).where(_ac.hour < _cutoff).group_by(_ac.hour).order_by(_ac.hour)
    .limit(sa.bindparam("hours", type_=sa.Integer)))))

_wr = webhook_receipts.c
DELETE_WEBHOOK_RECEIPTS = webhook_receipts.delete().where(IdsFrom(_wr.id, (
    sa.select(_wr.id).where(_wr.received_at < _cutoff).order_by(_wr.received_at).limit(_n))))

_nt = notifications.c
DELETE_NOTIFICATIONS = notifications.delete().where(IdsFrom(_nt.id, (
    sa.select(_nt.id).where(_nt.status == "delivered", _nt.delivered_at < _cutoff)
    .order_by(_nt.delivered_at).limit(_n))))

_ob = outbox.c
BLANK_EMAIL_BODIES = outbox.update().where(IdsFrom(_ob.id, (
    sa.select(_ob.id).where(_ob.status == sa.literal_column("'sent'"), _ob.body_text != sa.literal_column("''"),
                            _ob.sent_at < _cutoff).order_by(_ob.sent_at).limit(_n)))
).values(body_text="", body_html="")

# The tables a prune removes rows from, in the order it runs; the outbox's figure is bodies blanked.
TABLES = ("notifications", "outbox", "webhook_receipts", "events", "incidents", "attempt_counts")
