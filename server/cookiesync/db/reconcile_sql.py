"""The reconciliation pass's SQL (domain/reconcile/services.py): every statement it runs, named and
described here, and nowhere else. SQLAlchemy Core, the same on SQLite and PostgreSQL.

| name                | what it does                                                                  | index it keeps to            |
|---------------------|-------------------------------------------------------------------------------|------------------------------|
| `LINKS_OF_ACCOUNTS` | the links of one listing page's accounts (`:ids`, up to 250): one IN per page | `ix_links_unipile_account_id` |
| `LINKED_AFTER`      | the next `:n` links with an account and not disabled after link `:after`: the keyset scan for accounts the listing missed | `links` primary key |
| `to_apply(postgres)`| the links `:ids` not changed since `:as_of` (the listing's read), locked in id order on PostgreSQL as every batch that updates links locks them | `links` primary key |

A link changed after the listing page that showed its account was read (`updated_at` later) is
left alone: its state is newer than what the listing says.
"""
from __future__ import annotations

import sqlalchemy as sa

from cookiesync.db.schema import UTCDateTime, links

_ids = sa.bindparam("ids", expanding=True)
_as_of = sa.bindparam("as_of", type_=UTCDateTime)
_linked = sa.and_(links.c.unipile_account_id.is_not(None), links.c.state != "disabled")

LINKS_OF_ACCOUNTS = sa.select(links).where(links.c.unipile_account_id.in_(_ids), links.c.state != "disabled")

LINKED_AFTER = (sa.select(links.c.id, links.c.unipile_account_id, links.c.state, links.c.updated_at)
                .where(links.c.id > sa.bindparam("after", type_=sa.Integer), _linked)
                .order_by(links.c.id).limit(sa.bindparam("n", type_=sa.Integer)))


def to_apply(postgres: bool) -> sa.Select:
    stmt = sa.select(links).where(links.c.id.in_(_ids), links.c.updated_at <= _as_of, _linked).order_by(links.c.id)
    return stmt.with_for_update() if postgres else stmt
