import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { MEMBER_READ_MAX_AGE_MS, memberRead, remember, sha256Hex } from '../lib/identity.js';

const H1 = 'a'.repeat(64);
const H2 = 'b'.repeat(64);
const NOW = 1_800_000_000_000;

test('the member id is read when never read, when li_at changed, or when a day old; reused otherwise', () => {
  const memo = remember(H1, '738291046', NOW);
  const table = [
    [null, H1, NOW, { read: true, why: 'never read' }],
    [{ liAtSha256: H1, plainId: '', readAt: NOW }, H1, NOW, { read: true, why: 'never read' }],
    [memo, H2, NOW + 1000, { read: true, why: 'li_at changed' }],
    [memo, H1, NOW + MEMBER_READ_MAX_AGE_MS, { read: true, why: 'a day old' }],
    [memo, H1, NOW - 1000, { read: true, why: 'a day old' }], // a clock set back: read, do not trust
    [memo, H1, NOW + 1000, { read: false, plainId: '738291046' }],
    [memo, H1, NOW + MEMBER_READ_MAX_AGE_MS - 1, { read: false, plainId: '738291046' }],
  ];
  for (const [m, hash, now, want] of table) assert.deepEqual(memberRead(m, hash, now), want, JSON.stringify([m, hash, now]));
});

test('sha256Hex is SHA-256 in lowercase hex', async () => {
  for (const text of ['', 'AQEDAR-li-at', 'é ünïcode']) {
    assert.equal(await sha256Hex(text), createHash('sha256').update(text, 'utf8').digest('hex'));
  }
});
