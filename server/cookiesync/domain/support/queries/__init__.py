"""Read side of the support console, a module a page: `overview`, `links` (the list and one
link's whole story), `outbox`, `notifications`. `timeline` renders history events for staff;
`paging` is the keyset pagination every list uses. Every query walks an index (see migration
0002); the overview's attempt figures come from hourly counters (migration 0004), not the history."""
from cookiesync.domain.support.queries import links, notifications, outbox, overview, paging, timeline
from cookiesync.domain.support.queries.paging import BadQuery, ListQuery

__all__ = ["BadQuery", "ListQuery", "links", "notifications", "outbox", "overview", "paging", "timeline"]
