"""The profile policy, table-driven: every (member check, event) pair, with the member check
recorded and enforced; and what Unipile's answers are read as."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cookiesync.domain.profile import policy as p
from cookiesync.domain.profile.policy import Check
from cookiesync.domain.profile.schemas import member_of, profile_of
from cookiesync.domain.reconnect.policy import Failure

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
BASE = timedelta(seconds=30)
OWN, OTHER, THIRD = "5151", "6262", "7373"

EVENTS = {
    "connected": p.Connected(),
    "read-own": p.Read(OWN),
    "read-other": p.Read(OTHER),
    "read-third": p.Read(THIRD),
    "read-none": p.Read(None),
    **{f"failed-{f.value}": p.ReadFailed(f) for f in Failure},
}


def start(check: Check) -> p.Profile:
    return p.Profile(plain_id=OWN, check=check, member_seen=OTHER if check is Check.MISMATCH else None,
                     failures=2, due_at=NOW)


# (check before, event) -> (check after, mismatch row, alert, due: "now" | "retry" | None)
# with enforcement off; enforcement adds `disable` (and an alert) to every mismatch row
R = "retry"
TABLE = {
    **{(c, "connected"): (c, False, False, "now") for c in Check},
    **{(c, "read-own"): (Check.MATCH, False, False, None) for c in Check},
    **{(c, "read-none"): (Check.UNVERIFIED, False, False, None) for c in Check},
    # a new mismatch alerts; the same member seen again is recorded without a second alert
    (Check.UNCHECKED, "read-other"): (Check.MISMATCH, True, True, None),
    (Check.MATCH, "read-other"): (Check.MISMATCH, True, True, None),
    (Check.UNVERIFIED, "read-other"): (Check.MISMATCH, True, True, None),
    (Check.MISMATCH, "read-other"): (Check.MISMATCH, True, False, None),
    **{(c, "read-third"): (Check.MISMATCH, True, True, None) for c in Check},
    # a failed read keeps the check; the account's own refusal waits for its reconnect
    **{(c, f"failed-{f.value}"): (c, False, False, None if f is Failure.NEEDS_USER else R)
       for c in Check for f in Failure},
}


def test_the_table_covers_every_pair() -> None:
    assert set(TABLE) == {(c, e) for c in Check for e in EVENTS}


@pytest.mark.parametrize("enforce", [False, True], ids=["record", "enforce"])
@pytest.mark.parametrize("check", list(Check))
@pytest.mark.parametrize("name", list(EVENTS))
def test_every_check_event_pair(check: Check, name: str, enforce: bool) -> None:
    d = p.decide(start(check), EVENTS[name], NOW, p.Config(retry_base=BASE, enforce=enforce))
    want_check, want_mismatch, want_alert, want_due = TABLE[check, name]
    assert d.profile.check is want_check, d.note
    assert d.mismatch is want_mismatch
    assert d.disable is (enforce and want_mismatch)
    assert (d.alert is not None) is (want_alert or (enforce and want_mismatch))
    if want_due == "now":
        assert d.profile.due_at == NOW and d.profile.failures == 0
    elif want_due == R:
        assert d.profile.due_at == NOW + BASE * p.RETRY_FACTOR ** 2 and d.profile.failures == 3
    else:
        assert d.profile.due_at is None
    if name.startswith("read-"):
        assert d.profile.failures == 0
        assert d.profile.member_seen == (EVENTS[name].member if want_check is Check.MISMATCH else None)
    assert d.profile.plain_id == OWN and d.note


def test_failed_reads_back_off_to_the_cap_and_stop_after_max_failures() -> None:
    cfg = p.Config(retry_base=timedelta(minutes=10))
    prof, waits = p.Profile(plain_id=OWN), []
    while True:
        d = p.decide(prof, p.ReadFailed(Failure.TRANSIENT), NOW, cfg)
        prof = d.profile
        if prof.due_at is None:
            break
        waits.append(prof.due_at - NOW)
    assert waits[:3] == [timedelta(minutes=10), timedelta(minutes=40), timedelta(minutes=160)]
    assert max(waits) == p.RETRY_MAX and len(waits) == p.MAX_FAILURES - 1
    assert prof.failures == p.MAX_FAILURES
    # the next connect asks again, from the start
    again = p.decide(prof, p.Connected(), NOW, cfg).profile
    assert again.due_at == NOW and again.failures == 0


ACCOUNT = {"object": "Account", "type": "LINKEDIN", "id": "fFl27we2Rqa0eSbwIKX9hw", "name": "Jose Corral",
           "sources": [{"id": "x_MESSAGING", "status": "OK"}],
           "connection_params": {"im": {"id": "ACoAAAcdhtIB", "publicIdentifier": "jcleira", "username": "Jose Corral",
                                        "premiumId": None, "premiumFeatures": ["sales_navigator", "premium"],
                                        "premiumContractId": None}}}


def test_the_live_capture_reads_as_its_member() -> None:
    prof = profile_of(ACCOUNT)
    assert (prof.name, prof.public_identifier, prof.premium) == ("Jose Corral", "jcleira", ["premium", "sales_navigator"])


@pytest.mark.parametrize(("account", "me", "want"), [
    ({}, {}, (None, None, None)),                                       # nothing said
    ({"name": 7, "connection_params": []}, None, (None, None, None)),   # odd types are "not said"
    ({"connection_params": {"im": {"username": "Ann Bo", "premiumFeatures": []}}}, {}, ("Ann Bo", None, [])),
    ({"name": "  Jane\u202e \x00Doe\n"}, {"public_identifier": "jane-doe-1"}, ("Jane Doe", "jane-doe-1", None)),
    ({"name": "x" * 500}, {}, ("x" * 200, None, None)),                 # bounded
    ({"connection_params": {"im": {"publicIdentifier": "<script>", "premiumFeatures": ["gold", "recruiter", 3]}}},
     {}, (None, None, ["recruiter"])),                                  # not a vanity name; unknown products dropped
])
def test_answers_are_read_defensively(account, me, want) -> None:
    prof = profile_of(account, me)
    assert (prof.name, prof.public_identifier, prof.premium) == want


@pytest.mark.parametrize(("me", "want"), [
    ({"object_urn": "urn:li:member:5151"}, "5151"),
    ({"object_urn": "urn:li:member:5151\n"}, None),
    ({"object_urn": "urn:li:fsd_profile:ACoAA"}, None),
    ({"object_urn": 5151}, None),
    ({}, None),
    ("not an object", None),
])
def test_the_member_is_the_number_in_object_urn(me, want) -> None:
    assert member_of(me) == want
