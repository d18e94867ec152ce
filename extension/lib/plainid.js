// Pull the signed-in LinkedIn member id ("plainId") out of a LinkedIn page.
//
// LinkedIn embeds its API responses in the page as HTML-escaped JSON inside
// <code> elements, e.g.
//   <code style="display: none" id="bpr-guid-123">{&quot;data&quot;:{&quot;plainId&quot;:123456789,…},…}</code>
// The "me" response is the one whose top-level `data` carries `plainId`.
// Pure functions, no chrome.* or DOM: tested with `node --test`.

const NAMED = { quot: '"', amp: '&', lt: '<', gt: '>', apos: "'", nbsp: '\u00a0' };

/** Decode the HTML character references LinkedIn uses (single pass, so `&amp;quot;` stays `&quot;`). */
export function decodeHtmlEntities(text) {
  return String(text).replace(/&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]+);/g, (whole, ref) => {
    if (ref[0] === '#') {
      const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      if (!Number.isFinite(code) || code > 0x10ffff) return whole;
      try { return String.fromCodePoint(code); } catch { return whole; }
    }
    const named = NAMED[ref.toLowerCase()];
    return named === undefined ? whole : named;
  });
}

const CODE_BLOCK = /<code\b[^>]*>([\s\S]*?)<\/code\s*>/gi;
const PLAIN_ID_TEXT = /"plainId"\s*:\s*"?\s*([0-9]{1,20})\s*"?/g;
const DIGITS = /^[0-9]{1,20}$/;

function plainIdFromValue(value, rawText) {
  if (typeof value === 'string' && DIGITS.test(value.trim())) return value.trim();
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) {
    if (Number.isSafeInteger(value)) return String(value);
    // Too big for a double: take the digits from the text itself.
    const m = /"plainId"\s*:\s*([0-9]{1,20})/.exec(rawText);
    return m ? m[1] : null;
  }
  return null;
}

/**
 * Every plainId found in the page, in order of appearance (may repeat).
 * Structured pass first: <code> blocks whose JSON has `data.plainId`.
 * If there are none, a textual pass over the whole decoded page (tolerates
 * markup changes such as the JSON moving out of <code>).
 */
export function findPlainIds(html) {
  const found = [];
  const source = String(html ?? '');
  for (const m of source.matchAll(CODE_BLOCK)) {
    const text = decodeHtmlEntities(m[1]).trim();
    if (!text.startsWith('{') || !text.includes('plainId')) continue;
    let json;
    try { json = JSON.parse(text); } catch { continue; }
    const data = json && typeof json === 'object' ? json.data : null;
    if (data && typeof data === 'object' && 'plainId' in data) {
      const id = plainIdFromValue(data.plainId, text);
      if (id) found.push(id);
    }
  }
  if (found.length) return found;
  const decoded = decodeHtmlEntities(source);
  for (const m of decoded.matchAll(PLAIN_ID_TEXT)) found.push(m[1]);
  return found;
}

/**
 * The member id as a string of digits, or null when the page has none or
 * when it names several different members (never guess: a cookie must only
 * ever be attached to the member it belongs to).
 */
export function extractPlainId(html) {
  const ids = new Set(findPlainIds(html).map((id) => id.replace(/^0+(?=\d)/, '')));
  return ids.size === 1 ? [...ids][0] : null;
}

/** Why extractPlainId returned null, in a word: 'none' or 'ambiguous'. */
export function plainIdProblem(html) {
  const ids = new Set(findPlainIds(html).map((id) => id.replace(/^0+(?=\d)/, '')));
  if (ids.size === 0) return 'none';
  if (ids.size > 1) return 'ambiguous';
  return null;
}
