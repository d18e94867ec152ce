import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  backoffDelayMs, backoffParams, heartbeatMinutes, parseRetryAfter, BACKOFF_BASE_S, BACKOFF_CAP_S,
} from '../lib/backoff.js';

test('heartbeat follows next_sync_in_s, clamped to [30 s, 24 h]', () => {
  assert.equal(heartbeatMinutes(900), 15);
  assert.equal(heartbeatMinutes(5), 0.5);
  assert.equal(heartbeatMinutes(10 ** 9), 24 * 60);
  assert.equal(heartbeatMinutes(null), 15);
  assert.equal(heartbeatMinutes(NaN), 15);
  assert.equal(heartbeatMinutes(-3), 15);
});

test('an override (tests) wins and may go below 30 s', () => {
  assert.equal(heartbeatMinutes(900, 0.05), 0.05);
  assert.equal(heartbeatMinutes(900, null), 15);
  assert.equal(heartbeatMinutes(900, 0), 15);
});

test('backoff parameters: 30 s base, 1 h cap; shrunk for short heartbeats', () => {
  assert.deepEqual(backoffParams(15), { baseS: BACKOFF_BASE_S, capS: BACKOFF_CAP_S });
  assert.deepEqual(backoffParams(0.05), { baseS: 3, capS: 12 });
  assert.deepEqual(backoffParams(2), { baseS: 30, capS: 480 });
});

test('delays double, are capped, and keep half of the ceiling fixed', () => {
  const p = { baseS: 30, capS: 3600 };
  assert.equal(backoffDelayMs(1, p, () => 0), 15_000);
  assert.equal(backoffDelayMs(1, p, () => 1), 30_000);
  assert.equal(backoffDelayMs(2, p, () => 1), 60_000);
  assert.equal(backoffDelayMs(3, p, () => 0.5), 90_000);
  assert.equal(backoffDelayMs(8, p, () => 1), 3_600_000);
  assert.equal(backoffDelayMs(500, p, () => 1), 3_600_000);
  assert.equal(backoffDelayMs(500, p, () => 0), 1_800_000);
  assert.equal(backoffDelayMs(0, p, () => 1), 30_000); // treated as the first failure
});

test('jitter spreads clients out within the window', () => {
  const p = { baseS: 30, capS: 3600 };
  const seen = new Set();
  for (let i = 0; i < 200; i += 1) {
    const d = backoffDelayMs(3, p);
    assert.ok(d >= 60_000 && d <= 120_000, String(d));
    seen.add(Math.round(d / 1000));
  }
  assert.ok(seen.size > 20, 'jitter should not be constant');
});

test('Retry-After: delta-seconds, HTTP-date, garbage', () => {
  const now = Date.parse('2025-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('120', now), 120_000);
  assert.equal(parseRetryAfter(' 0 ', now), 0);
  assert.equal(parseRetryAfter('Wed, 01 Jan 2025 00:01:30 GMT', now), 90_000);
  assert.equal(parseRetryAfter('Tue, 31 Dec 2024 23:00:00 GMT', now), 0); // in the past
  assert.equal(parseRetryAfter('soon', now), null);
  assert.equal(parseRetryAfter('', now), null);
  assert.equal(parseRetryAfter(null, now), null);
  assert.equal(parseRetryAfter('99999999', now), 86_400_000); // capped at a day
});
