// Messages from the integrator's web page: `chrome.runtime.sendMessage(EXTENSION_ID, {type, ...})`
// (externally_connectable). Kept pure: a message and its sender in, a Decision out;
// background.js carries the decision out with the existing pairing and storage code.
//
// It will not: answer a page whose origin is not in the baked-in list (even though Chrome already
// keeps unlisted pages from reaching the extension: the check here is the second wall), answer
// another extension, pair with any server but the baked-in one (the page sends a code, never an
// address), or put the device token, the user id or a cookie into an answer.

/** Pairing codes as the service mints them (security.py: 10 characters, grouped with a dash); spaces and case forgiven. */
const CODE = /^[A-Za-z0-9-]{4,32}$/;

/** The web origin of a sender: `sender.origin` (Chrome 80+), else the origin of `sender.url`. */
export function senderOrigin(sender) {
  if (typeof sender?.origin === 'string' && sender.origin && sender.origin !== 'null') return sender.origin;
  try {
    return new URL(sender?.url).origin;
  } catch {
    return null;
  }
}

function fromAllowedPage(sender, { pairingOrigins, ownId }) {
  // A web page has no sender.id; one set to anything but ours is another extension.
  if (sender?.id !== undefined && sender.id !== ownId) return false;
  const origin = senderOrigin(sender);
  return origin !== null && pairingOrigins.includes(origin);
}

/**
 * What to do with a message from outside the extension.
 *   {action: 'ignore'}                 the sender is not allowed: no answer at all
 *   {action: 'status'}                 answer with statusAnswer()
 *   {action: 'pair', code}             pair with the baked-in backend, then answer with pairAnswer()
 *   {action: 'reply', answer}          answer at once (a malformed request from an allowed page)
 */
export function decideExternal(message, sender, { pairingOrigins = [], backendUrl = null, ownId = null } = {}) {
  if (!backendUrl || !fromAllowedPage(sender, { pairingOrigins, ownId })) return { action: 'ignore' };
  switch (message?.type) {
    case 'status':
      return { action: 'status' };
    case 'pair':
      return pairRequest(message);
    default:
      return { action: 'reply', answer: { ok: false, error: 'unknown_type', message: 'type must be "pair" or "status"' } };
  }
}

function pairRequest(message) {
  const code = typeof message.code === 'string' ? message.code.trim() : '';
  if (!CODE.test(code)) {
    return { action: 'reply', answer: { ok: false, error: 'bad_code', message: 'code must be the pairing code from POST /v1/users/{id}/pairing-codes' } };
  }
  return { action: 'pair', code };
}

/** The answer to {type: "status"}: installed, paired or not, and the link status; nothing secret. */
export function statusAnswer(status, version) {
  const paired = status?.phase === 'paired';
  return {
    ok: true,
    installed: true,
    version,
    paired,
    // pair_again: the server refused the token; the page should pair again.
    needsPairing: !paired,
    linkStatus: paired ? (status.linkStatus ?? null) : null,
  };
}

/** The answer to {type: "pair"}, from what pairing returned and the status stored after it. */
export function pairAnswer(result, status, version) {
  if (!result?.ok) return { ok: false, error: 'pairing_failed', message: result?.message ?? 'Pairing failed.', paired: status?.phase === 'paired' };
  return { ...statusAnswer(status, version), ok: true, synced: Boolean(result.sync?.ok) };
}
