// The extension's state machine, kept pure: what a sync outcome does to the
// stored status, when the next try may happen, and what to tell the user.
// background.js does the I/O and persists what these functions return.

import { backoffDelayMs, backoffParams, heartbeatMinutes, parseRetryAfter } from './backoff.js';

export const PHASES = Object.freeze(['unpaired', 'paired', 'pair_again']);

export function initialStatus() {
  return {
    phase: 'unpaired',
    backendUrl: null,
    userId: null,
    pairedAt: null,
    plainId: null,
    linkStatus: null,
    unipileAccountId: null,
    nextSyncInS: null,
    lastSyncAt: null,
    lastSyncReason: null,
    lastAttemptAt: null,
    lastAttemptReason: null,
    lastError: null,
    failures: 0,
    nextAllowedAt: null,
    gate: null,
    reconnectUrl: null, // the server's reconnect link while the link needs the user (lib/attention.js)
    holdReason: null,   // why the server holds this member back
    signedOut: false,   // li_at is gone from this browser, after a member was synced
  };
}

/** Status right after a successful pairing. */
export function pairedStatus({ backendUrl, userId, nextSyncInS, now }) {
  return {
    ...initialStatus(),
    phase: 'paired',
    backendUrl,
    userId,
    pairedAt: now,
    nextSyncInS: Number.isFinite(nextSyncInS) ? nextSyncInS : null,
  };
}

/** Status after the user unpaired (keeps the backend URL to prefill the form). */
export function unpairedStatus(prev) {
  return { ...initialStatus(), backendUrl: prev?.backendUrl ?? null };
}

/**
 * Turn an HTTP answer of POST /v1/extension/sync into an outcome.
 * `response` is {status, retryAfter (header value), body (parsed JSON or null)},
 * or {networkError: message} when fetch itself failed.
 */
export function classifySyncResponse(response, now = Date.now()) {
  if (!response || response.networkError !== undefined) {
    return { kind: 'network', detail: response?.networkError ?? 'no response' };
  }
  const { status, body } = response;
  const detail = body && typeof body.detail === 'string' ? body.detail : null;
  if (status === 200) {
    const ok = body && typeof body === 'object' && typeof body.link_status === 'string'
      && Number.isFinite(body.next_sync_in_s);
    if (!ok) return { kind: 'bad_response', httpStatus: status, detail: 'unexpected answer from the server' };
    return {
      kind: 'ok',
      httpStatus: status,
      linkStatus: body.link_status,
      unipileAccountId: typeof body.unipile_account_id === 'string' ? body.unipile_account_id : null,
      nextSyncInS: body.next_sync_in_s,
      reconnectUrl: httpUrl(body.reconnect_url),
      holdReason: typeof body.hold_reason === 'string' && body.hold_reason ? body.hold_reason.slice(0, 300) : null,
    };
  }
  if (status === 401) return { kind: 'unauthorized', httpStatus: status, detail };
  if (status === 429) {
    return { kind: 'rate_limited', httpStatus: status, detail, retryAfterMs: parseRetryAfter(response.retryAfter, now) };
  }
  if (status >= 500 || status === 408) return { kind: 'server_error', httpStatus: status, detail };
  return { kind: 'rejected', httpStatus: status, detail };
}

/** An http(s) URL as given, or null: the popup opens it, so nothing else (javascript:, data:) passes. */
function httpUrl(value) {
  if (typeof value !== 'string') return null;
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch {
    return null;
  }
}

const LOCAL_KINDS = new Set(['not_logged_in', 'no_plain_id', 'linkedin_signed_out', 'linkedin_unreachable']);

/** Plain words for the popup. `status.nextAllowedAt` is shown next to it by the UI. */
export function describeOutcome(outcome, { backendUrl } = {}) {
  const server = backendUrl ? hostOf(backendUrl) : 'the sync server';
  switch (outcome.kind) {
    case 'not_logged_in':
      return 'You are not signed in to LinkedIn in this browser. Sign in at linkedin.com; nothing was sent.';
    case 'linkedin_signed_out':
      return 'LinkedIn sent this browser to its sign-in page: your LinkedIn session has ended. Sign in again at linkedin.com; nothing was sent.';
    case 'no_plain_id':
      return outcome.detail === 'ambiguous'
        ? 'LinkedIn\'s page named more than one member, so the extension could not tell which account is yours. Nothing was sent.'
        : 'Could not find your LinkedIn member id on linkedin.com/feed. Open LinkedIn and check that you are signed in; nothing was sent.';
    case 'linkedin_unreachable':
      return 'Could not reach linkedin.com. Check your connection; nothing was sent.';
    case 'network':
      return outcome.permissionMissing
        ? `The extension is no longer allowed to contact ${server}. Unpair and pair again to grant access.`
        : `Could not reach the sync server (${server}). It will retry automatically.`;
    case 'server_error':
      return `The sync server (${server}) had a problem (HTTP ${outcome.httpStatus}). It will retry automatically.`;
    case 'bad_response':
      return `The sync server (${server}) gave an answer the extension did not understand. It will retry automatically.`;
    case 'rate_limited':
      return `The sync server asked the extension to slow down (HTTP 429). It will try again later.`;
    case 'rejected':
      return `The sync server refused the data (HTTP ${outcome.httpStatus}${outcome.detail ? `: ${outcome.detail}` : ''}).`;
    case 'unauthorized':
      return `This browser is no longer paired: ${server} refused its token. Pair again with a new pairing code.`;
    default:
      return outcome.detail || 'Something went wrong.';
  }
}

function hostOf(url) {
  try { return new URL(url).host; } catch { return url; }
}

/**
 * May a sync with this reason run now? null when yes; otherwise {retryAt, gate}.
 * A manual sync skips the error backoff (the user asked), never a Retry-After.
 */
export function syncGate(status, reason, now) {
  if (!status || status.phase !== 'paired') return { gate: 'not_paired', retryAt: null };
  if (!status.nextAllowedAt || now >= status.nextAllowedAt - 500) return null;
  if (reason === 'manual' && status.gate !== 'rate_limit') return null;
  return { gate: status.gate ?? 'backoff', retryAt: status.nextAllowedAt };
}

/**
 * Apply an outcome to the stored status.
 * Returns {status, alarm, clearToken}:
 *   alarm: null (leave the alarm as it is), 'clear', or {when, periodInMinutes}.
 */
export function applyOutcome(prev, outcome, { now, reason, overrideMinutes = null, random = Math.random }) {
  // The member seen in the browser is worth showing even when the server did not answer.
  // Signed out: li_at is gone (not_logged_in) after a member was synced here; any other outcome had li_at.
  const status = {
    ...prev,
    lastAttemptAt: now,
    lastAttemptReason: reason,
    plainId: outcome.plainId ?? prev.plainId,
    signedOut: outcome.kind === 'not_logged_in' ? Boolean(outcome.signedOut) : false,
  };
  const period = heartbeatMinutes(outcome.kind === 'ok' ? outcome.nextSyncInS : prev.nextSyncInS, overrideMinutes);
  const error = (o) => ({
    code: o.kind,
    message: describeOutcome(o, { backendUrl: prev.backendUrl }),
    httpStatus: o.httpStatus ?? null,
    at: now,
  });

  if (LOCAL_KINDS.has(outcome.kind)) {
    // Nothing reached the server: keep the heartbeat as it is, and the backoff too.
    return { status: { ...status, lastError: error(outcome) }, alarm: null, clearToken: false };
  }
  switch (outcome.kind) {
    case 'ok':
      return {
        status: {
          ...status,
          linkStatus: outcome.linkStatus,
          unipileAccountId: outcome.unipileAccountId,
          nextSyncInS: outcome.nextSyncInS,
          reconnectUrl: outcome.reconnectUrl ?? null,
          holdReason: outcome.holdReason ?? null,
          lastSyncAt: now,
          lastSyncReason: reason,
          lastError: null,
          failures: 0,
          nextAllowedAt: null,
          gate: null,
        },
        alarm: { when: now + period * 60_000, periodInMinutes: period },
        clearToken: false,
      };
    case 'unauthorized':
      return {
        status: {
          ...status,
          phase: 'pair_again',
          lastError: error(outcome),
          failures: 0,
          nextAllowedAt: null,
          gate: null,
        },
        alarm: 'clear',
        clearToken: true,
      };
    case 'rate_limited': {
      const failures = prev.failures + 1;
      const waitMs = outcome.retryAfterMs ?? backoffDelayMs(failures, backoffParams(period), random);
      const nextAllowedAt = now + waitMs;
      return {
        status: { ...status, lastError: error(outcome), failures, nextAllowedAt, gate: 'rate_limit' },
        alarm: { when: nextAllowedAt, periodInMinutes: period },
        clearToken: false,
      };
    }
    case 'network':
    case 'server_error':
    case 'bad_response': {
      const failures = prev.failures + 1;
      const nextAllowedAt = now + backoffDelayMs(failures, backoffParams(period), random);
      return {
        status: { ...status, lastError: error(outcome), failures, nextAllowedAt, gate: 'backoff' },
        alarm: { when: nextAllowedAt, periodInMinutes: period },
        clearToken: false,
      };
    }
    case 'rejected':
    default:
      // The server understood and said no: retrying sooner will not help.
      return {
        status: { ...status, lastError: error(outcome), failures: 0, nextAllowedAt: null, gate: null },
        alarm: { when: now + period * 60_000, periodInMinutes: period },
        clearToken: false,
      };
  }
}

/** What the popup shows as the headline. */
export function headline(status) {
  if (!status || status.phase === 'unpaired') return { tone: 'idle', text: 'Not paired' };
  if (status.phase === 'pair_again') return { tone: 'bad', text: 'Pair again' };
  if (status.signedOut) return { tone: 'warn', text: 'Signed out of LinkedIn' };
  // synced, but only the user can reconnect: not a green "synced" (lib/attention.js says what to do)
  if (['needs_user', 'checkpoint'].includes(status.linkStatus) && !status.lastError) return { tone: 'bad', text: 'Needs you' };
  if (status.lastError && LOCAL_KINDS.has(status.lastError.code)) return { tone: 'warn', text: 'Paired — nothing sent' };
  if (status.lastError) return { tone: 'warn', text: 'Paired — last sync failed' };
  if (status.lastSyncAt) return { tone: 'good', text: 'Paired and synced' };
  return { tone: 'idle', text: 'Paired — not synced yet' };
}
