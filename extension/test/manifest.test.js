import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';

const root = new URL('../', import.meta.url);
const manifest = JSON.parse(readFileSync(new URL('manifest.json', root), 'utf8'));

test('Manifest V3 with the fewest permissions that work', () => {
  assert.equal(manifest.manifest_version, 3);
  assert.deepEqual([...manifest.permissions].sort(), ['alarms', 'cookies', 'storage']);
  assert.deepEqual(manifest.host_permissions, ['https://*.linkedin.com/*']);
  // The backend origin is asked for at pairing time, never granted at install.
  assert.deepEqual(manifest.optional_host_permissions, ['https://*/*', 'http://*/*']);
  assert.equal(manifest.optional_permissions, undefined);
  assert.equal(manifest.content_scripts, undefined);
  assert.equal(manifest.key, undefined, 'the Web Store refuses a "key" field');
});

test('module service worker, popup, options page, icons: every file exists', () => {
  assert.deepEqual(manifest.background, { service_worker: 'background.js', type: 'module' });
  const files = [manifest.background.service_worker, manifest.action.default_popup, manifest.options_ui.page,
    ...Object.values(manifest.icons), ...Object.values(manifest.action.default_icon)];
  for (const f of files) assert.ok(existsSync(new URL(f, root)), f);
});

test('version is what the Chrome Web Store accepts (1-4 dot-separated integers)', () => {
  assert.match(manifest.version, /^\d+(\.\d+){0,3}$/);
});

test('lib/ stays free of chrome.* and the DOM, so it runs under node', () => {
  const dir = new URL('lib/', root);
  for (const name of readdirSync(dir)) {
    const text = readFileSync(new URL(name, dir), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    assert.ok(!/\bchrome\./.test(text), `${name} uses chrome.*`);
    assert.ok(!/\bdocument\./.test(text), `${name} uses the DOM`);
  }
});

test('extension pages load only module scripts from the package (MV3 CSP: no inline code)', () => {
  for (const page of ['popup.html', 'options.html']) {
    const html = readFileSync(new URL(page, root), 'utf8');
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    assert.ok(scripts.length > 0, page);
    for (const [, attrs, body] of scripts) {
      assert.match(attrs, /type="module"/, page);
      assert.match(attrs, /src="[a-z-]+\.js"/, page);
      assert.equal(body.trim(), '', `${page} has inline script`);
    }
  }
});
