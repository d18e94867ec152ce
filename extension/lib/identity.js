// When the service worker reads the LinkedIn member id (linkedin.com/feed/, several hundred KB),
// kept pure: the member cannot change without li_at changing, so a heartbeat whose li_at is the
// one the member id was last read with reuses that id and makes no request to linkedin.com.
// Once a day it is read again all the same, in case LinkedIn reissues the page differently.
//
// What this will not do: fetch, hash or store anything (background.js does, with `sha256Hex`),
// or keep a failed read (no member id, signed-out page): only a read that named a member is
// remembered, so the next sync tries again.

export const MEMBER_READ_MAX_AGE_MS = 24 * 3600 * 1000;

/**
 * Should this sync read the member id? `memo` is what `remember` returned after the last good
 * read ({liAtSha256, plainId, readAt}) or null; `liAtSha256` is the hash of the li_at now in the
 * browser. Returns {read: true, why} or {read: false, plainId}.
 */
export function memberRead(memo, liAtSha256, now) {
  if (!memo || typeof memo.plainId !== 'string' || !memo.plainId) return { read: true, why: 'never read' };
  if (memo.liAtSha256 !== liAtSha256) return { read: true, why: 'li_at changed' };
  if (!(now - memo.readAt < MEMBER_READ_MAX_AGE_MS) || memo.readAt > now) return { read: true, why: 'a day old' };
  return { read: false, plainId: memo.plainId };
}

/** The memo of a good read: the member id and the li_at (its hash) it was read with. */
export function remember(liAtSha256, plainId, now) {
  return { liAtSha256, plainId, readAt: now };
}

/** SHA-256 of a string, as 64 lowercase hex digits (Web Crypto: the worker's, or node's). */
export async function sha256Hex(text) {
  const digest = await globalThis.crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}
