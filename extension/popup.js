// The popup: pair / show state / sync now / unpair. The service worker does the work;
// this page only asks for the host permission (it needs the user's click) and displays storage.

import { normalizeBackendUrl, originPattern } from './lib/backend.js';
import { headline } from './lib/state.js';
import { formatWhen, linkStatusWords } from './lib/format.js';
import { attention } from './lib/attention.js';
import { CONFIG } from './config.js';
import { ext as chrome } from './platform.js';

const $ = (id) => document.getElementById(id);

const messageTimers = new Map();

/** Show a short-lived message under a form (cleared after a few seconds). */
function setMessage(el, text, tone = '', ttlMs = 6000) {
  el.textContent = text ?? '';
  el.className = `message ${tone}`;
  clearTimeout(messageTimers.get(el));
  if (text && ttlMs) messageTimers.set(el, setTimeout(() => setMessage(el, ''), ttlMs));
}

async function render() {
  const { status, lastBackendUrl, defaultBackendUrl } = await chrome.storage.local.get(
    ['status', 'lastBackendUrl', 'defaultBackendUrl'],
  );
  const st = status ?? { phase: 'unpaired' };
  const head = headline(st);
  const badge = $('headline');
  badge.textContent = head.text;
  badge.className = `badge ${head.tone}`;
  document.body.dataset.phase = st.phase;

  const paired = st.phase === 'paired';
  $('pair-section').hidden = paired;
  $('paired-section').hidden = !paired;

  if (!paired) {
    // A build with its backend baked in asks for nothing when pairing comes from the integrator's
    // page; baked in without pairing origins, it takes the code (never an address).
    const fromPage = Boolean(CONFIG.backendUrl) && CONFIG.pairingOrigins.length > 0;
    $('pair-form').hidden = fromPage;
    $('pair-hint').hidden = Boolean(CONFIG.backendUrl);
    $('connect-box').hidden = !fromPage;
    for (const el of [$('backend-url'), $('backend-url-label')]) el.hidden = Boolean(CONFIG.backendUrl);
    const notice = $('pair-again-notice');
    notice.hidden = st.phase !== 'pair_again';
    notice.textContent = st.phase === 'pair_again'
      ? (st.lastError?.message ?? 'This browser is no longer paired. Pair again with a new pairing code.')
      : '';
    const url = $('backend-url');
    if (!url.value) url.value = CONFIG.backendUrl ?? st.backendUrl ?? lastBackendUrl ?? defaultBackendUrl ?? '';
    return;
  }

  $('backend').textContent = st.backendUrl ?? '';
  $('plain-id').textContent = st.plainId ? `member ${st.plainId}` : 'not seen yet';
  $('link-status').textContent = linkStatusWords(st.linkStatus, st.holdReason)
    + (st.lastError && st.linkStatus ? ' (as of the last sync)' : '');
  $('last-sync').textContent = formatWhen(st.lastSyncAt);
  // What happened, in one sentence, and the server's reconnect link as the button (lib/attention.js).
  const seen = attention(st);
  const box0 = $('attention');
  box0.hidden = !seen;
  box0.className = `notice ${seen?.tone ?? ''}`;
  $('attention-text').textContent = seen?.message ?? '';
  const reconnect = $('reconnect');
  reconnect.hidden = !seen?.button;
  if (seen?.button) {
    reconnect.href = seen.button.url;
    reconnect.textContent = seen.button.label;
  } else {
    reconnect.removeAttribute('href');
  }
  const box = $('error-box');
  box.hidden = !st.lastError || Boolean(st.signedOut); // signed out: the sentence above says it all
  $('last-error').textContent = st.lastError?.message ?? '';
  const nextTry = $('next-try');
  nextTry.hidden = !(st.lastError && st.nextAllowedAt);
  nextTry.textContent = st.nextAllowedAt ? `Next try: ${formatWhen(st.nextAllowedAt)}` : '';
}

$('pair-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const message = $('pair-message');
  let baseUrl;
  try {
    baseUrl = normalizeBackendUrl($('backend-url').value);
  } catch (err) {
    setMessage(message, err.message, 'bad');
    return;
  }
  const pairingCode = $('pairing-code').value.trim();
  if (!pairingCode) {
    setMessage(message, 'Enter the pairing code.', 'bad');
    return;
  }
  const button = $('pair-button');
  button.disabled = true;
  setMessage(message, 'Asking for permission to contact the sync server…', '', 0);
  // Must be called right here, inside the click: Chrome only shows the
  // permission prompt during a user gesture.
  const permission = chrome.permissions.request({ origins: [originPattern(baseUrl)] });
  // Should this popup close while the prompt has the focus, the service worker
  // finishes the pairing when the permission arrives (permissions.onAdded).
  chrome.storage.session.set({ pendingPair: { backendUrl: baseUrl, pairingCode, at: Date.now() } });
  permission
    .then(async (granted) => {
      if (!granted) {
        setMessage(message, `Pairing needs permission to contact ${new URL(baseUrl).host}. It was not granted.`, 'bad', 0);
        return;
      }
      setMessage(message, 'Pairing…', '', 0);
      const answer = await chrome.runtime.sendMessage({ type: 'pair', backendUrl: baseUrl, pairingCode });
      if (answer?.ok) {
        $('pairing-code').value = '';
        setMessage(message, '');
        const sync = answer.sync;
        setMessage($('sync-message'), sync?.ok ? 'Paired and synced.' : 'Paired.', 'good');
      } else {
        setMessage(message, answer?.message ?? 'Pairing failed.', 'bad', 0);
      }
    })
    .catch((err) => setMessage(message, `Pairing failed: ${err?.message ?? err}`, 'bad', 0))
    .finally(() => { button.disabled = false; render(); });
});

$('sync-now').addEventListener('click', async () => {
  const button = $('sync-now');
  const message = $('sync-message');
  button.disabled = true;
  setMessage(message, 'Syncing…');
  try {
    const result = await chrome.runtime.sendMessage({ type: 'sync' });
    if (result?.ok) setMessage(message, 'Synced.', 'good');
    else if (result?.outcome === 'deferred') setMessage(message, `The server asked to wait; next try ${formatWhen(result.retryAt)}.`, 'bad');
    else setMessage(message, '', '');
  } catch (err) {
    setMessage(message, `Sync failed: ${err?.message ?? err}`, 'bad');
  } finally {
    button.disabled = false;
    render();
  }
});

$('unpair').addEventListener('click', async () => {
  $('unpair').disabled = true;
  try {
    const result = await chrome.runtime.sendMessage({ type: 'unpair' });
    setMessage($('pair-message'), result?.revoked ? 'Unpaired.' : 'Unpaired here (the server could not be reached).', 'good');
  } finally {
    $('unpair').disabled = false;
    render();
  }
});

chrome.storage.onChanged.addListener((_changes, area) => {
  if (area === 'local') render();
});
setInterval(render, 2_000); // keep the relative times fresh

const { short_name: shortName, version } = chrome.runtime.getManifest();
$('version').textContent = `v${version}`;
$('title').textContent = shortName;
document.title = shortName;
$('connect-link').hidden = !CONFIG.connectUrl;
if (CONFIG.connectUrl) $('connect-link').href = CONFIG.connectUrl;
render();
