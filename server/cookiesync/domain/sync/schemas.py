"""Wire shapes of the extension API. Strict: unknown fields are refused."""
from __future__ import annotations

from typing import Annotated

import msgspec

from cookiesync.validation import text

# \Z, not $: `$` matches before a final "\n", which would make "777000111\n" a second member
Cookie = Annotated[str, msgspec.Meta(min_length=8, max_length=4096, pattern=r"^[\x21-\x7e]+\Z")]
PlainId = Annotated[str, msgspec.Meta(min_length=1, max_length=20, pattern=r"^[0-9]+\Z",
                                      description="LinkedIn member id (plainId), digits only")]
Version = Annotated[str, text(40, min_length=1)]
UserAgent = Annotated[str, text(1000, min_length=10)]


class SyncIn(msgspec.Struct, forbid_unknown_fields=True):
    li_at: Cookie
    li_a: Cookie | None
    user_agent: UserAgent
    plain_id: PlainId
    extension_version: Version


class SyncOut(msgspec.Struct):
    link_status: str
    unipile_account_id: str | None
    next_sync_in_s: int
    reconnect_url: Annotated[str | None, msgspec.Meta(description=(
        "While the link needs the user (`needs_user`, `checkpoint`) and has a Unipile account: the "
        "signed, expiring reconnect link the give-up email carries (`/reconnect/{token}`), for the "
        "extension's \"Reconnect LinkedIn\" button. Otherwise null."))] = None
    hold_reason: Annotated[str | None, msgspec.Meta(description=(
        "Why this member is stored but not connected (another LinkedIn member holds the user's "
        "COOKIESYNC_MAX_ACCOUNTS_PER_USER slot); null when it is not held."))] = None


Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}\Z",
                                     description="SHA-256 of the li_at value, 64 lowercase hex digits")]


class SignedOutIn(msgspec.Struct, forbid_unknown_fields=True):
    """The browser lost its LinkedIn session cookie: which member, and which cookie (its hash,
    never its value)."""
    plain_id: PlainId
    li_at_sha256: Sha256
    extension_version: Version


class SignedOutOut(msgspec.Struct):
    link_status: str
    recorded: Annotated[bool, msgspec.Meta(description=(
        "true when the cookie named is the link's newest (now marked signed out, or already was); "
        "false when the link has a newer cookie than the one signed out, which stays usable"))]


class PairIn(msgspec.Struct, forbid_unknown_fields=True):
    pairing_code: Annotated[str, text(40, min_length=1)]
    extension_version: Version


class PairOut(msgspec.Struct):
    device_token: str
    user_id: str
    next_sync_in_s: int
