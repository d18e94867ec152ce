import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attention, badgeOf, BADGE_COLORS, FOLLOW_UP_DELAYS_MS, followUpDelayMs, SIGNED_OUT_MESSAGE, signOutReport } from '../lib/attention.js';

const URL_ = 'https://sync.example.com/reconnect/abc.def';
const paired = (extra) => ({ phase: 'paired', linkStatus: 'connected', reconnectUrl: null, holdReason: null, signedOut: false, ...extra });

test('every link status: badge, sentence, button', () => {
  const table = [
    [paired({}), null],
    [paired({ linkStatus: null }), null],
    [paired({ linkStatus: 'disabled' }), null],
    [paired({ linkStatus: 'needs_user', reconnectUrl: URL_ }), { badge: '!', tone: 'bad', button: URL_, says: /reconnect it below/ }],
    [paired({ linkStatus: 'needs_user' }), { badge: '!', tone: 'bad', button: null, says: /check your email/ }],
    [paired({ linkStatus: 'checkpoint', reconnectUrl: URL_ }), { badge: '!', tone: 'bad', button: URL_, says: /confirm it is you/ }],
    [paired({ linkStatus: 'reconnecting' }), { badge: null, tone: 'info', button: null, says: /being reconnected/ }],
    [paired({ linkStatus: 'pending' }), { badge: null, tone: 'info', button: null, says: /being connected/ }],
    [paired({ linkStatus: 'pending', holdReason: 'another LinkedIn account is already connected for this user' }),
      { badge: null, tone: 'warn', button: null, says: /held, not connected: another LinkedIn account is already connected/ }],
    [paired({ linkStatus: 'needs_user', reconnectUrl: URL_, signedOut: true }),
      { badge: '!', tone: 'warn', button: null, says: /sign in to LinkedIn again in this browser, and we reconnect you automatically/ }],
    [{ phase: 'unpaired', linkStatus: 'needs_user', reconnectUrl: URL_ }, null],
    [{ phase: 'pair_again', linkStatus: 'needs_user', reconnectUrl: URL_ }, null],
    [null, null],
  ];
  for (const [status, want] of table) {
    const seen = attention(status);
    const label = JSON.stringify(status);
    if (want === null) {
      assert.equal(seen, null, label);
      assert.deepEqual(badgeOf(status), { text: '', color: null }, label);
      continue;
    }
    assert.equal(seen.badge?.text ?? null, want.badge, label);
    assert.equal(seen.tone, want.tone, label);
    assert.equal(seen.button?.url ?? null, want.button, label);
    if (seen.button) assert.equal(seen.button.label, 'Reconnect LinkedIn');
    assert.match(seen.message, want.says, label);
    assert.equal(seen.message.split('. ').length, 1, `one sentence: ${seen.message}`);
    assert.deepEqual(badgeOf(status), seen.badge ?? { text: '', color: null });
  }
  assert.equal(attention(paired({ linkStatus: 'needs_user' })).badge.color, BADGE_COLORS.bad);
  assert.equal(attention(paired({ signedOut: true })).message, SIGNED_OUT_MESSAGE);
});

test('follow-up syncs while a connect is under way, never for a held member, a few and no more', () => {
  const pending = paired({ linkStatus: 'pending' });
  assert.deepEqual(FOLLOW_UP_DELAYS_MS.map((_d, n) => followUpDelayMs(pending, n)), [...FOLLOW_UP_DELAYS_MS]);
  assert.equal(followUpDelayMs(pending, FOLLOW_UP_DELAYS_MS.length), null);
  assert.equal(followUpDelayMs(paired({ linkStatus: 'reconnecting' }), 0), FOLLOW_UP_DELAYS_MS[0]);
  for (const status of [paired({}), paired({ linkStatus: 'needs_user' }), paired({ linkStatus: 'pending', holdReason: 'held' }),
    { phase: 'unpaired', linkStatus: 'pending' }, null]) {
    assert.equal(followUpDelayMs(status, 0), null, JSON.stringify(status));
  }
});

test('a sign-out is reported once per cookie, by hash, and only for a member seen', () => {
  const memo = { liAtSha256: 'a'.repeat(64), plainId: '738291046', readAt: 1 };
  assert.deepEqual(signOutReport(memo, null, '0.2.0'), { plain_id: '738291046', li_at_sha256: 'a'.repeat(64), extension_version: '0.2.0' });
  assert.equal(signOutReport(memo, 'a'.repeat(64), '0.2.0'), null, 'already reported');
  assert.deepEqual(signOutReport(memo, 'b'.repeat(64), '0.2.0')?.li_at_sha256, 'a'.repeat(64), 'another cookie was reported before');
  assert.equal(signOutReport(null, null, '0.2.0'), null);
  assert.equal(signOutReport({ liAtSha256: 'a'.repeat(64), plainId: '' }, null, '0.2.0'), null);
});
