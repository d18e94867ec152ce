"""Wire shapes of the integrator API."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from cookiesync.validation import REFUSED_CHARS, TEXT_RULE, text

USER_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,200}\Z"  # \Z: `$` would take a final "\n" (a second user)
_ADDR_PART = f"[^@\\s{REFUSED_CHARS}]+"
EmailAddr = Annotated[str, msgspec.Meta(max_length=320, pattern=f"^{_ADDR_PART}@{_ADDR_PART}\\.{_ADDR_PART}\\Z",
                                        description=f"an email address ({TEXT_RULE})")]


class UserIn(msgspec.Struct, forbid_unknown_fields=True):
    email: EmailAddr | None = None
    display_name: Annotated[str, text(200)] | None = None


class UserOut(msgspec.Struct):
    user_id: str
    email: str | None
    display_name: str | None
    created_at: datetime
    updated_at: datetime


class PairingCodeOut(msgspec.Struct):
    code: str
    expires_at: datetime


class AccountOut(msgspec.Struct):
    plain_id: str
    status: str
    unipile_account_id: str | None
    date_last_cookie: datetime | None
    auto_connect: bool
    hold_reason: str | None
    last_error: str | None
    checkpoint_type: str | None
    next_attempt_at: datetime | None
    created_at: datetime


class AccountsOut(msgspec.Struct):
    items: list[AccountOut]


class EraseOut(msgspec.Struct):
    user_id: str
    links: int
    devices: int
    events: int
    unipile_accounts_deleted: list[str]
