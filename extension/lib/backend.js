// The backend URL the user types at pairing time, and the answers of the pairing call.

export class BackendUrlError extends Error {
  constructor(message) {
    super(message);
    this.name = 'BackendUrlError';
  }
}

const LOOPBACK = /^(localhost|127(?:\.[0-9]{1,3}){3}|\[::1\])$/i;

export function isLoopbackHost(hostname) {
  return LOOPBACK.test(hostname) || /\.localhost$/i.test(hostname);
}

/**
 * Normalise what the user typed into a base URL without a trailing slash.
 * HTTPS is required, except for loopback addresses (local development):
 * a session cookie must never cross the network in clear.
 */
export function normalizeBackendUrl(input) {
  let text = String(input ?? '').trim();
  if (!text) throw new BackendUrlError('Enter the address of your sync server.');
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    const host = text.split(/[/:]/)[0];
    text = `${isLoopbackHost(host) ? 'http' : 'https'}://${text}`;
  }
  let url;
  try { url = new URL(text); } catch { throw new BackendUrlError('That is not a valid address.'); }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new BackendUrlError('The sync server address must start with https://.');
  }
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    throw new BackendUrlError('The sync server must use https:// (plain http is only allowed for localhost).');
  }
  if (url.username || url.password) throw new BackendUrlError('Leave user names and passwords out of the address.');
  if (url.search || url.hash) throw new BackendUrlError('Leave ?query and #fragment out of the address.');
  const path = url.pathname.replace(/\/+$/, '');
  return `${url.origin}${path}`;
}

/** The host-permission pattern for a base URL, e.g. "https://sync.example.com/*" (any port is covered by the host). */
export function originPattern(baseUrl) {
  const url = new URL(baseUrl);
  return `${url.protocol}//${url.hostname}/*`;
}

/** Read the answer of POST /v1/extension/pair. */
export function parsePairResponse(status, body) {
  if (status === 201 || status === 200) {
    if (body && typeof body.device_token === 'string' && body.device_token && typeof body.user_id === 'string') {
      return {
        ok: true,
        token: body.device_token,
        userId: body.user_id,
        nextSyncInS: Number.isFinite(body.next_sync_in_s) ? body.next_sync_in_s : null,
      };
    }
    return { ok: false, message: 'The sync server gave an answer the extension did not understand.' };
  }
  const detail = body && typeof body.detail === 'string' ? body.detail : null;
  if (status === 429) return { ok: false, message: `Too many pairing attempts. ${detail ?? 'Try again later.'}` };
  if (status >= 400 && status < 500) {
    return { ok: false, message: `That pairing code was not accepted${detail ? `: ${detail}` : ' (used, expired or unknown)'}. Ask for a new code.` };
  }
  return { ok: false, message: `The sync server had a problem (HTTP ${status}). Try again in a moment.` };
}
