// Retry timing: exponential backoff with jitter, Retry-After, and the heartbeat period.

export const DEFAULT_PERIOD_S = 15 * 60;   // until the server says otherwise
export const MIN_PERIOD_S = 30;            // Chrome's floor for packed extensions
export const MAX_PERIOD_S = 24 * 3600;
export const BACKOFF_BASE_S = 30;
export const BACKOFF_CAP_S = 3600;

/** The heartbeat period in minutes for the server's next_sync_in_s (clamped), or an override. */
export function heartbeatMinutes(nextSyncInS, overrideMinutes = null) {
  if (typeof overrideMinutes === 'number' && overrideMinutes > 0) return overrideMinutes;
  const s = Number.isFinite(nextSyncInS) && nextSyncInS > 0 ? nextSyncInS : DEFAULT_PERIOD_S;
  return Math.min(MAX_PERIOD_S, Math.max(MIN_PERIOD_S, s)) / 60;
}

/**
 * Backoff parameters for a heartbeat period: first retry after at most 30 s,
 * doubling, capped at 1 h. A heartbeat shorter than that (tests, demos)
 * shrinks both so a retry never waits much longer than a few heartbeats.
 */
export function backoffParams(periodMinutes) {
  const periodS = periodMinutes * 60;
  return {
    baseS: Math.min(BACKOFF_BASE_S, periodS),
    capS: Math.min(BACKOFF_CAP_S, Math.max(periodS * 4, Math.min(BACKOFF_BASE_S, periodS))),
  };
}

/**
 * Delay in ms before the next try after `failures` consecutive failures (>= 1):
 * "equal jitter": half of min(cap, base·2^(n-1)) fixed, half random, so
 * clients that failed together spread out but never retry immediately.
 */
export function backoffDelayMs(failures, { baseS, capS }, random = Math.random) {
  const n = Math.max(1, Math.floor(failures));
  const ceiling = Math.min(capS, baseS * 2 ** Math.min(n - 1, 30));
  const r = Math.min(1, Math.max(0, random()));
  return Math.round((ceiling / 2 + (ceiling / 2) * r) * 1000);
}

/** Retry-After (delta-seconds or HTTP-date) → delay in ms, or null when absent/unreadable. */
export function parseRetryAfter(value, nowMs = Date.now()) {
  if (value === null || value === undefined) return null;
  const text = String(value).trim();
  if (text === '') return null;
  if (/^[0-9]+$/.test(text)) return Math.min(Number(text), MAX_PERIOD_S) * 1000;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return null;
  return Math.min(Math.max(0, at - nowMs), MAX_PERIOD_S * 1000);
}
