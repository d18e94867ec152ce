"""A sync that races its user's erasure answers 401, as for any revoked device, not 500.

The race, made deterministic: the device is admitted from this instance's memory (its token was
seen a moment ago), while the user's rows are already gone from the database (erased by another
instance, whose `user_erased` event this one's revocation watcher has not read yet). Every cookie
the link did not have then goes to `write_alone`, whose link insert breaks the foreign key to the
user; it used to retry three times and answer 500 "could not store the sync after 3 tries"."""
from __future__ import annotations

import sqlalchemy as sa

from cookiesync.db.schema import devices, events, links, users

COOKIE = "AQEDAR-erasure-race-cookie-0001"


def erase_behind_its_back(svc, user_id: str) -> None:
    """The user's rows deleted in the database only (the cascade takes devices, links, codes)."""
    async def q(conn):
        await conn.execute(events.delete().where(events.c.user_id == user_id))
        await conn.execute(users.delete().where(users.c.user_id == user_id))

    svc.db(q)


def rows_of(svc, user_id: str) -> dict[str, int]:
    async def q(conn):
        return {t.name: (await conn.execute(sa.select(sa.func.count()).select_from(t)
                                            .where(t.c.user_id == user_id))).scalar_one()
                for t in (users, devices, links)}

    return svc.db(q)


def test_a_sync_after_its_user_was_erased_is_401(service) -> None:
    service.new_user("race-1")
    token = service.pair("race-1")
    assert service.sync(token, li_at=COOKIE, plain_id="777000111").status_code == 200
    erase_behind_its_back(service, "race-1")

    changed = service.sync(token, li_at=COOKIE + "-rotated", plain_id="777000111")  # the known link's new cookie
    assert changed.status_code == 401, changed.text
    assert "pair the extension again" in changed.json()["detail"]
    # the device is forgotten: the next sync, for a member never seen, is refused at the door
    new_member = service.sync(token, li_at=COOKIE, plain_id="777000222")
    assert new_member.status_code == 401, new_member.text
    assert rows_of(service, "race-1") == {"users": 0, "devices": 0, "links": 0}


def test_a_first_sync_for_a_new_member_after_erasure_is_401(service) -> None:
    service.new_user("race-2")
    token = service.pair("race-2")
    assert service.sync(token, li_at=COOKIE, plain_id="777000333").status_code == 200
    erase_behind_its_back(service, "race-2")

    r = service.sync(token, li_at=COOKIE, plain_id="777000444")  # a link to create, for a user gone
    assert r.status_code == 401, r.text
    assert rows_of(service, "race-2") == {"users": 0, "devices": 0, "links": 0}
