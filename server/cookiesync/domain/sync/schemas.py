"""Wire shapes of the extension API. Strict: unknown fields are refused."""
from __future__ import annotations

from typing import Annotated

import msgspec

Cookie = Annotated[str, msgspec.Meta(min_length=8, max_length=4096, pattern=r"^[\x21-\x7e]+$")]
PlainId = Annotated[str, msgspec.Meta(min_length=1, max_length=20, pattern=r"^[0-9]+$",
                                      description="LinkedIn member id (plainId), digits only")]
Version = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
UserAgent = Annotated[str, msgspec.Meta(min_length=10, max_length=1000)]


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
    pairing_code: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    extension_version: Version


class PairOut(msgspec.Struct):
    device_token: str
    user_id: str
    next_sync_in_s: int
