import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyOutcome, classifySyncResponse, describeOutcome, headline, initialStatus, pairedStatus, syncGate, unpairedStatus,
} from '../lib/state.js';

const NOW = 1_700_000_000_000;
const paired = () => pairedStatus({ backendUrl: 'https://sync.example.com', userId: 'u1', nextSyncInS: 900, now: NOW - 1000 });
const half = () => 0.5;

test('classifies the answers of the sync endpoint', () => {
  const ok = classifySyncResponse({ status: 200, body: { link_status: 'connected', unipile_account_id: 'acc', next_sync_in_s: 600 } });
  assert.deepEqual(ok, { kind: 'ok', httpStatus: 200, linkStatus: 'connected', unipileAccountId: 'acc', nextSyncInS: 600,
    reconnectUrl: null, holdReason: null });
  const attention = classifySyncResponse({ status: 200, body: { link_status: 'needs_user', unipile_account_id: 'acc', next_sync_in_s: 900,
    reconnect_url: 'https://sync.example.com/reconnect/abc.def', hold_reason: null } });
  assert.equal(attention.reconnectUrl, 'https://sync.example.com/reconnect/abc.def');
  for (const bad of ['javascript:alert(1)', 'data:text/html,x', 'not a url', 42]) {
    const answer = classifySyncResponse({ status: 200, body: { link_status: 'needs_user', unipile_account_id: 'acc', next_sync_in_s: 900, reconnect_url: bad } });
    assert.equal(answer.reconnectUrl, null, `${bad} must never become the button's link`);
  }
  const held = classifySyncResponse({ status: 200, body: { link_status: 'pending', unipile_account_id: null, next_sync_in_s: 900, hold_reason: 'another one' } });
  assert.equal(held.holdReason, 'another one');
  assert.equal(classifySyncResponse({ status: 200, body: { link_status: 'pending', unipile_account_id: null, next_sync_in_s: 1 } }).unipileAccountId, null);
  assert.equal(classifySyncResponse({ status: 200, body: null }).kind, 'bad_response');
  assert.equal(classifySyncResponse({ status: 200, body: { link_status: 'x' } }).kind, 'bad_response');
  assert.equal(classifySyncResponse({ status: 401, body: { status_code: 401, detail: 'revoked' } }).kind, 'unauthorized');
  const limited = classifySyncResponse({ status: 429, retryAfter: '7', body: null });
  assert.equal(limited.kind, 'rate_limited');
  assert.equal(limited.retryAfterMs, 7000);
  for (const s of [500, 502, 503, 504, 408]) assert.equal(classifySyncResponse({ status: s, body: null }).kind, 'server_error');
  const rejected = classifySyncResponse({ status: 400, body: { status_code: 400, detail: 'li_at: too short' } });
  assert.deepEqual([rejected.kind, rejected.detail], ['rejected', 'li_at: too short']);
  assert.equal(classifySyncResponse({ networkError: 'Failed to fetch' }).kind, 'network');
  assert.equal(classifySyncResponse(undefined).kind, 'network');
});

test('success: record it, reset the backoff, heartbeat at the server\'s cadence', () => {
  const prev = { ...paired(), failures: 3, nextAllowedAt: NOW + 5000, gate: 'backoff', lastError: { code: 'network' } };
  const { status, alarm, clearToken } = applyOutcome(prev, {
    kind: 'ok', linkStatus: 'connected', unipileAccountId: 'acc', nextSyncInS: 600, plainId: '42',
  }, { now: NOW, reason: 'alarm', random: half });
  assert.equal(clearToken, false);
  assert.deepEqual(alarm, { when: NOW + 600_000, periodInMinutes: 10 });
  assert.equal(status.phase, 'paired');
  assert.equal(status.plainId, '42');
  assert.equal(status.lastSyncAt, NOW);
  assert.equal(status.lastSyncReason, 'alarm');
  assert.equal(status.lastError, null);
  assert.equal(status.failures, 0);
  assert.equal(status.nextAllowedAt, null);
  assert.equal(status.linkStatus, 'connected');
});

test('the heartbeat override (tests) drives the alarm period', () => {
  const { alarm } = applyOutcome(paired(), { kind: 'ok', linkStatus: 'connected', nextSyncInS: 900 },
    { now: NOW, reason: 'manual', overrideMinutes: 0.05 });
  assert.deepEqual(alarm, { when: NOW + 3000, periodInMinutes: 0.05 });
});

test('server down or 5xx: exponential backoff, the alarm set to the next allowed time', () => {
  let status = paired();
  const delays = [];
  for (let i = 1; i <= 9; i += 1) {
    const kind = i % 2 ? 'network' : 'server_error';
    const r = applyOutcome(status, { kind, httpStatus: kind === 'server_error' ? 503 : undefined }, { now: NOW, reason: 'alarm', random: () => 1 });
    status = r.status;
    assert.equal(status.failures, i);
    assert.equal(status.gate, 'backoff');
    assert.equal(r.alarm.when, status.nextAllowedAt);
    assert.equal(r.alarm.periodInMinutes, 15);
    assert.equal(r.clearToken, false);
    delays.push(status.nextAllowedAt - NOW);
  }
  assert.deepEqual(delays, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600].map((s) => s * 1000));
  assert.match(status.lastError.message, /It will retry automatically/);
  assert.equal(status.lastSyncAt, null, 'a failure is not a successful sync');
  const seen = applyOutcome(paired(), { kind: 'server_error', httpStatus: 500, plainId: '77' }, { now: NOW, reason: 'alarm' });
  assert.equal(seen.status.plainId, '77', 'the member seen is kept even when the server failed');
});

test('429 honours Retry-After, and without it falls back to the backoff', () => {
  const r = applyOutcome(paired(), { kind: 'rate_limited', httpStatus: 429, retryAfterMs: 42_000 }, { now: NOW, reason: 'manual', random: half });
  assert.equal(r.status.nextAllowedAt, NOW + 42_000);
  assert.equal(r.status.gate, 'rate_limit');
  assert.equal(r.alarm.when, NOW + 42_000);
  const r2 = applyOutcome(paired(), { kind: 'rate_limited', httpStatus: 429, retryAfterMs: null }, { now: NOW, reason: 'manual', random: () => 1 });
  assert.equal(r2.status.nextAllowedAt, NOW + 30_000);
});

test('401: stop syncing, drop the token, ask to pair again', () => {
  const r = applyOutcome({ ...paired(), failures: 2, nextAllowedAt: NOW + 1 }, { kind: 'unauthorized', httpStatus: 401 }, { now: NOW, reason: 'alarm' });
  assert.equal(r.clearToken, true);
  assert.equal(r.alarm, 'clear');
  assert.equal(r.status.phase, 'pair_again');
  assert.equal(r.status.failures, 0);
  assert.match(r.status.lastError.message, /Pair again/);
  assert.equal(headline(r.status).text, 'Pair again');
});

test('local problems (not signed in, no member id) send nothing and leave the schedule alone', () => {
  for (const kind of ['not_logged_in', 'no_plain_id', 'linkedin_signed_out', 'linkedin_unreachable']) {
    const prev = { ...paired(), failures: 1, nextAllowedAt: NOW + 9 };
    const r = applyOutcome(prev, { kind }, { now: NOW, reason: 'cookie-change' });
    assert.equal(r.alarm, null, kind);
    assert.equal(r.clearToken, false);
    assert.equal(r.status.failures, 1);
    assert.equal(r.status.nextAllowedAt, NOW + 9);
    assert.equal(r.status.lastError.code, kind);
    assert.match(r.status.lastError.message, /nothing was sent/i);
  }
});

test('4xx refusals are shown and not retried faster than the heartbeat', () => {
  const r = applyOutcome(paired(), { kind: 'rejected', httpStatus: 422, detail: 'plain_id: expected digits' }, { now: NOW, reason: 'manual' });
  assert.equal(r.status.failures, 0);
  assert.deepEqual(r.alarm, { when: NOW + 900_000, periodInMinutes: 15 });
  assert.match(r.status.lastError.message, /HTTP 422: plain_id: expected digits/);
});

test('gate: backoff defers automatic syncs, a manual one goes through; Retry-After defers all', () => {
  const backoff = { ...paired(), nextAllowedAt: NOW + 10_000, gate: 'backoff' };
  assert.deepEqual(syncGate(backoff, 'alarm', NOW), { gate: 'backoff', retryAt: NOW + 10_000 });
  assert.deepEqual(syncGate(backoff, 'cookie-change', NOW), { gate: 'backoff', retryAt: NOW + 10_000 });
  assert.equal(syncGate(backoff, 'manual', NOW), null);
  assert.equal(syncGate(backoff, 'alarm', NOW + 10_000), null);
  assert.equal(syncGate(backoff, 'alarm', NOW + 9_600), null, 'an alarm firing a little early is fine');
  const limited = { ...backoff, gate: 'rate_limit' };
  assert.deepEqual(syncGate(limited, 'manual', NOW), { gate: 'rate_limit', retryAt: NOW + 10_000 });
  assert.equal(syncGate(paired(), 'startup', NOW), null);
  assert.equal(syncGate(initialStatus(), 'manual', NOW).gate, 'not_paired');
  assert.equal(syncGate({ ...paired(), phase: 'pair_again' }, 'manual', NOW).gate, 'not_paired');
});

test('unpairing keeps only the backend URL', () => {
  const st = unpairedStatus({ ...paired(), plainId: '1', lastSyncAt: NOW });
  assert.deepEqual(st, { ...initialStatus(), backendUrl: 'https://sync.example.com' });
});

test('headlines', () => {
  assert.equal(headline(initialStatus()).text, 'Not paired');
  assert.equal(headline(paired()).text, 'Paired — not synced yet');
  assert.equal(headline({ ...paired(), lastSyncAt: NOW }).text, 'Paired and synced');
  assert.deepEqual(headline({ ...paired(), lastSyncAt: NOW, lastError: { code: 'network' } }), { tone: 'warn', text: 'Paired — last sync failed' });
  assert.deepEqual(headline({ ...paired(), lastError: { code: 'not_logged_in' } }), { tone: 'warn', text: 'Paired — nothing sent' });
  assert.equal(headline(undefined).text, 'Not paired');
  assert.deepEqual(headline({ ...paired(), lastSyncAt: NOW, linkStatus: 'needs_user' }), { tone: 'bad', text: 'Needs you' });
  assert.deepEqual(headline({ ...paired(), lastSyncAt: NOW, linkStatus: 'checkpoint' }), { tone: 'bad', text: 'Needs you' });
  assert.deepEqual(headline({ ...paired(), lastError: { code: 'not_logged_in' }, signedOut: true }), { tone: 'warn', text: 'Signed out of LinkedIn' });
});

test('messages are plain words and name the server', () => {
  assert.match(describeOutcome({ kind: 'network' }, { backendUrl: 'https://sync.example.com:8443/x' }), /sync\.example\.com:8443/);
  assert.match(describeOutcome({ kind: 'network', permissionMissing: true }, { backendUrl: 'https://s.example' }), /no longer allowed/);
  assert.match(describeOutcome({ kind: 'no_plain_id', detail: 'ambiguous' }), /more than one member/);
  assert.match(describeOutcome({ kind: 'server_error', httpStatus: 502 }), /HTTP 502/);
});
