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


class PairIn(msgspec.Struct, forbid_unknown_fields=True):
    pairing_code: Annotated[str, text(40, min_length=1)]
    extension_version: Version


class PairOut(msgspec.Struct):
    device_token: str
    user_id: str
    next_sync_in_s: int
