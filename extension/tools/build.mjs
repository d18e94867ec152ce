#!/usr/bin/env node
// Build the extension's store packages from one brand configuration:
//   node extension/tools/build.mjs [--brand FILE] [--out DIR] [--target chrome|firefox] [--dev]
//   → DIR/<short_name>-chrome-<version>.zip (Chrome Web Store, also Edge Add-ons)
//     DIR/<short_name>-firefox-<version>.zip (addons.mozilla.org)
// `make extension` runs it with extension/brand.json (the generic build); `make extension BRAND=path`
// with another. The version comes from manifest.json. Only what the browser needs is packed (no
// tests, tools or docs) and the zips are reproducible (fixed timestamps, sorted entries).
// --dev is for the Chromium tests only: it lets loopback/http origins through and names the zip
// "-dev"; a store package refuses them.

import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { crc32, deflateRawSync } from 'node:zlib';
import { BrandError, ICON_SIZES, TARGETS, buildManifest, configModule, storeProblems, validateBrand } from './brand.mjs';

const EXT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// ---------------------------------------------------------------- files

/** Paths (posix, relative to extension/) of what a package holds, before the brand's replacements. */
export function packedFiles(ext = EXT) {
  const root = readdirSync(ext).filter((f) => /\.(js|html|css)$/.test(f)).sort();
  const lib = readdirSync(join(ext, 'lib')).filter((f) => f.endsWith('.js')).sort().map((f) => `lib/${f}`);
  const icons = ICON_SIZES.map((s) => `icons/icon-${s}.png`);
  return [...root, ...lib, ...icons];
}

/** [width, height] of a PNG (its IHDR chunk), or null when the bytes are not a PNG. */
export function pngSize(bytes) {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (bytes.length < 24 || signature.some((b, i) => bytes[i] !== b)) return null;
  if (bytes.toString('latin1', 12, 16) !== 'IHDR') return null;
  return [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
}

function loadIcons(brand, brandDir) {
  const icons = {};
  for (const size of ICON_SIZES) {
    const path = brand.icons ? resolve(brandDir, brand.icons[size]) : join(EXT, `icons/icon-${size}.png`);
    if (!existsSync(path)) throw new BrandError(`icon ${size}: ${path} does not exist`);
    const bytes = readFileSync(path);
    const dims = pngSize(bytes);
    if (!dims) throw new BrandError(`icon ${size}: ${path} is not a PNG`);
    if (dims[0] !== Number(size) || dims[1] !== Number(size)) {
      throw new BrandError(`icon ${size}: ${path} is ${dims[0]}x${dims[1]}, not ${size}x${size}`);
    }
    icons[`icons/icon-${size}.png`] = bytes;
  }
  return icons;
}

/** Every file the manifest names and every relative module import must be in the package. */
export function missingReferences(manifest, contents) {
  const named = [manifest.background.service_worker, ...(manifest.background.scripts ?? []), manifest.action.default_popup,
    ...(manifest.content_scripts ?? []).flatMap((c) => c.js),
    manifest.options_ui.page, ...Object.values(manifest.icons), ...Object.values(manifest.action.default_icon)]
    .filter(Boolean);
  const missing = named.filter((f) => !contents.has(f)).map((f) => `${f} (named in manifest.json)`);
  for (const [file, bytes] of contents) {
    if (!file.endsWith('.js')) continue;
    for (const [, spec] of bytes.toString('utf8').matchAll(/(?:import|from)\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
      const target = posix.normalize(posix.join(posix.dirname(file), spec));
      if (!contents.has(target)) missing.push(`${target} (imported by ${file})`);
    }
  }
  return missing;
}

// ---------------------------------------------------------------- zip

// A stored zip is a local header + data per entry, then a central directory and its end record
// (APPNOTE 4.3). node's zlib gives raw deflate and CRC-32, which is all a zip of a few small
// files needs; every timestamp is 1980-01-01 00:00 (DOS date 0x21), so equal input gives equal bytes.
export function zip(entries) {
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const [name, data] of [...entries].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const nameBytes = Buffer.from(name, 'utf8');
    const packed = deflateRawSync(data, { level: 9 });
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed: deflate
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(8, 8); // deflate
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(0x21, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(packed.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    local.writeUInt16LE(0, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(0x0314, 4); // made by: Unix, so the mode below is read
    local.copy(central, 6, 4, 30); // version needed … name length: the same fields
    central.writeUInt16LE(0, 32); // comment length
    central.writeUInt16LE(0, 34); // disk
    central.writeUInt16LE(0, 36); // internal attributes
    central.writeUInt32LE((0o100644 << 16) >>> 0, 38); // regular file, rw-r--r--
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, packed);
    centrals.push(central, nameBytes);
    offset += local.length + nameBytes.length + packed.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.size, 8);
  end.writeUInt16LE(entries.size, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

// ---------------------------------------------------------------- build

/** Build the packages; returns [{target, path, files, bytes}]. Throws BrandError on a bad configuration. */
export function build({ brandPath = join(EXT, 'brand.json'), outDir = resolve(EXT, '..', 'dist'), targets = TARGETS, dev = false } = {}) {
  let raw;
  try { raw = JSON.parse(readFileSync(brandPath, 'utf8')); } catch (err) { throw new BrandError(`${brandPath}: ${err.message}`); }
  const brand = validateBrand(raw, { dev });
  const base = JSON.parse(readFileSync(join(EXT, 'manifest.json'), 'utf8'));
  const icons = loadIcons(brand, dirname(resolve(brandPath)));
  const slug = brand.shortName.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'extension';
  mkdirSync(outDir, { recursive: true });
  const built = [];
  for (const target of targets) {
    const manifest = buildManifest(base, brand, target);
    const config = configModule(brand, target);
    const contents = new Map();
    for (const f of packedFiles()) contents.set(f, readFileSync(join(EXT, f)));
    // The Firefox bridge ships only where the manifest injects it.
    if (!manifest.content_scripts) contents.delete('bridge.js');
    for (const [f, bytes] of Object.entries(icons)) contents.set(f, bytes);
    contents.set('config.js', Buffer.from(config));
    contents.set('manifest.json', Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));
    const missing = missingReferences(manifest, contents);
    if (missing.length) throw new BrandError(`missing from the package: ${missing.join(', ')}`);
    if (!dev) {
      const problems = storeProblems(manifest, { backendUrl: brand.backendUrl, connectUrl: brand.connectUrl, pairingOrigins: brand.pairingOrigins });
      if (problems.length) throw new BrandError(`not for a store package: ${problems.join('; ')}`);
    }
    const out = join(outDir, `${slug}-${target}-${manifest.version}${dev ? '-dev' : ''}.zip`);
    const bytes = zip(contents);
    writeFileSync(`${out}.tmp`, bytes);
    renameSync(`${out}.tmp`, out);
    built.push({ target, path: out, files: contents.size, bytes: bytes.length, version: manifest.version });
  }
  return built;
}

function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new BrandError(`${arg} needs a value`);
      i += 1;
      return argv[i];
    };
    if (arg === '--brand') opts.brandPath = resolve(value());
    else if (arg === '--out') opts.outDir = resolve(value());
    else if (arg === '--target') opts.targets = value().split(',');
    else if (arg === '--dev') opts.dev = true;
    else throw new BrandError(`unknown argument ${arg} (use --brand FILE, --out DIR, --target chrome,firefox, --dev)`);
  }
  for (const t of opts.targets ?? []) if (!TARGETS.includes(t)) throw new BrandError(`unknown target ${t}`);
  return opts;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    for (const b of build(parseArgs(process.argv.slice(2)))) {
      console.log(`${relative(process.cwd(), b.path) || b.path} (${b.target}, ${b.files} files, ${b.bytes} bytes, version ${b.version})`);
    }
  } catch (err) {
    if (!(err instanceof BrandError)) throw err;
    console.error(`build.mjs: ${err.message}`);
    process.exit(1);
  }
}
