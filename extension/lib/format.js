// Small display helpers shared by the popup and the options page (pure).

/** "3 s", "2 min", "5 h", "2 d" */
export function humanDuration(ms) {
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 60) return `${s} s`;
  const min = Math.round(s / 60);
  if (min < 60) return `${min} min`;
  const h = Math.round(min / 60);
  if (h < 48) return `${h} h`;
  return `${Math.round(h / 24)} d`;
}

/** A timestamp with a relative hint: "14:03:05 (2 min ago)" or "14:05:00 (in 30 s)". */
export function formatWhen(ms, now = Date.now(), locale = undefined) {
  if (!ms) return 'never';
  const date = new Date(ms);
  const sameDay = new Date(now).toDateString() === date.toDateString();
  const clock = sameDay
    ? date.toLocaleTimeString(locale, { hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : date.toLocaleString(locale, { dateStyle: 'medium', timeStyle: 'short' });
  const delta = ms - now;
  if (Math.abs(delta) < 1500) return `${clock} (now)`;
  return delta < 0 ? `${clock} (${humanDuration(delta)} ago)` : `${clock} (in ${humanDuration(delta)})`;
}

const LINK_STATUS_WORDS = {
  pending: 'being connected',
  connected: 'connected',
  reconnecting: 'reconnecting',
  needs_user: 'needs you to reconnect (check your email)',
  checkpoint: 'LinkedIn asks for a verification (check your email)',
  disabled: 'disabled',
};

/** The link's status in words; a held member (`holdReason`) is said to be held, not "being connected". */
export function linkStatusWords(status, holdReason = null) {
  if (!status) return 'unknown yet';
  if (status === 'pending' && holdReason) return 'held, not connected';
  return LINK_STATUS_WORDS[status] ?? status;
}
