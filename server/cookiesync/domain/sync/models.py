"""What the sync path passes between its parts: a leaf module, imported by the lane, the
services, the writer and the writer process alike, importing none of them.

`NewCookie` and `CookieResult` are also the writer process's wire shapes (msgpack, as
arrays): the child receives the same `NewCookie` the server queued and answers the same
`CookieResult` the server's own path answers, so nothing converts between two types."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import msgspec

from cookiesync.domain.sync.schemas import SyncIn, SyncOut
from cookiesync.security import CookieBundle, KeyRing, encrypt_cookies

# States in which the extension should come back soon (`answer`).
UNSETTLED = frozenset({"pending", "reconnecting"})


class Device(NamedTuple):
    """A paired, unrevoked extension, as its token's hash finds it."""
    id: str
    user_id: str


class DeviceGone(Exception):
    """The device's token was admitted (from memory) but the device is no longer in the database:
    revoked, or its user erased, after it was cached. The sync answers as for a revoked token."""


@dataclass
class CachedLink:
    """What an unchanged sync needs of its link, kept in memory (`Runtime.links`)."""
    link_id: int
    fingerprint: str | None
    state: str
    account_id: str | None
    incident_id: int | None     # the reconnect link's claim (`services.with_attention`)
    hold_reason: str | None     # the member is held (another holds the user's slot)


class NewCookie(msgspec.Struct, array_like=True):
    """A sync whose cookie the link did not have yet: queued for the writer."""
    device: Device
    body: SyncIn
    ip: str | None
    fingerprint: str
    now: datetime

    @property
    def key(self) -> tuple[str, str]:
        return self.device.user_id, self.body.plain_id

    def event_data(self) -> dict:
        """The history row's data: a fingerprint's prefix, never the cookie."""
        body = self.body
        return {"fingerprint": self.fingerprint[:12], "user_agent": body.user_agent, "ip": self.ip,
                "li_a_present": body.li_a is not None, "extension_version": body.extension_version,
                "device_id": self.device.id}

    def cookie_row(self, keyring: KeyRing, at) -> tuple:
        """The link's cookie columns (`db.bulk.COOKIE_COLUMNS`), the cookies encrypted and bound
        to their link; `at` as the caller stores it."""
        body = self.body
        kid, blob = encrypt_cookies(keyring, CookieBundle(body.li_at, body.li_a, body.user_agent),
                                    self.device.user_id, body.plain_id)
        return blob, kid, self.fingerprint, body.user_agent, self.ip, at


class CookieResult(NamedTuple):
    """A written new cookie: the sync's answer, whether an attempt should start now, the link,
    whether the cookie was new to it (a repeat within one batch is not), and the link's incident
    as read (for the answer's reconnect link, which only the server signs)."""
    out: SyncOut
    attempt_now: bool
    link_id: int
    changed: bool
    incident_id: int | None


def answer(sync_interval_s: int, state: str, account_id: str | None, hold_reason: str | None = None) -> SyncOut:
    """Come back soon while a connect or reconnect is under way, so the extension (and its
    user) learns the outcome, and a fresh cookie reaches an incident quickly. A held member
    stays `pending` with no connect under way: it comes back at the usual pace."""
    soon = state in UNSETTLED and hold_reason is None
    return SyncOut(state, account_id, min(60, sync_interval_s) if soon else sync_interval_s,
                   hold_reason=hold_reason)
