import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatWhen, humanDuration, linkStatusWords } from '../lib/format.js';

test('durations', () => {
  assert.equal(humanDuration(4_000), '4 s');
  assert.equal(humanDuration(-120_000), '2 min');
  assert.equal(humanDuration(3 * 3600_000), '3 h');
  assert.equal(humanDuration(72 * 3600_000), '3 d');
});

test('timestamps with a relative hint', () => {
  const now = Date.parse('2025-03-01T12:00:00Z');
  assert.equal(formatWhen(null, now), 'never');
  assert.match(formatWhen(now - 120_000, now, 'en-GB'), /\(2 min ago\)$/);
  assert.match(formatWhen(now + 30_000, now, 'en-GB'), /\(in 30 s\)$/);
  assert.match(formatWhen(now, now, 'en-GB'), /\(now\)$/);
});

test('link states in words', () => {
  assert.equal(linkStatusWords('connected'), 'connected');
  assert.match(linkStatusWords('needs_user'), /email/);
  assert.equal(linkStatusWords(null), 'unknown yet');
  assert.equal(linkStatusWords('something_new'), 'something_new');
});
