"""Wire shapes of the support console's JSON API (`/v1/support/…`); the HTML pages
render the very same objects."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from cookiesync.domain.retention.status import PruneStatus
from cookiesync.validation import text


class Me(msgspec.Struct):
    principal: str            # "staff:<email>" or "apikey:<name>"
    role: str                 # viewer | operator
    can_act: bool
    csrf_token: str | None    # send it back as X-CSRF-Token on POSTs (session auth only)


class WindowStats(msgspec.Struct):
    window: str               # "24h" | "7d"
    since: datetime
    attempts: int
    succeeded: int
    failed: int
    checkpoints: int
    success_rate: float | None
    reconnect_attempts: int
    reconnect_succeeded: int
    reconnect_success_rate: float | None
    give_ups: int


class HourBucket(msgspec.Struct):
    hour: datetime
    succeeded: int
    failed: int
    other: int

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.other


class SweepStatus(msgspec.Struct):
    owner: str | None
    until: datetime | None
    last_run_at: datetime | None
    last_duration_ms: int | None
    lease_live: bool
    this_instance: str
    this_instance_leads: bool


class Overview(msgspec.Struct):
    generated_at: datetime
    links_by_state: dict[str, int]
    links_total: int
    open_incidents: int
    last_24h: WindowStats
    last_7d: WindowStats
    outbox_waiting: int
    outbox_by_status: dict[str, int]
    sweep: SweepStatus
    attempts_per_hour: list[HourBucket]
    retention: PruneStatus | None = None  # the last prune and the table sizes (domain/retention)


class IncidentNow(msgspec.Struct):
    id: int | None
    started_at: datetime | None
    attempts_made: int
    attempts_planned: int     # retry_count + 1
    next_attempt_at: datetime | None


class LinkSummary(msgspec.Struct):
    id: int
    user_id: str
    email: str | None
    plain_id: str
    state: str
    unipile_account_id: str | None
    auto_connect: bool
    hold_reason: str | None
    date_last_cookie: datetime | None
    cookie_age_s: float | None
    cookie_stale: bool
    incident: IncidentNow | None
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    checkpoint_type: str | None
    created_at: datetime
    updated_at: datetime
    # the LinkedIn profile read from Unipile (domain/profile); None until a read says it
    linkedin_name: str | None = None
    linkedin_public_id: str | None = None
    linkedin_premium: list[str] | None = None
    profile_read_at: datetime | None = None
    member_check: str | None = None     # match | mismatch | unverified
    member_seen: str | None = None      # the member Unipile named, when not plain_id
    country: str | None = None          # where Unipile places the session (ISO alpha-2)
    country_source: str | None = None   # geoip | integrator | proxy


class LinkPage(msgspec.Struct):
    items: list[LinkSummary]
    limit: int
    next_cursor: str | None   # pass back as `cursor` for the next page


class UserInfo(msgspec.Struct):
    user_id: str
    email: str | None
    display_name: str | None
    created_at: datetime | None


class DeviceInfo(msgspec.Struct):
    id: str
    extension_version: str | None
    created_at: datetime
    last_seen_at: datetime | None
    last_ip: str | None
    revoked_at: datetime | None


class IncidentInfo(msgspec.Struct):
    id: int
    kind: str
    opened_at: datetime
    closed_at: datetime | None
    outcome: str | None
    attempts: int


class OutboxSummary(msgspec.Struct):
    id: int
    kind: str
    user_id: str
    link_id: int | None
    to_addr: str | None
    subject: str
    status: str
    attempts: int
    last_error: str | None
    message_id: str
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None


class OutboxPage(msgspec.Struct):
    items: list[OutboxSummary]
    limit: int
    next_cursor: str | None


class OutboxDetail(msgspec.Struct):
    email: OutboxSummary
    body_text: str            # the reconnect token in links is redacted
    body_html: str            # show it sandboxed (iframe srcdoc, no scripts) or as text, never inline


class TimelineEvent(msgspec.Struct):
    id: int
    at: datetime
    kind: str
    actor: str | None
    link_id: int | None
    summary: str
    tone: str                 # ok | bad | warn | info: for the eye only
    data: dict[str, Any]
    outbox_id: int | None = None


class NotificationSummary(msgspec.Struct):
    id: int
    msg_id: str               # the `webhook-id` the integrator receives
    event_type: str           # link.connected | link.needs_user | link.checkpoint | link.disabled
    user_id: str
    plain_id: str | None      # from the payload
    link_id: int | None
    status: str               # pending | delivered | failed
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None


class NotificationPage(msgspec.Struct):
    items: list[NotificationSummary]
    limit: int
    next_cursor: str | None   # pass back as `cursor` for the next page


class NotificationDetail(msgspec.Struct):
    notification: NotificationSummary
    payload: dict[str, Any]   # the JSON body sent (secret-sounding keys redacted)


class LinkDetail(msgspec.Struct):
    link: LinkSummary
    user: UserInfo
    cookie_fingerprint: str | None      # 12-character prefix of a keyed hash, never the cookie
    user_agent: str | None
    client_ip: str | None
    next_slot: int
    attempt_in_flight: bool
    devices: list[DeviceInfo]
    incidents: list[IncidentInfo]
    emails: list[OutboxSummary]
    other_links: list[LinkSummary]
    timeline: list[TimelineEvent]
    timeline_next_cursor: int | None    # pass back as `before` for older events
    notifications: list[NotificationSummary] = []   # the link's integrator notifications, newest 20


class ActionIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, text(5000)] | None = None


class ActionOut(msgspec.Struct):
    ok: bool
    action: str
    link_id: int | None
    changed: bool
    note: str
    state: str | None = None
    attempt_now: bool = False
    outbox_id: int | None = None
