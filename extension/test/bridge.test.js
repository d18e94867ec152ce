// bridge.js (Firefox's content script on the integrator's pages) against a fake window and runtime:
// it relays only the page's own requests, and posts the background's answer back under the same id.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';

const SOURCE = readFileSync(new URL('../bridge.js', import.meta.url), 'utf8');
const ORIGIN = 'https://app.acme.example';

function loadBridge(answer = { ok: true, paired: true }) {
  const listeners = [];
  const posted = [];
  const sent = [];
  const plain = (x) => JSON.parse(JSON.stringify(x)); // objects made inside the vm have its prototypes
  const window = {
    location: { origin: ORIGIN },
    addEventListener: (type, fn) => { if (type === 'message') listeners.push(fn); },
    postMessage: (data, target) => posted.push(plain({ data, target })),
  };
  const context = {
    window,
    document: { documentElement: { dataset: {} } },
    browser: { runtime: { sendMessage: async (m) => { sent.push(plain(m)); return answer; } } },
  };
  vm.runInNewContext(SOURCE, context);
  const deliver = async (event) => {
    for (const fn of listeners) fn(event);
    await new Promise((r) => setTimeout(r, 5));
  };
  return { window, context, posted, sent, deliver };
}

test('marks the page and relays the page\'s own request, answering under its id', async () => {
  const b = loadBridge();
  assert.equal(b.context.document.documentElement.dataset.cookiesync, 'ready');
  await b.deliver({ source: b.window, origin: ORIGIN, data: { cookiesync: 'request', id: '42', message: { type: 'status' } } });
  assert.deepEqual(b.sent, [{ type: 'external', message: { type: 'status' } }]);
  assert.deepEqual(b.posted, [{ data: { cookiesync: 'answer', id: '42', answer: { ok: true, paired: true } }, target: ORIGIN }]);
});

test('ignores frames, other origins, its own answers and anything malformed', async () => {
  const b = loadBridge();
  const request = { cookiesync: 'request', id: '1', message: { type: 'pair', code: 'ABCDE-23456' } };
  await b.deliver({ source: {}, origin: ORIGIN, data: request }); // a frame
  await b.deliver({ source: b.window, origin: 'https://evil.example', data: request });
  await b.deliver({ source: b.window, origin: ORIGIN, data: { cookiesync: 'answer', id: '1', answer: {} } });
  await b.deliver({ source: b.window, origin: ORIGIN, data: { cookiesync: 'request', id: 7 } });
  await b.deliver({ source: b.window, origin: ORIGIN, data: null });
  assert.deepEqual(b.sent, []);
  assert.deepEqual(b.posted, []);
});

test('no answer from the background becomes null for the page', async () => {
  const b = loadBridge(null);
  await b.deliver({ source: b.window, origin: ORIGIN, data: { cookiesync: 'request', id: 'x', message: { type: 'status' } } });
  assert.deepEqual(b.posted[0].data, { cookiesync: 'answer', id: 'x', answer: null });
});
