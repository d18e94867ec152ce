// The sync payload, exactly as the backend expects it:
// {"li_at": str, "li_a": str|null, "user_agent": str, "plain_id": str, "extension_version": str}

export class PayloadError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'PayloadError';
    this.code = code;
  }
}

const DIGITS = /^[0-9]{1,20}$/;

/** Build the body of POST /v1/extension/sync. Throws PayloadError when a piece is missing. */
export function buildSyncPayload({ liAt, liA, userAgent, plainId, version }) {
  if (typeof liAt !== 'string' || liAt.length === 0) {
    throw new PayloadError('not_logged_in', 'no li_at cookie');
  }
  const plain = plainId === null || plainId === undefined ? '' : String(plainId);
  if (!DIGITS.test(plain)) {
    throw new PayloadError('no_plain_id', 'no LinkedIn member id');
  }
  if (typeof userAgent !== 'string' || userAgent.length === 0) {
    throw new PayloadError('no_user_agent', 'no user agent');
  }
  if (typeof version !== 'string' || version.length === 0) {
    throw new PayloadError('no_version', 'no extension version');
  }
  return {
    li_at: liAt,
    li_a: typeof liA === 'string' && liA.length > 0 ? liA : null,
    user_agent: userAgent,
    plain_id: plain,
    extension_version: version,
  };
}

export const SYNC_REASONS = Object.freeze(['startup', 'alarm', 'manual', 'cookie-change', 'follow-up']);

export function isSyncReason(reason) {
  return SYNC_REASONS.includes(reason);
}

/** The request (method, url, headers, body) for a sync. */
export function buildSyncRequest(baseUrl, token, reason, payload) {
  if (!isSyncReason(reason)) throw new PayloadError('bad_reason', `unknown sync reason: ${reason}`);
  return {
    url: `${baseUrl}/v1/extension/sync`,
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      Authorization: `Bearer ${token}`,
      'X-Sync-Reason': reason,
    },
    body: JSON.stringify(payload),
  };
}

/** A short description of a payload that is safe to log: never a cookie value. */
export function describePayload(payload) {
  return `li_at present, li_a ${payload.li_a ? 'present' : 'absent'}, plain_id ${payload.plain_id}`;
}
