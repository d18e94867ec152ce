import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BackendUrlError, isLoopbackHost, normalizeBackendUrl, originPattern, parsePairResponse } from '../lib/backend.js';

test('normalises what the user types', () => {
  assert.equal(normalizeBackendUrl(' https://sync.example.com/ '), 'https://sync.example.com');
  assert.equal(normalizeBackendUrl('https://sync.example.com:8443/cookiesync//'), 'https://sync.example.com:8443/cookiesync');
  assert.equal(normalizeBackendUrl('sync.example.com'), 'https://sync.example.com');
  assert.equal(normalizeBackendUrl('localhost:8000'), 'http://localhost:8000');
  assert.equal(normalizeBackendUrl('http://127.0.0.1:8000'), 'http://127.0.0.1:8000');
  assert.equal(normalizeBackendUrl('http://[::1]:8000/'), 'http://[::1]:8000');
  assert.equal(normalizeBackendUrl('HTTPS://Sync.Example.COM'), 'https://sync.example.com');
});

test('refuses plain http off loopback, and odd addresses', () => {
  for (const bad of ['', '   ', 'http://sync.example.com', 'ftp://x.example', 'https://user:pw@x.example',
    'https://x.example/?a=1', 'https://x.example/#f', 'https://']) {
    assert.throws(() => normalizeBackendUrl(bad), BackendUrlError, bad);
  }
});

test('loopback hosts', () => {
  for (const h of ['localhost', '127.0.0.1', '127.1.2.3', '[::1]', 'app.localhost']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['example.com', '10.0.0.1', 'localhost.example.com']) assert.ok(!isLoopbackHost(h), h);
});

test('the permission pattern names the host only (any port, any path)', () => {
  assert.equal(originPattern('https://sync.example.com:8443/base'), 'https://sync.example.com/*');
  assert.equal(originPattern('http://127.0.0.1:8000'), 'http://127.0.0.1/*');
});

test('reads the pairing answer', () => {
  assert.deepEqual(parsePairResponse(201, { device_token: 't', user_id: 'u', next_sync_in_s: 900 }),
    { ok: true, token: 't', userId: 'u', nextSyncInS: 900 });
  assert.equal(parsePairResponse(201, { device_token: 't', user_id: 'u' }).nextSyncInS, null);
  assert.equal(parsePairResponse(201, { user_id: 'u' }).ok, false);
  const refused = parsePairResponse(400, { status_code: 400, detail: 'unknown, used or expired pairing code' });
  assert.equal(refused.ok, false);
  assert.match(refused.message, /not accepted: unknown, used or expired pairing code/);
  assert.match(parsePairResponse(404, null).message, /used, expired or unknown/);
  assert.match(parsePairResponse(429, { detail: 'slow down' }).message, /Too many/);
  assert.match(parsePairResponse(503, null).message, /HTTP 503/);
});
