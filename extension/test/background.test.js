// background.js wired to fake chrome.* APIs and a fake fetch: the sync flow,
// the request it sends, the log lines it writes (never a secret).
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { makeChrome } from './fake-chrome.js';

const FEED = readFileSync(new URL('./fixtures/feed-quot.html', import.meta.url), 'utf8');
const BACKEND = 'https://sync.example.com';
const LI_AT = 'AQEDARsecret-li-at-value';
const LI_A = 'AQJ2secret-li-a-value';
const TOKEN = 'dev_secret_device_token';

let logs;
let requests;
let answers;
let loadCount = 0;

function respond(status, body, headers = {}) {
  return new Response(body === null ? null : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });
}

async function loadWorker({ paired = true, feed = FEED } = {}) {
  globalThis.chrome = makeChrome({ granted: [`${BACKEND}/*`] });
  globalThis.self = globalThis;
  Object.defineProperty(globalThis, 'navigator', { value: { userAgent: 'Mozilla/5.0 NodeTest/1.0' }, configurable: true, writable: true });
  globalThis.fetch = async (url, init = {}) => {
    requests.push({ url: String(url), init });
    if (String(url) === 'https://www.linkedin.com/feed/') {
      const res = new Response(feed, { status: 200, headers: { 'Content-Type': 'text/html' } });
      Object.defineProperty(res, 'url', { value: 'https://www.linkedin.com/feed/' });
      return res;
    }
    const next = answers.shift();
    if (!next) throw new TypeError('Failed to fetch');
    return next();
  };
  if (paired) {
    await chrome.storage.local.set({
      device: { token: TOKEN, baseUrl: BACKEND, userId: 'u1', pairedAt: 1 },
      status: { phase: 'paired', backendUrl: BACKEND, userId: 'u1', failures: 0, nextSyncInS: 900 },
    });
  }
  chrome.cookies.set('li_at', LI_AT);
  chrome.cookies.set('li_a', LI_A);
  loadCount += 1;
  await import(`../background.js?instance=${loadCount}`);
  await new Promise((r) => setTimeout(r, 100)); // let the startup sync run
}

const okBody = { link_status: 'connected', unipile_account_id: 'acc_1', next_sync_in_s: 600 };
const backendRequests = () => requests.filter((r) => r.url.startsWith(BACKEND));

beforeEach(() => {
  logs = [];
  requests = [];
  answers = [];
  console.log = (...args) => logs.push(args.join(' '));
});

test('startup sync once per session, with exactly the documented payload and headers', async () => {
  answers.push(() => respond(200, okBody));
  await loadWorker();
  const [sync] = backendRequests();
  assert.equal(sync.url, `${BACKEND}/v1/extension/sync`);
  assert.equal(sync.init.method, 'POST');
  assert.equal(sync.init.headers.Authorization, `Bearer ${TOKEN}`);
  assert.equal(sync.init.headers['X-Sync-Reason'], 'startup');
  assert.deepEqual(JSON.parse(sync.init.body), {
    li_at: LI_AT, li_a: LI_A, user_agent: 'Mozilla/5.0 NodeTest/1.0', plain_id: '738291046', extension_version: '0.1.0',
  });
  const feed = requests.find((r) => r.url.includes('linkedin.com'));
  assert.equal(feed.init.credentials, 'include');
  const { status } = await chrome.storage.local.get('status');
  assert.equal(status.plainId, '738291046');
  assert.equal(status.lastSyncReason, 'startup');
  assert.deepEqual(await chrome.alarms.get('cookiesync-sync'), {
    name: 'cookiesync-sync', scheduledTime: status.lastSyncAt + 600_000, periodInMinutes: 10,
  });

  // A second load of the script in the same session (worker woken up again) does not sync.
  const before = backendRequests().length;
  loadCount += 1;
  await import(`../background.js?instance=${loadCount}`);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(backendRequests().length, before);
});

test('never logs a cookie value or the token', async () => {
  answers.push(() => respond(200, okBody), () => respond(503, null), () => respond(200, okBody));
  await loadWorker();                       // startup: 200
  await self.syncNow('manual');             // 503
  await self.syncNow('manual');             // 200 (a manual sync skips the backoff)
  answers.push(() => respond(200, okBody)); // for the cookie-change sync (after the 1.5 s debounce)
  chrome.cookies.onChanged.emit({ removed: false, cause: 'explicit', cookie: { name: 'li_at', domain: '.linkedin.com', value: LI_AT } });
  await new Promise((r) => setTimeout(r, 1700));
  answers.push(() => respond(401, { detail: 'revoked' }));
  await self.syncNow('manual');             // 401
  assert.ok(logs.some((l) => l.includes('cookie li_at changed')));
  assert.ok(logs.some((l) => l.includes('sync (cookie-change): posting (li_at present, li_a present, plain_id 738291046)')));
  assert.ok(logs.some((l) => l.includes('HTTP 401')));
  for (const line of logs) {
    assert.ok(line.startsWith('[cookiesync]'), line);
    for (const secret of [LI_AT, LI_A, TOKEN]) assert.ok(!line.includes(secret), line);
  }
});

test('no li_at: no sync is sent, the sign-out is reported once by hash, and the popup is told', async () => {
  await loadWorker({ paired: true }); // startup: the member is read with this li_at (no answer queued)
  chrome.cookies.set('li_at', null);
  answers.push(() => respond(200, { link_status: 'connected', recorded: true }));
  const result = await self.syncNow('manual');
  assert.equal(result.outcome, 'not_logged_in');
  const sent = backendRequests();
  assert.equal(sent.length, 2, 'the startup attempt, then the sign-out report; no sync');
  assert.equal(sent[1].url, `${BACKEND}/v1/extension/signed-out`);
  assert.equal(sent[1].init.headers.Authorization, `Bearer ${TOKEN}`);
  const { createHash } = await import('node:crypto');
  assert.deepEqual(JSON.parse(sent[1].init.body), {
    plain_id: '738291046', li_at_sha256: createHash('sha256').update(LI_AT).digest('hex'), extension_version: '0.1.0',
  });
  assert.ok(!sent[1].init.body.includes(LI_AT));
  const { status } = await chrome.storage.local.get('status');
  assert.equal(status.lastError.code, 'not_logged_in');
  assert.equal(status.signedOut, true);
  assert.equal(chrome.action.badge.text, '!', 'the icon says something needs the user');
  await self.syncNow('manual');
  assert.equal(backendRequests().length, 2, 'reported once per cookie');
  // Signed in again: a fresh li_at is read and synced, the badge clears.
  chrome.cookies.set('li_at', 'AQEDARsecret-li-at-fresh');
  answers.push(() => respond(200, okBody));
  assert.equal((await self.syncNow('manual')).outcome, 'ok');
  assert.equal((await chrome.storage.local.get('status')).status.signedOut, false);
  assert.equal(chrome.action.badge.text, '');
});

test('a heartbeat with an unchanged li_at does not load linkedin.com; a changed one loads it once', async () => {
  answers.push(() => respond(200, okBody));
  await loadWorker(); // startup: one feed load (never read before)
  const feedLoads = () => requests.filter((r) => r.url.startsWith('https://www.linkedin.com')).length;
  assert.equal(feedLoads(), 1);
  for (let i = 0; i < 5; i += 1) {
    answers.push(() => respond(200, okBody));
    assert.equal((await self.syncNow('alarm')).outcome, 'ok');
  }
  assert.equal(feedLoads(), 1, 'five heartbeats, no page load');
  assert.equal(JSON.parse(backendRequests().at(-1).init.body).plain_id, '738291046', 'the member remembered');
  chrome.cookies.set('li_at', 'AQEDARsecret-li-at-rotated');
  answers.push(() => respond(200, okBody));
  await self.syncNow('cookie-change');
  assert.equal(feedLoads(), 2);
  assert.ok(logs.some((l) => l.includes('member id read from linkedin.com (li_at changed)')));
});

test('the badge and the stored status follow the answer: needs_user with its link, then connected clears it', async () => {
  await loadWorker();
  const url = `${BACKEND}/reconnect/abc.def`;
  answers.push(() => respond(200, { link_status: 'needs_user', unipile_account_id: 'acc_1', next_sync_in_s: 900, reconnect_url: url, hold_reason: null }));
  await self.syncNow('manual');
  let { status } = await chrome.storage.local.get('status');
  assert.deepEqual([status.linkStatus, status.reconnectUrl], ['needs_user', url]);
  assert.deepEqual(chrome.action.badge, { text: '!', color: '#b3261e' });
  answers.push(() => respond(200, okBody));
  await self.syncNow('alarm');
  ({ status } = await chrome.storage.local.get('status'));
  assert.deepEqual([status.linkStatus, status.reconnectUrl], ['connected', null]);
  assert.equal(chrome.action.badge.text, '');
});

test('no member id on the page: nothing is sent', async () => {
  await loadWorker({ feed: '<html><body>no data</body></html>' });
  assert.equal(backendRequests().length, 0);
  const result = await self.syncNow('manual');
  assert.deepEqual([result.ok, result.outcome], [false, 'no_plain_id']);
  assert.equal(backendRequests().length, 0);
});

test('backend down → backoff; alarms inside the window are deferred; a manual sync still goes', async () => {
  await loadWorker(); // startup: fetch throws → network error
  let { status } = await chrome.storage.local.get('status');
  assert.equal(status.failures, 1);
  assert.equal(status.lastError.code, 'network');
  const alarm = await chrome.alarms.get('cookiesync-sync');
  assert.equal(alarm.scheduledTime, status.nextAllowedAt);
  const n = backendRequests().length;
  assert.equal((await self.syncNow('alarm')).outcome, 'deferred');
  assert.equal((await self.syncNow('cookie-change')).outcome, 'deferred');
  assert.equal(backendRequests().length, n);
  answers.push(() => respond(200, okBody));
  assert.equal((await self.syncNow('manual')).ok, true);
  ({ status } = await chrome.storage.local.get('status'));
  assert.equal(status.failures, 0);
});

test('401 drops the token, clears the alarm and stops syncing', async () => {
  answers.push(() => respond(401, { status_code: 401, detail: 'revoked' }));
  await loadWorker();
  const { device, status } = await chrome.storage.local.get(['device', 'status']);
  assert.equal(device, undefined);
  assert.equal(status.phase, 'pair_again');
  assert.equal(await chrome.alarms.get('cookiesync-sync'), undefined);
  assert.equal((await self.syncNow('alarm')).outcome, 'pair_again');
});

test('the alarm and cookie events trigger syncs with their reasons (debounced)', async () => {
  answers.push(() => respond(200, okBody));
  await loadWorker();
  answers.push(() => respond(200, okBody));
  chrome.alarms.onAlarm.emit({ name: 'cookiesync-sync' });
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(backendRequests().at(-1).init.headers['X-Sync-Reason'], 'alarm');

  answers.push(() => respond(200, okBody));
  for (const name of ['li_at', 'li_a', 'li_at', 'JSESSIONID']) {
    chrome.cookies.onChanged.emit({ removed: false, cause: 'explicit', cookie: { name, domain: '.linkedin.com' } });
  }
  chrome.cookies.onChanged.emit({ removed: false, cause: 'explicit', cookie: { name: 'li_at', domain: '.example.com' } });
  const n = backendRequests().length;
  await new Promise((r) => setTimeout(r, 1700));
  assert.equal(backendRequests().length, n + 1);
  assert.equal(backendRequests().at(-1).init.headers['X-Sync-Reason'], 'cookie-change');
});

test('setAlarmPeriod overrides the heartbeat, null restores the server\'s', async () => {
  answers.push(() => respond(200, okBody));
  await loadWorker();
  assert.deepEqual(await self.setAlarmPeriod(0.05), { periodInMinutes: 0.05 });
  assert.equal((await chrome.alarms.get('cookiesync-sync')).periodInMinutes, 0.05);
  assert.deepEqual(await self.setAlarmPeriod(null), { periodInMinutes: 10 });
  await assert.rejects(self.setAlarmPeriod(-1));
});

test('messages from other senders are ignored', async () => {
  await loadWorker({ paired: false });
  const [handled] = chrome.runtime.onMessage.emit({ type: 'unpair' }, { id: 'someone-else', url: 'https://evil.example/' }, () => {});
  assert.equal(handled, false);
  const [mine] = chrome.runtime.onMessage.emit({ type: 'nope' }, { id: 'testextensionid', url: 'chrome-extension://testextensionid/popup.html' }, () => {});
  assert.equal(mine, false);
});

test('pairing: stores the token, syncs at once; the same code is never sent twice', async () => {
  await loadWorker({ paired: false });
  assert.equal(backendRequests().length, 0, 'not paired: the startup sync sends nothing');
  answers.push(
    () => respond(201, { device_token: TOKEN, user_id: 'u1', next_sync_in_s: 900 }),
    () => respond(200, okBody),
  );
  await chrome.storage.session.set({ pendingPair: { backendUrl: `${BACKEND}/`, pairingCode: 'CODE-1', at: Date.now() } });
  const replies = [];
  const popup = { id: 'testextensionid', url: 'chrome-extension://testextensionid/popup.html' };
  const [async] = chrome.runtime.onMessage.emit({ type: 'pair', backendUrl: `${BACKEND}/`, pairingCode: 'CODE-1' }, popup, (r) => replies.push(r));
  assert.equal(async, true);
  // The permission arrives too (the path taken when the popup was closed by the prompt).
  await Promise.all(chrome.permissions.onAdded.emit({ origins: [`${BACKEND}/*`] }));
  while (!replies.length) await new Promise((r) => setTimeout(r, 5));
  assert.equal(replies[0].ok, true);
  assert.equal(replies[0].sync.ok, true);
  const pairs = backendRequests().filter((r) => r.url.endsWith('/v1/extension/pair'));
  assert.equal(pairs.length, 1);
  assert.deepEqual(JSON.parse(pairs[0].init.body), { pairing_code: 'CODE-1', extension_version: '0.1.0' });
  const { device, status } = await chrome.storage.local.get(['device', 'status']);
  assert.deepEqual([device.token, device.baseUrl, device.userId], [TOKEN, BACKEND, 'u1']);
  assert.equal(status.phase, 'paired');
  assert.equal(status.lastSyncReason, 'manual');
  assert.deepEqual(await chrome.storage.session.get('pendingPair'), {});

  // Unpair: DELETE with the token, token gone, alarm gone, origin permission given back.
  answers.push(() => new Response(null, { status: 204 }));
  const done = [];
  chrome.runtime.onMessage.emit({ type: 'unpair' }, popup, (r) => done.push(r));
  while (!done.length) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(done[0], { ok: true, revoked: true });
  const del = backendRequests().at(-1);
  assert.equal(del.init.method, 'DELETE');
  assert.equal(del.url, `${BACKEND}/v1/extension/device`);
  assert.equal(del.init.headers.Authorization, `Bearer ${TOKEN}`);
  assert.equal((await chrome.storage.local.get('device')).device, undefined);
  assert.equal(await chrome.alarms.get('cookiesync-sync'), undefined);
  assert.deepEqual(chrome.permissions.granted, []);
});

test('a refused pairing code stores nothing', async () => {
  await loadWorker({ paired: false });
  answers.push(() => respond(400, { status_code: 400, detail: 'unknown, used or expired pairing code' }));
  const replies = [];
  chrome.runtime.onMessage.emit({ type: 'pair', backendUrl: BACKEND, pairingCode: 'BAD' },
    { id: 'testextensionid', url: 'chrome-extension://testextensionid/popup.html' }, (r) => replies.push(r));
  while (!replies.length) await new Promise((r) => setTimeout(r, 5));
  assert.equal(replies[0].ok, false);
  assert.match(replies[0].message, /not accepted: unknown, used or expired pairing code/);
  assert.equal((await chrome.storage.local.get('device')).device, undefined);
});
