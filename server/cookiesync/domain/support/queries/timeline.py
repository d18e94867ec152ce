"""A link's history as staff read it: each event row becomes a TimelineEvent with a one-line
summary and a tone, its data cleaned of anything secret-sounding and bounded in size."""
from __future__ import annotations

from typing import Any, Iterable

from cookiesync.domain.support import schemas as S

_SECRET_KEYS = {"li_at", "li_a", "cookie", "cookies", "token", "device_token", "password", "api_key", "secret"}


def clean(value: Any, depth: int = 0) -> Any:
    """Event data as shown to staff: nothing under a secret-sounding key, bounded size."""
    if depth > 4:
        return "…"
    if isinstance(value, dict):
        return {str(k): ("[redacted]" if str(k).lower() in _SECRET_KEYS else clean(v, depth + 1))
                for k, v in list(value.items())[:50]}
    if isinstance(value, list):
        return [clean(v, depth + 1) for v in value[:50]]
    if isinstance(value, str) and len(value) > 500:
        return value[:500] + "…"
    return value


def _fmt_ms(ms: Any) -> str:
    return f"{ms} ms" if isinstance(ms, (int, float)) else ""


def describe(kind: str, data: dict, actor: str | None) -> tuple[str, str]:
    """A one-line summary and a tone for an event."""
    d = data
    note = d.get("note") or ""
    arrow = f" ({d.get('from_state')} → {d.get('to_state')})" if d.get("from_state") != d.get("to_state") and \
        d.get("to_state") else ""
    if kind == "attempt":
        outcome = d.get("outcome")
        head = f"{d.get('kind', 'attempt')} attempt {d.get('attempt', '?')}: {outcome}"
        bits = [str(x) for x in (d.get("http_status"), d.get("error_type"), d.get("checkpoint_type")) if x]
        if bits:
            head += " — " + " ".join(bits)
        head += f" · trigger {d.get('trigger')} · {_fmt_ms(d.get('duration_ms'))}"
        tone = "ok" if outcome == "connected" else "warn" if outcome == "checkpoint" else "bad"
        return head + arrow + (f" · {note}" if note else ""), tone
    if kind == "attempt_started":
        return (f"{d.get('kind', 'attempt')} attempt {d.get('attempt', '?')} started · trigger {d.get('trigger')}"
                f" · cookie {d.get('cookie_fingerprint') or '—'}", "info")
    if kind == "cookie_received":
        return (f"cookie received · fingerprint {d.get('fingerprint')} · ip {d.get('ip')} · extension "
                f"{d.get('extension_version')}{arrow}" + (f" · {note}" if note else ""), "info")
    if kind == "webhook":
        dup = " (duplicate delivery)" if d.get("duplicate") else ""
        return f"Unipile webhook {d.get('message')}{dup}{arrow}" + (f" · {note}" if note else ""), \
            "bad" if d.get("message") in ("CREDENTIALS", "DELETED") else "info"
    if kind == "staff_action":
        action = d.get("action", "?")
        return f"staff: {action} by {actor or '?'}{arrow}" + (f" · {note}" if note else ""), "warn"
    if kind == "email_queued":
        return (f"email queued: {d.get('email_kind')}" + (" · asks to check the extension"
                                                         if d.get("stale_extension") else "")
                + ("" if d.get("to_set", True) else " · user has no email address"), "warn")
    if kind == "operator_alert":
        return f"operator alert: {d.get('reason')}", "bad"
    if kind == "signed_out":
        return f"signed out of LinkedIn in this browser · device {d.get('device_id')}", "warn"
    if kind == "device_paired":
        return f"device {d.get('device_id')} paired · extension {d.get('extension_version')} · ip {d.get('ip')}", "info"
    if kind == "device_revoked":
        return f"device {d.get('device_id')} revoked by {actor or '?'}", "warn"
    if kind == "link_created":
        return f"link created for LinkedIn member {d.get('plain_id')}" + (
            "" if d.get("auto_connect", True) else " · held: another member holds this user's slot"), "info"
    if kind == "hosted_auth":
        return f"hosted auth: {d.get('status') or d.get('message') or ''}{arrow}" + (f" · {note}" if note else ""), "ok"
    if kind == "reconnect_link_opened":
        return "the user opened the reconnect link from the email", "info"
    if kind == "profile_read":
        premium = d.get("premium")
        return (f"LinkedIn profile read · member check {d.get('member_check') or '—'}"
                + (" · name changed" if d.get("name_changed") else "")
                + (f" · premium: {', '.join(map(str, premium)) or 'none'}" if isinstance(premium, list) else ""),
                "bad" if d.get("member_check") == "mismatch" else "info")
    if kind == "profile_read_failed":
        return f"LinkedIn profile read failed: {d.get('error')}" + (f" · {note}" if note else ""), "warn"
    if kind == "member_mismatch":
        return (f"member mismatch: Unipile says the cookie is LinkedIn member {d.get('member_seen')}'s, not "
                f"{d.get('plain_id')}'s" + (" · enforced" if d.get("enforced") else " · recorded only")), "bad"
    if kind == "member_check_enforced":
        return f"member check enforced{arrow}" + (f" · {note}" if note else ""), "bad"
    if kind == "unipile_account_deleted":
        return (f"Unipile account {d.get('unipile_account_id')} "
                + ("deleted" if d.get("deleted") else f"NOT deleted ({d.get('error')})")
                + f" · {d.get('reason')}"), "warn" if d.get("deleted") else "bad"
    if kind == "location_changed":
        return (f"location {d.get('from_country') or '—'} ({d.get('from_source') or 'none'}) → "
                f"{d.get('country') or '—'} ({d.get('source') or 'none'}) · trigger {d.get('trigger')}"
                + (f" · {note}" if note else "")), "info"
    if kind == "account_restart":
        return f"asked Unipile to restart the account: {d.get('outcome')}", "info"
    return f"{kind.replace('_', ' ')}{arrow}" + (f" · {note}" if note else ""), "info"


def event(r: Any) -> S.TimelineEvent:
    """One history row (table `events`) as shown to staff."""
    data = clean(r.data if isinstance(r.data, dict) else {"value": r.data})
    summary, tone = describe(r.kind, data, r.actor)
    outbox_id = data.get("outbox_id") if isinstance(data.get("outbox_id"), int) else None
    return S.TimelineEvent(id=r.id, at=r.at, kind=r.kind, actor=r.actor, link_id=r.link_id, summary=summary,
                           tone=tone, data=data, outbox_id=outbox_id)


def timeline(rows: Iterable[Any], emails: Iterable[Any]) -> list[S.TimelineEvent]:
    """The rows as events, each "email queued" that names no outbox row pointed at the one of
    `emails` it wrote (same link, same kind, written within 5 s of the event)."""
    emails = list(emails)
    out = [event(r) for r in rows]
    for ev in out:
        if ev.kind == "email_queued" and ev.outbox_id is None:
            match = [m for m in emails if m.kind == ev.data.get("email_kind")
                     and abs((m.created_at - ev.at).total_seconds()) < 5]
            if match:
                ev.outbox_id = match[-1].id
    return out
