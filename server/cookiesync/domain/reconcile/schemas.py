"""Unipile's account list as the reconciliation reads it (contract §4): only the fields it uses;
the others (names, connection params, `status_counts`) are skipped while decoding."""
from __future__ import annotations

import msgspec


class Source(msgspec.Struct, frozen=True):
    status: str
    id: str | None = None


class ListedAccount(msgspec.Struct, frozen=True):
    id: str
    sources: list[Source] = []


class AccountPage(msgspec.Struct, frozen=True):
    """One page of `GET /accounts`; `cursor` None on the last page."""
    items: list[ListedAccount]
    cursor: str | None = None
