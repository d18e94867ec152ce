// The white-label build: brand.json checked, both browsers' manifests, the packages themselves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { inflateRawSync } from 'node:zlib';
import { BrandError, buildManifest, configModule, storeProblems, validateBrand } from '../tools/brand.mjs';
import { build, pngSize } from '../tools/build.mjs';

const root = new URL('../', import.meta.url);
const base = JSON.parse(readFileSync(new URL('manifest.json', root), 'utf8'));
const generic = JSON.parse(readFileSync(new URL('brand.json', root), 'utf8'));
const ACME = JSON.parse(readFileSync(new URL('fixtures/brand-example.json', import.meta.url), 'utf8'));

/** Entries of a zip, read from its central directory (what build.mjs wrote). */
function unzip(bytes) {
  const end = bytes.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  const count = bytes.readUInt16LE(end + 10);
  let at = bytes.readUInt32LE(end + 16);
  const out = new Map();
  for (let i = 0; i < count; i += 1) {
    assert.equal(bytes.readUInt32LE(at), 0x02014b50);
    const size = bytes.readUInt32LE(at + 24); // uncompressed
    const nameLength = bytes.readUInt16LE(at + 28);
    const local = bytes.readUInt32LE(at + 42);
    const name = bytes.toString('utf8', at + 46, at + 46 + nameLength);
    const dataAt = local + 30 + bytes.readUInt16LE(local + 26) + bytes.readUInt16LE(local + 28);
    const packed = bytes.subarray(dataAt, dataAt + bytes.readUInt32LE(local + 18));
    const data = inflateRawSync(packed);
    assert.equal(data.length, size, name);
    out.set(name, data);
    at += 46 + nameLength;
  }
  return out;
}

test('the default brand.json builds today\'s generic Chrome manifest, unchanged', () => {
  assert.deepEqual(buildManifest(base, validateBrand(generic), 'chrome'), base);
});

for (const [label, brand] of [['generic', generic], ['branded', ACME]]) {
  for (const target of ['chrome', 'firefox']) {
    test(`${label} ${target} manifest: MV3, the fewest permissions, nothing the store refuses`, () => {
      const m = buildManifest(base, validateBrand(brand), target);
      assert.equal(m.manifest_version, 3);
      assert.deepEqual([...m.permissions].sort(), ['alarms', 'cookies', 'storage']);
      assert.equal(m.host_permissions[0], 'https://*.linkedin.com/*');
      if (brand.pairing_origins.length && target === 'firefox') {
        // Firefox's stand-in for externally_connectable: the bridge, on those origins only.
        assert.deepEqual(m.content_scripts, [{ matches: ['https://app.acme.example/*', 'https://eu.app.acme.example/*'],
          js: ['bridge.js'], run_at: 'document_start' }]);
      } else {
        assert.equal(m.content_scripts, undefined);
      }
      assert.equal(m.optional_permissions, undefined);
      assert.equal(m.key, undefined);
      assert.deepEqual(storeProblems(m, { ...validateBrand(brand) }), []);
      assert.equal(m.name, brand.name);
      assert.equal(m.short_name, brand.short_name);
      if (target === 'chrome') {
        assert.deepEqual(m.background, { service_worker: 'background.js', type: 'module' });
        assert.equal(m.browser_specific_settings, undefined);
      } else {
        // Firefox: background page from the same module, an add-on id, the data it collects.
        assert.deepEqual(m.background, { scripts: ['background.js'], type: 'module' });
        assert.equal(m.browser_specific_settings.gecko.id, brand.firefox_id);
        assert.deepEqual(m.browser_specific_settings.gecko.data_collection_permissions,
          { required: ['authenticationInfo', 'personallyIdentifyingInfo'] });
        assert.equal(m.minimum_chrome_version, undefined);
        assert.equal(m.externally_connectable, undefined, 'Firefox has no externally_connectable');
      }
      if (brand.backend_url) {
        // Required, granted at install: pairing from a web page cannot ask for it (no gesture).
        assert.deepEqual(m.host_permissions, ['https://*.linkedin.com/*', 'https://sync.acme.example/*']);
        assert.equal(m.optional_host_permissions, undefined);
      } else {
        assert.deepEqual(m.host_permissions, ['https://*.linkedin.com/*']);
        assert.deepEqual(m.optional_host_permissions, ['https://*/*', 'http://*/*']);
      }
      if (brand.pairing_origins.length && target === 'chrome') {
        assert.deepEqual(m.externally_connectable, { matches: ['https://app.acme.example/*', 'https://eu.app.acme.example/*'], ids: [] });
      } else {
        assert.equal(m.externally_connectable, undefined);
      }
    });
  }
}

test('brand.json mistakes are refused with what to fix', () => {
  const bad = (patch, pattern, opts) => assert.throws(() => validateBrand({ ...ACME, ...patch }, opts),
    (err) => err instanceof BrandError && pattern.test(err.message));
  bad({ backend_url: 'http://sync.acme.example' }, /https/);
  bad({ backend_url: 'https://127.0.0.1:8000' }, /loopback/);
  bad({ backend_url: 'http://localhost:8000' }, /loopback|https/);
  bad({ pairing_origins: ['http://app.acme.example'] }, /https/);
  bad({ pairing_origins: ['https://app.acme.example/'] }, /bare origin/);
  bad({ pairing_origins: ['https://app.acme.example/settings'] }, /bare origin/);
  bad({ pairing_origins: 'https://app.acme.example' }, /list/);
  bad({ pairing_origins: ['https://localhost'] }, /loopback/);
  bad({ backend_url: null }, /pairing_origins needs backend_url/);
  bad({ connect_url: 'http://app.acme.example/x' }, /https/);
  bad({ description: 'x'.repeat(133) }, /132/);
  bad({ short_name: '' }, /short_name/);
  bad({ name: 'n'.repeat(76) }, /75/);
  bad({ icons: { 16: 'a.png' } }, /icons/);
  bad({ firefox_id: 'not an id' }, /firefox_id/);
  bad({ backendUrl: 'https://x.example' }, /unknown keys: backendUrl/);
  // A dev (test) build may use loopback over http; never another plain-http host.
  const dev = validateBrand({ ...ACME, backend_url: 'http://127.0.0.1:8123', pairing_origins: ['https://app.acme.example'] }, { dev: true });
  assert.equal(dev.backendUrl, 'http://127.0.0.1:8123');
  bad({ backend_url: 'http://sync.acme.example' }, /https/, { dev: true });
});

test('the packaged manifest is checked once more: no loopback, no plain http, no key', () => {
  const m = buildManifest(base, validateBrand(ACME), 'chrome');
  assert.deepEqual(storeProblems({ ...m, key: 'x' }, validateBrand(ACME)), ['remove "key" from manifest.json (the Chrome Web Store refuses it)']);
  assert.equal(storeProblems({ ...m, host_permissions: [...m.host_permissions, 'http://127.0.0.1/*'] }, validateBrand(ACME)).length, 1);
  assert.equal(storeProblems(m, { ...validateBrand(ACME), backendUrl: 'http://127.0.0.1:9' }).length, 1);
});

test('config.js carries what the build bakes in', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'brand-'));
  const file = join(dir, 'config.js');
  writeFileSync(file, configModule(validateBrand(ACME), 'firefox'));
  const { CONFIG } = await import(pathToFileURL(file).href);
  assert.deepEqual({ ...CONFIG }, {
    backendUrl: 'https://sync.acme.example', pairingOrigins: ['https://app.acme.example', 'https://eu.app.acme.example'],
    connectUrl: 'https://app.acme.example/settings/linkedin', target: 'firefox',
  });
  assert.ok(Object.isFrozen(CONFIG) && Object.isFrozen(CONFIG.pairingOrigins));
  // The source folder's config.js is the generic build's (it loads unpacked as it is).
  const source = await import(new URL('config.js', root).href);
  assert.deepEqual({ ...source.CONFIG }, { ...(await importConfig(configModule(validateBrand(generic), 'chrome'))) });
});

async function importConfig(text) {
  const file = join(mkdtempSync(join(tmpdir(), 'brand-')), 'config.js');
  writeFileSync(file, text);
  return (await import(pathToFileURL(file).href)).CONFIG;
}

test('build: both zips, reproducible, holding the brand, readable by another zip reader', () => {
  const dir = mkdtempSync(join(tmpdir(), 'build-'));
  const brandPath = join(dir, 'acme.json');
  writeFileSync(brandPath, JSON.stringify(ACME));
  const first = build({ brandPath, outDir: join(dir, 'a') });
  const second = build({ brandPath, outDir: join(dir, 'b') });
  assert.deepEqual(first.map((b) => b.path.split('/').pop()), [`acme-chrome-${base.version}.zip`, `acme-firefox-${base.version}.zip`]);
  for (const [a, b] of first.map((x, i) => [x, second[i]])) {
    assert.ok(readFileSync(a.path).equals(readFileSync(b.path)), 'the same input gives the same bytes');
    const files = unzip(readFileSync(a.path));
    const manifest = JSON.parse(files.get('manifest.json'));
    assert.deepEqual(manifest, buildManifest(base, validateBrand(ACME), a.target));
    assert.match(files.get('config.js').toString(), /"backendUrl": "https:\/\/sync.acme.example"/);
    assert.ok(!files.has('brand.json') && ![...files.keys()].some((f) => f.startsWith('test/') || f.startsWith('tools/')));
    for (const f of ['background.js', 'platform.js', 'lib/external.js', 'popup.html', 'icons/icon-128.png']) assert.ok(files.has(f), f);
    assert.equal(files.has('bridge.js'), a.target === 'firefox', 'the bridge ships only where it is injected');
    assert.ok(files.get('background.js').equals(readFileSync(new URL('background.js', root))));
  }
  // Python's zipfile agrees on every entry's CRC (the Chromium tests unpack with it too).
  const check = spawnSync('python3', ['-c', 'import sys, zipfile; sys.exit(zipfile.ZipFile(sys.argv[1]).testzip() or 0)', first[0].path]);
  assert.equal(check.status, 0, String(check.stderr));
});

test('build: brand icons are PNGs of the right size; a store build refuses loopback, a dev build takes it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'build-'));
  const icon = readFileSync(new URL('icons/icon-48.png', root));
  assert.deepEqual(pngSize(icon), [48, 48]);
  writeFileSync(join(dir, 'logo.png'), icon);
  const brandPath = join(dir, 'brand.json');
  writeFileSync(brandPath, JSON.stringify({ ...ACME, icons: { 16: 'logo.png', 32: 'logo.png', 48: 'logo.png', 128: 'logo.png' } }));
  assert.throws(() => build({ brandPath, outDir: dir }), /icon 16: .*logo.png is 48x48, not 16x16/);
  writeFileSync(brandPath, JSON.stringify({ ...ACME, backend_url: 'http://127.0.0.1:8000' }));
  assert.throws(() => build({ brandPath, outDir: dir }), /loopback|https/);
  const [dev] = build({ brandPath, outDir: dir, targets: ['chrome'], dev: true });
  assert.match(dev.path, /acme-chrome-.*-dev\.zip$/);
  const manifest = JSON.parse(unzip(readFileSync(dev.path)).get('manifest.json'));
  assert.ok(manifest.host_permissions.includes('http://127.0.0.1/*'));
});
