import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildSyncPayload, buildSyncRequest, describePayload, isSyncReason, PayloadError, SYNC_REASONS,
} from '../lib/payload.js';

const base = { liAt: 'AQEDARliat-value', liA: 'AQJ2lia-value', userAgent: 'Mozilla/5.0 Test', plainId: '123', version: '0.1.0' };

test('the payload has exactly the documented keys, in order', () => {
  const p = buildSyncPayload(base);
  assert.deepEqual(Object.keys(p), ['li_at', 'li_a', 'user_agent', 'plain_id', 'extension_version']);
  assert.deepEqual(p, {
    li_at: 'AQEDARliat-value', li_a: 'AQJ2lia-value', user_agent: 'Mozilla/5.0 Test', plain_id: '123', extension_version: '0.1.0',
  });
});

test('li_a absent or empty → null', () => {
  assert.equal(buildSyncPayload({ ...base, liA: null }).li_a, null);
  assert.equal(buildSyncPayload({ ...base, liA: undefined }).li_a, null);
  assert.equal(buildSyncPayload({ ...base, liA: '' }).li_a, null);
});

test('plain_id is always a string of digits', () => {
  assert.equal(buildSyncPayload({ ...base, plainId: 987 }).plain_id, '987');
  for (const bad of [null, undefined, '', 'abc', '12a', '-1', '1.5']) {
    assert.throws(() => buildSyncPayload({ ...base, plainId: bad }), (e) => e instanceof PayloadError && e.code === 'no_plain_id');
  }
});

test('no li_at → not logged in, nothing to send', () => {
  for (const liAt of [null, undefined, '']) {
    assert.throws(() => buildSyncPayload({ ...base, liAt }), (e) => e.code === 'not_logged_in');
  }
});

test('missing user agent or version is refused', () => {
  assert.throws(() => buildSyncPayload({ ...base, userAgent: '' }), (e) => e.code === 'no_user_agent');
  assert.throws(() => buildSyncPayload({ ...base, version: undefined }), (e) => e.code === 'no_version');
});

test('the request carries the bearer token and the reason', () => {
  const req = buildSyncRequest('https://sync.example.com/base', 'tok', 'cookie-change', buildSyncPayload(base));
  assert.equal(req.url, 'https://sync.example.com/base/v1/extension/sync');
  assert.equal(req.method, 'POST');
  assert.deepEqual(req.headers, { 'Content-Type': 'application/json', Authorization: 'Bearer tok', 'X-Sync-Reason': 'cookie-change' });
  assert.deepEqual(JSON.parse(req.body), buildSyncPayload(base));
});

test('only the five documented reasons exist', () => {
  assert.deepEqual([...SYNC_REASONS], ['startup', 'alarm', 'manual', 'cookie-change', 'follow-up']);
  assert.equal(isSyncReason('cookie-change'), true);
  assert.equal(isSyncReason('boot'), false);
  assert.throws(() => buildSyncRequest('https://x', 't', 'boot', {}), PayloadError);
});

test('the loggable description never contains a cookie value', () => {
  const text = describePayload(buildSyncPayload(base));
  assert.ok(!text.includes(base.liAt) && !text.includes(base.liA));
  assert.match(text, /li_at present, li_a present, plain_id 123/);
  assert.match(describePayload(buildSyncPayload({ ...base, liA: null })), /li_a absent/);
});
