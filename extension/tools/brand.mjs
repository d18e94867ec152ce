// The white-label build's pure part: a brand configuration (brand.json) checked and turned
// into each browser's manifest and the baked-in config.js. No file I/O here (build.mjs does it),
// so the node tests run every rule on plain objects.
//
// It will not: fetch icons, guess a backend, or let a store package carry a loopback or
// plain-http origin (only a `dev` build, which the Chromium tests make, may).

import { isLoopbackHost, normalizeBackendUrl, originPattern } from '../lib/backend.js';

export const TARGETS = Object.freeze(['chrome', 'firefox']);
export const ICON_SIZES = Object.freeze(['16', '32', '48', '128']);
const KEYS = new Set(['name', 'short_name', 'description', 'icons', 'backend_url', 'pairing_origins', 'connect_url',
  'firefox_id']);
// Chrome Web Store limits: name 75 characters, description 132; short_name is shown under the
// icon and Chrome advises 12.
const LIMITS = { name: 75, short_name: 12, description: 132 };
// The data Firefox's install prompt lists (data_collection_permissions): the LinkedIn session
// cookie is authentication information, the member id identifies a person.
export const FIREFOX_DATA_COLLECTION = Object.freeze(['authenticationInfo', 'personallyIdentifyingInfo']);
// data_collection_permissions exists from Firefox 140 on; MV3 background scripts with
// "type": "module" and storage.session are older.
export const FIREFOX_MIN_VERSION = '140.0';
export const FIREFOX_ANDROID_MIN_VERSION = '142.0';

export class BrandError extends Error {
  constructor(message) {
    super(message);
    this.name = 'BrandError';
  }
}

function text(brand, key) {
  const value = brand[key];
  if (typeof value !== 'string' || !value.trim()) throw new BrandError(`${key} must be a non-empty string`);
  if (value.length > LIMITS[key]) throw new BrandError(`${key} is ${value.length} characters; the stores allow ${LIMITS[key]}`);
  return value.trim();
}

/** An origin must be exactly scheme://host[:port]: it is compared as a string with sender.origin. */
function webOrigin(value, { dev, what }) {
  let url;
  try { url = new URL(String(value)); } catch { throw new BrandError(`${what}: ${JSON.stringify(value)} is not a URL`); }
  if (url.origin !== String(value)) {
    throw new BrandError(`${what}: write the bare origin ${url.origin} (no path, no trailing slash)`);
  }
  checkReachable(url, { dev, what });
  return url.origin;
}

/** Store packages: https only, never loopback. Dev (test) builds may use loopback over http. */
function checkReachable(url, { dev, what }) {
  const loopback = isLoopbackHost(url.hostname);
  if (url.protocol !== 'https:' && !(dev && url.protocol === 'http:' && loopback)) {
    throw new BrandError(`${what}: ${url.origin} must use https://`);
  }
  if (loopback && !dev) throw new BrandError(`${what}: ${url.origin} is a loopback address (only dev builds may use one)`);
}

/**
 * Check a parsed brand.json. Returns the normalised brand; throws BrandError on the first problem.
 * (The icon files themselves are read and measured by build.mjs.)
 */
export function validateBrand(brand, { dev = false } = {}) {
  if (!brand || typeof brand !== 'object' || Array.isArray(brand)) throw new BrandError('the brand file must hold a JSON object');
  const unknown = Object.keys(brand).filter((k) => !KEYS.has(k) && !k.startsWith('$'));
  if (unknown.length) throw new BrandError(`unknown keys: ${unknown.join(', ')}`);
  const out = { name: text(brand, 'name'), shortName: text(brand, 'short_name'), description: text(brand, 'description') };

  out.icons = null;
  if (brand.icons !== null && brand.icons !== undefined) {
    const icons = brand.icons;
    const missing = ICON_SIZES.filter((s) => typeof icons?.[s] !== 'string' || !icons[s]);
    if (missing.length) throw new BrandError(`icons needs a PNG path for each size ${ICON_SIZES.join(', ')} (missing ${missing.join(', ')})`);
    out.icons = Object.fromEntries(ICON_SIZES.map((s) => [s, icons[s]]));
  }

  out.backendUrl = null;
  if (brand.backend_url !== null && brand.backend_url !== undefined) {
    try {
      out.backendUrl = normalizeBackendUrl(brand.backend_url);
    } catch (err) {
      throw new BrandError(`backend_url: ${err.message}`);
    }
    checkReachable(new URL(out.backendUrl), { dev, what: 'backend_url' });
  }

  const origins = brand.pairing_origins ?? [];
  if (!Array.isArray(origins)) throw new BrandError('pairing_origins must be a list of origins');
  out.pairingOrigins = [...new Set(origins.map((o) => webOrigin(o, { dev, what: 'pairing_origins' })))];
  if (out.pairingOrigins.length && !out.backendUrl) {
    throw new BrandError('pairing_origins needs backend_url: a page can only pair the extension with a server baked in');
  }

  out.connectUrl = null;
  if (brand.connect_url !== null && brand.connect_url !== undefined) {
    let url;
    try { url = new URL(String(brand.connect_url)); } catch { throw new BrandError('connect_url is not a URL'); }
    checkReachable(url, { dev, what: 'connect_url' });
    out.connectUrl = url.href;
  }

  const id = brand.firefox_id;
  // AMO accepts an email-like id or a GUID in braces.
  if (typeof id !== 'string' || !/^([A-Za-z0-9._+-]+@[A-Za-z0-9.-]+|\{[0-9a-fA-F-]{36}\})$/.test(id)) {
    throw new BrandError('firefox_id must look like name@example.com or {GUID}');
  }
  out.firefoxId = id;
  return out;
}

/** Chrome match pattern for an origin. The pattern names the host only; the handler compares exact origins. */
export function matchPattern(origin) {
  return originPattern(origin);
}

/** The manifest of one target, from the source manifest.json (the generic Chrome one) and a checked brand. */
export function buildManifest(base, brand, target) {
  if (!TARGETS.includes(target)) throw new BrandError(`unknown target ${target}`);
  const manifest = structuredClone(base);
  manifest.name = brand.name;
  manifest.short_name = brand.shortName;
  manifest.description = brand.description;
  manifest.action = { ...manifest.action, default_title: brand.shortName };

  if (brand.backendUrl) {
    // Baked-in backend: a required host permission, granted at install. Pairing then needs no
    // permissions.request, which only works inside a click in the extension's own page: a
    // message from the integrator's web page is no such gesture, so one-click pairing could not
    // ask for it. No optional wildcard either: nothing else is ever contacted.
    manifest.host_permissions = [...manifest.host_permissions, originPattern(brand.backendUrl)];
    delete manifest.optional_host_permissions;
  }
  if (brand.pairingOrigins.length && target === 'chrome') {
    // Only these pages see chrome.runtime.sendMessage for this extension; no other extension may connect.
    manifest.externally_connectable = { matches: brand.pairingOrigins.map(matchPattern), ids: [] };
  }

  if (brand.pairingOrigins.length && target === 'firefox') {
    // Firefox has no externally_connectable: bridge.js relays the page's window messages instead,
    // injected on the configured origins only (top frame only, the default).
    manifest.content_scripts = [{ matches: brand.pairingOrigins.map(matchPattern), js: ['bridge.js'], run_at: 'document_start' }];
  }
  if (target === 'firefox') {
    // Firefox runs MV3 background pages (no service worker).
    manifest.background = { scripts: [base.background.service_worker], type: 'module' };
    delete manifest.minimum_chrome_version;
    manifest.browser_specific_settings = {
      gecko: {
        id: brand.firefoxId,
        strict_min_version: FIREFOX_MIN_VERSION,
        data_collection_permissions: { required: [...FIREFOX_DATA_COLLECTION] },
      },
      // Firefox for Android reads data_collection_permissions from 142 on.
      gecko_android: { strict_min_version: FIREFOX_ANDROID_MIN_VERSION },
    };
  }
  return manifest;
}

/** The config.js module baked into a package. */
export function configModule(brand, target) {
  const config = {
    backendUrl: brand.backendUrl,
    pairingOrigins: brand.pairingOrigins,
    connectUrl: brand.connectUrl,
    target,
  };
  return [
    '// Written by tools/build.mjs from the brand configuration: do not edit in a package.',
    `const config = ${JSON.stringify(config, null, 2)};`,
    'export const CONFIG = Object.freeze({ ...config, pairingOrigins: Object.freeze(config.pairingOrigins) });',
    '',
  ].join('\n');
}

/**
 * What a store package must never carry (the last check before zipping, on the final manifest and
 * config): a loopback host or a plain-http origin, and a "key" (the Web Store refuses it).
 */
export function storeProblems(manifest, config) {
  const problems = [];
  if ('key' in manifest) problems.push('remove "key" from manifest.json (the Chrome Web Store refuses it)');
  if (!/^\d+(\.\d+){0,3}$/.test(manifest.version)) problems.push(`version ${JSON.stringify(manifest.version)} is not 1-4 dot-separated integers`);
  const patterns = [...(manifest.host_permissions ?? []), ...(manifest.externally_connectable?.matches ?? [])];
  const urls = [config.backendUrl, config.connectUrl, ...config.pairingOrigins].filter(Boolean);
  for (const p of [...patterns, ...urls]) {
    if (/^http:\/\//.test(p) || /\/\/(localhost|127\.|\[::1\])/.test(p)) problems.push(`development origin ${p}`);
  }
  return problems;
}
