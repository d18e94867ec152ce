// cookiesync service worker: pairs with the backend and keeps it fed with the
// browser's LinkedIn session (li_at, li_a, user agent, member id).
//
// Logging rule: lines start with "[cookiesync]" and may say that a cookie is
// present or changed, never its value. The device token is never logged either.

import { extractPlainId, plainIdProblem } from './lib/plainid.js';
import { buildSyncPayload, buildSyncRequest, describePayload, isSyncReason, PayloadError } from './lib/payload.js';
import { heartbeatMinutes } from './lib/backoff.js';
import {
  applyOutcome, classifySyncResponse, initialStatus, pairedStatus, syncGate, unpairedStatus,
} from './lib/state.js';
import { normalizeBackendUrl, originPattern, parsePairResponse } from './lib/backend.js';
import { decideExternal, pairAnswer, statusAnswer } from './lib/external.js';
import { memberRead, remember, sha256Hex } from './lib/identity.js';
import { badgeOf, followUpDelayMs, signOutReport } from './lib/attention.js';
import { CONFIG } from './config.js';
import { ext as chrome } from './platform.js';

const VERSION = chrome.runtime.getManifest().version;
const ALARM = 'cookiesync-sync';
const LINKEDIN_URL = 'https://www.linkedin.com';
const FEED_URL = 'https://www.linkedin.com/feed/';
const WATCHED_COOKIES = new Set(['li_at', 'li_a']);
const COOKIE_DEBOUNCE_MS = 1500;
const FETCH_TIMEOUT_MS = 20_000;

function log(...parts) {
  console.log('[cookiesync]', ...parts);
}

// ---------------------------------------------------------------- storage

async function load() {
  const { status, device, alarmOverrideMinutes } = await chrome.storage.local.get(
    ['status', 'device', 'alarmOverrideMinutes'],
  );
  return {
    status: { ...initialStatus(), ...(status ?? {}) },
    device: device ?? null,
    overrideMinutes: typeof alarmOverrideMinutes === 'number' ? alarmOverrideMinutes : null,
  };
}

async function saveStatus(status) {
  await chrome.storage.local.set({ status });
  await showBadge(status);
}

/** The icon's badge follows the stored status (lib/attention.js): it clears when the link is well again. */
async function showBadge(status) {
  const badge = badgeOf(status);
  await chrome.action.setBadgeText({ text: badge.text });
  if (badge.color) await chrome.action.setBadgeBackgroundColor({ color: badge.color });
}

async function applyAlarm(alarm) {
  if (alarm === null) return;
  if (alarm === 'clear') {
    await chrome.alarms.clear(ALARM);
    return;
  }
  await chrome.alarms.create(ALARM, { when: Math.max(Date.now() + 100, alarm.when), periodInMinutes: alarm.periodInMinutes });
}

// ---------------------------------------------------------------- browser reads

async function readCookie(name) {
  const cookie = await chrome.cookies.get({ url: LINKEDIN_URL, name });
  return cookie && cookie.value ? cookie.value : null;
}

async function readPlainId() {
  let response;
  try {
    response = await fetch(FEED_URL, {
      credentials: 'include',
      cache: 'no-store',
      redirect: 'follow',
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
  } catch (err) {
    return { kind: 'linkedin_unreachable', detail: String(err?.message ?? err) };
  }
  const landed = response.url || '';
  if (/^\/(login|authwall|uas\/login)/.test(new URL(landed || FEED_URL).pathname)) {
    return { kind: 'linkedin_signed_out' };
  }
  if (!response.ok) {
    return { kind: 'linkedin_unreachable', detail: `HTTP ${response.status}` };
  }
  const html = await response.text();
  const plainId = extractPlainId(html);
  if (!plainId) return { kind: 'no_plain_id', detail: plainIdProblem(html) };
  return { plainId };
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- sync

let queue = Promise.resolve();

/** Run one sync; calls are serialised. Resolves to a plain result object (no secrets). */
function syncNow(reason = 'manual') {
  const run = queue.then(() => doSync(reason));
  queue = run.catch(() => {});
  run.then(planFollowUp, () => {});
  return run;
}

async function doSync(reason) {
  if (!isSyncReason(reason)) throw new Error(`unknown sync reason: ${reason}`);
  const now = Date.now();
  const { status, device, overrideMinutes } = await load();
  if (status.phase !== 'paired' || !device?.token) {
    return { ok: false, reason, outcome: status.phase === 'pair_again' ? 'pair_again' : 'not_paired' };
  }
  const gate = syncGate(status, reason, now);
  if (gate) {
    log(`sync (${reason}) deferred: ${gate.gate} until ${new Date(gate.retryAt).toISOString()}`);
    return { ok: false, reason, outcome: 'deferred', gate: gate.gate, retryAt: gate.retryAt };
  }

  const finish = async (outcome) => {
    const latest = await load(); // pairing may have changed while we were fetching
    if (latest.device?.token !== device.token) {
      return { ok: false, reason, outcome: 'superseded' };
    }
    const next = applyOutcome(latest.status, outcome, { now: Date.now(), reason, overrideMinutes });
    if (next.clearToken) await chrome.storage.local.remove('device');
    await saveStatus(next.status);
    await applyAlarm(next.alarm);
    return {
      ok: outcome.kind === 'ok',
      reason,
      outcome: outcome.kind,
      httpStatus: outcome.httpStatus ?? null,
      plainId: next.status.plainId,
      linkStatus: next.status.linkStatus,
      nextSyncInS: next.status.nextSyncInS,
      error: next.status.lastError?.message ?? null,
      retryAt: next.status.nextAllowedAt,
      phase: next.status.phase,
    };
  };

  const [liAt, liA] = await Promise.all([readCookie('li_at'), readCookie('li_a')]);
  const { memberMemo = null, signOutReported = null } = await chrome.storage.local.get(['memberMemo', 'signOutReported']);
  if (!liAt) {
    log(`sync (${reason}): no li_at cookie, not signed in to LinkedIn; nothing sent`);
    await reportSignedOut(device, memberMemo, signOutReported);
    return finish({ kind: 'not_logged_in', signedOut: Boolean(memberMemo?.plainId) });
  }
  // The member id is read from linkedin.com only when li_at is not the one it was read with
  // (or once a day): a quiet heartbeat costs LinkedIn nothing (lib/identity.js).
  const liAtSha256 = await sha256Hex(liAt);
  const known = memberRead(memberMemo, liAtSha256, now);
  let identity = known.read ? await readPlainId() : { plainId: known.plainId };
  if (!identity.plainId) {
    log(`sync (${reason}): ${identity.kind}${identity.detail ? ` (${identity.detail})` : ''}; nothing sent`);
    return finish(identity);
  }
  if (known.read) {
    log(`sync (${reason}): member id read from linkedin.com (${known.why})`);
    await chrome.storage.local.set({ memberMemo: remember(liAtSha256, identity.plainId, now) });
  }

  let payload;
  try {
    payload = buildSyncPayload({ liAt, liA, userAgent: navigator.userAgent, plainId: identity.plainId, version: VERSION });
  } catch (err) {
    if (err instanceof PayloadError) return finish({ kind: err.code });
    throw err;
  }
  const request = buildSyncRequest(device.baseUrl, device.token, reason, payload);
  log(`sync (${reason}): posting (${describePayload(payload)})`);

  let response;
  try {
    const res = await fetch(request.url, {
      method: request.method,
      headers: request.headers,
      body: request.body,
      credentials: 'omit',
      cache: 'no-store',
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
    response = { status: res.status, retryAfter: res.headers.get('Retry-After'), body: await readJson(res) };
  } catch (err) {
    const permissionMissing = !(await chrome.permissions.contains({ origins: [originPattern(device.baseUrl)] }));
    response = { networkError: String(err?.message ?? err) };
    const outcome = { ...classifySyncResponse(response), permissionMissing, plainId: payload.plain_id };
    log(`sync (${reason}): backend unreachable${permissionMissing ? ' (no host permission)' : ''}`);
    return finish(outcome);
  }
  const outcome = { ...classifySyncResponse(response), plainId: payload.plain_id };
  log(`sync (${reason}): HTTP ${response.status} → ${outcome.kind}`);
  return finish(outcome);
}

/**
 * li_at is gone: tell the sync server, once per cookie, which member's cookie (its SHA-256,
 * never its value) died here. Best effort: a failure is tried again at the next sync.
 */
async function reportSignedOut(device, memo, reported) {
  const body = signOutReport(memo, reported, VERSION);
  if (!body) return;
  try {
    const res = await fetch(`${device.baseUrl}/v1/extension/signed-out`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${device.token}` },
      body: JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
    // 404: the server has no link for that member (never synced): nothing to tell again
    if (res.ok || res.status === 404) await chrome.storage.local.set({ signOutReported: body.li_at_sha256 });
    log(`signed out of LinkedIn: reported for member ${body.plain_id} (HTTP ${res.status})`);
  } catch (err) {
    log(`signed out of LinkedIn: the report did not reach the server (${String(err?.message ?? err)})`);
  }
}

// After a sync that found the link still being connected, a few short follow-ups (lib/attention.js),
// so the popup learns `connected` within seconds rather than at the next heartbeat.
let followUpTimer = null;
let followUps = 0;

function planFollowUp(result) {
  clearTimeout(followUpTimer);
  followUpTimer = null;
  if (result.reason !== 'follow-up') followUps = 0;
  load().then(({ status }) => {
    const delay = result.ok ? followUpDelayMs(status, followUps) : null;
    if (delay === null) return;
    followUps += 1;
    followUpTimer = setTimeout(() => {
      followUpTimer = null;
      syncNow('follow-up').catch((err) => log('follow-up sync failed:', String(err)));
    }, delay);
  }).catch(() => {});
}

// ---------------------------------------------------------------- pairing

async function pair(baseUrlInput, pairingCode) {
  let baseUrl;
  try {
    baseUrl = normalizeBackendUrl(baseUrlInput);
  } catch (err) {
    return { ok: false, message: err.message };
  }
  const code = String(pairingCode ?? '').trim();
  if (!code) return { ok: false, message: 'Enter the pairing code.' };
  let res;
  let body;
  try {
    res = await fetch(`${baseUrl}/v1/extension/pair`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ pairing_code: code, extension_version: VERSION }),
      credentials: 'omit',
      cache: 'no-store',
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
    body = await readJson(res);
  } catch {
    const allowed = await chrome.permissions.contains({ origins: [originPattern(baseUrl)] });
    return {
      ok: false,
      message: allowed
        ? `Could not reach the sync server at ${baseUrl}. Check the address.`
        : `Could not reach ${baseUrl}: the extension was not allowed to contact it.`,
    };
  }
  const answer = parsePairResponse(res.status, body);
  if (!answer.ok) {
    log(`pairing refused: HTTP ${res.status}`);
    return answer;
  }
  const now = Date.now();
  await chrome.storage.local.set({
    device: { token: answer.token, baseUrl, userId: answer.userId, pairedAt: now },
    status: pairedStatus({ backendUrl: baseUrl, userId: answer.userId, nextSyncInS: answer.nextSyncInS, now }),
    lastBackendUrl: baseUrl,
  });
  const { overrideMinutes } = await load();
  const period = heartbeatMinutes(answer.nextSyncInS, overrideMinutes);
  await chrome.alarms.create(ALARM, { when: now + period * 60_000, periodInMinutes: period });
  log(`paired with ${new URL(baseUrl).host} as user ${answer.userId}`);
  const sync = await syncNow('manual');
  return { ok: true, userId: answer.userId, sync };
}

// Pairing can be started twice for one code: by the popup once the permission
// prompt resolves, and by permissions.onAdded (in case the popup closed while
// the prompt had the focus). Codes are single-use, so run each pairing once.
const pairings = new Map();

function pairOnce(baseUrlInput, pairingCode) {
  const key = `${baseUrlInput}|${pairingCode}`;
  if (!pairings.has(key)) {
    const run = pair(baseUrlInput, pairingCode).finally(() => chrome.storage.session.remove('pendingPair'));
    pairings.set(key, run); // kept for the worker's life: a code is never sent twice
  }
  return pairings.get(key);
}

/** Tell the backend to forget a device token (best effort): true when it did, or already had. */
async function revokeDevice(device) {
  if (!device?.token) return false;
  try {
    const res = await fetch(`${device.baseUrl}/v1/extension/device`, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${device.token}` },
      credentials: 'omit',
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
    return res.ok || res.status === 401;
  } catch {
    return false;
  }
}

async function unpair() {
  const { status, device } = await load();
  const revoked = await revokeDevice(device);
  await chrome.storage.local.remove('device');
  await saveStatus(unpairedStatus(status));
  await chrome.alarms.clear(ALARM);
  if (device?.baseUrl) {
    // Give the backend origin back; pairing again asks for it again.
    await chrome.permissions.remove({ origins: [originPattern(device.baseUrl)] }).catch(() => false);
  }
  log(`unpaired${revoked ? '' : ' (the server could not be told; the token was deleted here)'}`);
  return { ok: true, revoked };
}

// ---------------------------------------------------------------- test hooks (and devtools helpers)

/** Override the heartbeat period (minutes; unpacked builds may go below 0.5). null restores the server's. */
async function setAlarmPeriod(minutes) {
  const value = minutes === null || minutes === undefined ? null : Number(minutes);
  if (value !== null && !(value > 0)) throw new Error('setAlarmPeriod: minutes must be > 0 or null');
  if (value === null) await chrome.storage.local.remove('alarmOverrideMinutes');
  else await chrome.storage.local.set({ alarmOverrideMinutes: value });
  const { status, device, overrideMinutes } = await load();
  if (status.phase === 'paired' && device?.token) {
    const period = heartbeatMinutes(status.nextSyncInS, overrideMinutes);
    const when = status.nextAllowedAt && status.nextAllowedAt > Date.now()
      ? Math.min(status.nextAllowedAt, Date.now() + period * 60_000)
      : Date.now() + period * 60_000;
    await chrome.alarms.create(ALARM, { when, periodInMinutes: period });
  }
  return { periodInMinutes: heartbeatMinutes(status.nextSyncInS, overrideMinutes) };
}

self.syncNow = syncNow;
self.setAlarmPeriod = setAlarmPeriod;

// ---------------------------------------------------------------- events (registered synchronously, at top level)

chrome.alarms.onAlarm.addListener((alarm) => {
  if (alarm.name === ALARM) syncNow('alarm').catch((err) => log('alarm sync failed:', String(err)));
});

let cookieTimer = null;
chrome.cookies.onChanged.addListener(({ removed, cookie, cause }) => {
  if (!WATCHED_COOKIES.has(cookie.name)) return;
  const domain = cookie.domain.replace(/^\./, '');
  if (domain !== 'linkedin.com' && !domain.endsWith('.linkedin.com')) return;
  log(`cookie ${cookie.name} ${removed ? 'removed' : 'changed'} (${cause})`);
  clearTimeout(cookieTimer);
  cookieTimer = setTimeout(() => {
    cookieTimer = null;
    syncNow('cookie-change').catch((err) => log('cookie-change sync failed:', String(err)));
  }, COOKIE_DEBOUNCE_MS);
});

chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
  // Firefox: the integrator's page, relayed by bridge.js; decided by the same rules as onMessageExternal.
  if (message?.type === 'external' && sender.id === chrome.runtime.id && sender.tab) {
    return onExternal(message.message, sender, sendResponse);
  }
  // Only the extension's own pages (popup, options) may drive it.
  if (sender.id !== chrome.runtime.id || !String(sender.url ?? '').startsWith(chrome.runtime.getURL(''))) return false;
  const handlers = {
    // A build with a baked-in backend pairs with it and nothing else.
    pair: () => pairOnce(CONFIG.backendUrl ?? message.backendUrl, message.pairingCode),
    unpair: () => unpair(),
    sync: () => syncNow('manual'),
  };
  const handler = handlers[message?.type];
  if (!handler) return false;
  handler().then(sendResponse, (err) => sendResponse({ ok: false, message: String(err?.message ?? err) }));
  return true;
});

// The integrator's web page. Chrome lets only CONFIG.pairingOrigins reach this listener
// (externally_connectable); decideExternal checks the sender's origin again and never answers others.
chrome.runtime.onMessageExternal?.addListener((message, sender, sendResponse) => onExternal(message, sender, sendResponse));

function onExternal(message, sender, sendResponse) {
  const decision = decideExternal(message, sender, { ...CONFIG, ownId: chrome.runtime.id });
  if (decision.action === 'ignore') return false;
  answerExternal(decision).then(sendResponse, (err) => sendResponse({ ok: false, error: 'internal', message: String(err?.message ?? err) }));
  return true;
}

async function answerExternal(decision) {
  if (decision.action === 'reply') return decision.answer;
  if (decision.action === 'status') return statusAnswer((await load()).status, VERSION);
  // A new code replaces the pairing (another user of the integrator's app signed in here):
  // the old token is revoked once the new one is stored, so one browser holds one device.
  const before = (await load()).device;
  const result = await pairOnce(CONFIG.backendUrl, decision.code);
  if (result.ok && before?.token) await revokeDevice(before);
  log(`pairing from the web page: ${result.ok ? 'paired' : 'refused'}`);
  return pairAnswer(result, (await load()).status, VERSION);
}

chrome.permissions.onAdded.addListener(async ({ origins = [] }) => {
  const { pendingPair } = await chrome.storage.session.get('pendingPair');
  if (!pendingPair || Date.now() - pendingPair.at > 10 * 60_000) return;
  let pattern;
  try { pattern = originPattern(normalizeBackendUrl(pendingPair.backendUrl)); } catch { return; }
  if (origins.includes(pattern)) await pairOnce(pendingPair.backendUrl, pendingPair.pairingCode);
});

// Once per browser session (not once per service-worker wake-up).
(async () => {
  const { startupSyncDone } = await chrome.storage.session.get('startupSyncDone');
  if (startupSyncDone) return;
  await chrome.storage.session.set({ startupSyncDone: true });
  const { status, device, overrideMinutes } = await load();
  await showBadge(status);
  if (status.phase === 'paired' && device?.token && !(await chrome.alarms.get(ALARM))) {
    const period = heartbeatMinutes(status.nextSyncInS, overrideMinutes);
    await chrome.alarms.create(ALARM, { when: Date.now() + period * 60_000, periodInMinutes: period });
  }
  await syncNow('startup');
})().catch((err) => log('startup sync failed:', String(err)));
