import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideExternal, pairAnswer, senderOrigin, statusAnswer } from '../lib/external.js';

const APP = 'https://app.example.com';
const CONFIG = { pairingOrigins: [APP], backendUrl: 'https://sync.example.com', ownId: 'ownextensionid' };
const page = (origin, extra = {}) => ({ origin, url: `${origin}/settings/linkedin`, tab: { id: 1 }, ...extra });

// Every kind of sender against every kind of message: only an allowed page is ever answered.
const SENDERS = {
  allowed: page(APP),
  allowedUrlOnly: { url: `${APP}/x?y=1`, tab: { id: 1 } }, // no sender.origin (Firefox's bridge, old Chrome)
  otherOrigin: page('https://evil.example.net'),
  sameHostHttp: page('http://app.example.com'),
  otherPort: page('https://app.example.com:8443'),
  subdomain: page('https://x.app.example.com'),
  otherExtension: page(APP, { id: 'someotherextension' }),
  ourContentScript: page(APP, { id: 'ownextensionid' }),
  opaque: { origin: 'null', url: 'about:blank' },
  nothing: {},
};
const MESSAGES = {
  status: { type: 'status' },
  pair: { type: 'pair', code: ' ABCDE-23456 ' },
  pairNoCode: { type: 'pair' },
  pairBadCode: { type: 'pair', code: '<script>' },
  pairObjectCode: { type: 'pair', code: { toString: () => 'ABCDE-23456' } },
  unknown: { type: 'unpair' },
  notAnObject: 'pair',
  nullMessage: null,
};
const ALLOWED = new Set(['allowed', 'allowedUrlOnly', 'ourContentScript']);
const EXPECTED = {
  status: { action: 'status' },
  pair: { action: 'pair', code: 'ABCDE-23456' },
  pairNoCode: 'bad_code',
  pairBadCode: 'bad_code',
  pairObjectCode: 'bad_code',
  unknown: 'unknown_type',
  notAnObject: 'unknown_type',
  nullMessage: 'unknown_type',
};

for (const [senderName, sender] of Object.entries(SENDERS)) {
  for (const [messageName, message] of Object.entries(MESSAGES)) {
    test(`${senderName} × ${messageName}`, () => {
      const decision = decideExternal(message, sender, CONFIG);
      if (!ALLOWED.has(senderName)) {
        assert.deepEqual(decision, { action: 'ignore' });
        return;
      }
      const expected = EXPECTED[messageName];
      if (typeof expected === 'string') {
        assert.equal(decision.action, 'reply');
        assert.equal(decision.answer.ok, false);
        assert.equal(decision.answer.error, expected);
      } else {
        assert.deepEqual(decision, expected);
      }
    });
  }
}

test('a build without a baked-in backend answers no page, even a listed one', () => {
  for (const message of Object.values(MESSAGES)) {
    assert.deepEqual(decideExternal(message, SENDERS.allowed, { ...CONFIG, backendUrl: null }), { action: 'ignore' });
  }
  assert.deepEqual(decideExternal(MESSAGES.status, SENDERS.allowed), { action: 'ignore' });
});

test('senderOrigin prefers sender.origin and falls back to the URL', () => {
  assert.equal(senderOrigin({ origin: APP, url: 'https://other.example/' }), APP);
  assert.equal(senderOrigin({ url: `${APP}/a/b` }), APP);
  assert.equal(senderOrigin({ url: 'not a url' }), null);
  assert.equal(senderOrigin(undefined), null);
});

const SECRET_STATUS = {
  phase: 'paired', linkStatus: 'connected', userId: 'user-secret-id', backendUrl: 'https://sync.example.com',
  plainId: '738291046', unipileAccountId: 'acc_1', token: 'dev_secret', lastError: null,
};

test('status answer: installed, paired, link status; nothing else about the user, never a token', () => {
  assert.deepEqual(statusAnswer(SECRET_STATUS, '1.2.3'),
    { ok: true, installed: true, version: '1.2.3', paired: true, needsPairing: false, linkStatus: 'connected' });
  assert.deepEqual(statusAnswer({ phase: 'pair_again', linkStatus: 'connected' }, '1.2.3'),
    { ok: true, installed: true, version: '1.2.3', paired: false, needsPairing: true, linkStatus: null });
  assert.equal(statusAnswer(undefined, '1').paired, false);
});

test('pair answer: the status after pairing, or the refusal message', () => {
  const ok = pairAnswer({ ok: true, userId: 'user-secret-id', sync: { ok: true } }, { ...SECRET_STATUS, linkStatus: 'pending' }, '1');
  assert.deepEqual(ok, { ok: true, installed: true, version: '1', paired: true, needsPairing: false, linkStatus: 'pending', synced: true });
  assert.ok(!JSON.stringify(ok).includes('secret'));
  assert.deepEqual(pairAnswer({ ok: false, message: 'That pairing code was not accepted.' }, { phase: 'unpaired' }, '1'),
    { ok: false, error: 'pairing_failed', message: 'That pairing code was not accepted.', paired: false });
});
