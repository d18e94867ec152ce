"""What Unipile's answers say about the LinkedIn member, read defensively (contract §4).

`GET /accounts/{id}` (an `Account`): the display name is the top-level `name`, which the live
capture shows equal to `connection_params.im.username` (taken when `name` is missing); the public
identifier is `connection_params.im.publicIdentifier`; premium products are
`connection_params.im.premiumFeatures` ⊂ `recruiter|sales_navigator|premium`. No field is promised to
every account (the capture is one credentials account; the cookie account's shape is unconfirmed),
so a missing or oddly typed field reads as "not said" (None), never as an error, and unknown premium
values are dropped. `GET /users/me`: `object_urn` `urn:li:member:<number>`; its `public_identifier`
(a secondary source) fills the identifier when the account lacks it.

Names are what members wrote: `validation.clean_text` strips what no field may hold and bounds the
length; the pages and emails escape them.
"""
from __future__ import annotations

import re
from typing import Any

import msgspec

from cookiesync.validation import clean_text

NAME_MAX = 200
PUBLIC_ID_MAX = 100
PREMIUM_PRODUCTS = ("premium", "recruiter", "sales_navigator")
# LinkedIn's vanity names: letters, digits and hyphens; older ones and some locales carry `_`, `.`
# or percent-encoded letters
_PUBLIC_ID = re.compile(r"[A-Za-z0-9_%.-]{1,100}")
_MEMBER_URN = re.compile(r"urn:li:member:([0-9]{1,20})")


class LinkedInProfile(msgspec.Struct, frozen=True):
    """The member as Unipile describes the account; None where the answer did not say."""

    name: str | None
    public_identifier: str | None
    premium: list[str] | None  # [] says "no premium product"; None says nothing


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def public_identifier(value: Any) -> str | None:
    return value if isinstance(value, str) and _PUBLIC_ID.fullmatch(value) else None


def premium_products(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return sorted({v for v in value if isinstance(v, str) and v in PREMIUM_PRODUCTS})


def profile_of(account: Any, me: Any = None) -> LinkedInProfile:
    """The profile from `GET /accounts/{id}`'s answer, filled in from `GET /users/me`'s."""
    account, me = _dict(account), _dict(me)
    im = _dict(_dict(account.get("connection_params")).get("im"))
    name = clean_text(account.get("name"), NAME_MAX) or clean_text(im.get("username"), NAME_MAX)
    return LinkedInProfile(
        name=name,
        public_identifier=public_identifier(im.get("publicIdentifier")) or public_identifier(me.get("public_identifier")),
        premium=premium_products(im.get("premiumFeatures")),
    )


def member_of(me: Any) -> str | None:
    """The member number in `GET /users/me`'s `object_urn`, or None when it names none."""
    urn = _dict(me).get("object_urn")
    match = _MEMBER_URN.fullmatch(urn) if isinstance(urn, str) else None
    return match.group(1) if match else None
