// What the extension shows its user about the link, kept pure: status in, {badge, tone,
// message, button} out. background.js puts the badge on the icon (chrome.action), the popup
// shows the sentence and the button. Both follow the stored status, so they clear by themselves
// once a sync answers `connected` again.
//
// What this will not do: open tabs, set the badge, or invent a reconnect link: the button is
// there only when the sync server gave one (`reconnect_url`), and it is that URL exactly.

export const BADGE_COLORS = Object.freeze({ bad: '#b3261e', warn: '#9a5b00' });
export const SIGNED_OUT_MESSAGE = 'You signed out of LinkedIn in this browser: sign in to LinkedIn again in this browser, '
  + 'and we reconnect you automatically.';
const RECONNECT = 'Reconnect LinkedIn';
// The states in which only the user can reconnect: what happened, and what the button does.
const NEEDS_YOU = Object.freeze({
  needs_user: { what: 'LinkedIn disconnected your account and it could not be reconnected automatically', withButton: 'reconnect it below.' },
  checkpoint: { what: 'LinkedIn asks you to confirm it is you before your account can be connected', withButton: 'continue below.' },
});

/**
 * status: the stored status (lib/state.js). Returns
 *   {badge: {text, color} | null, tone: 'bad' | 'warn' | 'info', message, button: {label, url} | null}
 * or null when there is nothing to tell.
 */
export function attention(status) {
  if (!status || status.phase !== 'paired') return null;
  const button = typeof status.reconnectUrl === 'string' && status.reconnectUrl ? { label: RECONNECT, url: status.reconnectUrl } : null;
  if (status.signedOut) {
    return { badge: { text: '!', color: BADGE_COLORS.warn }, tone: 'warn', message: SIGNED_OUT_MESSAGE, button: null };
  }
  const needs = NEEDS_YOU[status.linkStatus];
  if (needs) {
    const next = button ? needs.withButton : 'check your email.';
    return { badge: { text: '!', color: BADGE_COLORS.bad }, tone: 'bad', message: `${needs.what}: ${next}`, button };
  }
  switch (status.linkStatus) {
    case 'reconnecting':
      return { badge: null, tone: 'info', message: 'Your LinkedIn account is being reconnected; nothing to do.', button: null };
    case 'pending':
      if (status.holdReason) {
        return { badge: null, tone: 'warn', message: `This LinkedIn account is held, not connected: ${status.holdReason}.`, button: null };
      }
      return { badge: null, tone: 'info', message: 'Your LinkedIn account is being connected; this takes a few seconds.', button: null };
    default:
      return null;
  }
}

/** The badge to set: {text, color}; text '' clears it. */
export function badgeOf(status) {
  const seen = attention(status);
  return seen?.badge ?? { text: '', color: null };
}

// After a sync that found the link still being connected, ask again soon (not only at the
// server's next_sync_in_s), so the popup says `connected` within seconds of it happening.
export const FOLLOW_UP_DELAYS_MS = Object.freeze([2000, 4000, 8000, 15000, 30000]);

/** Delay before the n-th (0-based) follow-up sync, or null for none. A held member has no connect under way. */
export function followUpDelayMs(status, n) {
  if (!status || status.phase !== 'paired') return null;
  if (!['pending', 'reconnecting'].includes(status.linkStatus) || status.holdReason) return null;
  return n < FOLLOW_UP_DELAYS_MS.length ? FOLLOW_UP_DELAYS_MS[n] : null;
}

/**
 * li_at is gone from the browser: what to tell the sync server, or null. `memo` is the member
 * read with the last li_at (lib/identity.js); `reported` the hash already reported (once each).
 */
export function signOutReport(memo, reported, version) {
  if (!memo || !memo.plainId || !memo.liAtSha256 || memo.liAtSha256 === reported) return null;
  return { plain_id: memo.plainId, li_at_sha256: memo.liAtSha256, extension_version: version };
}
