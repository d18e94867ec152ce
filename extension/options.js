import { BackendUrlError, normalizeBackendUrl } from './lib/backend.js';
import { formatWhen, linkStatusWords } from './lib/format.js';
import { CONFIG } from './config.js';
import { ext as chrome } from './platform.js';

const $ = (id) => document.getElementById(id);

// With a baked-in backend there is no server address to choose.
$('settings').hidden = Boolean(CONFIG.backendUrl);

async function render() {
  const { status, defaultBackendUrl, alarmOverrideMinutes } = await chrome.storage.local.get(
    ['status', 'defaultBackendUrl', 'alarmOverrideMinutes'],
  );
  const input = $('default-backend-url');
  if (document.activeElement !== input) input.value = defaultBackendUrl ?? '';
  const st = status ?? { phase: 'unpaired' };
  const alarm = await chrome.alarms.get('cookiesync-sync');
  const rows = [
    ['Extension version', chrome.runtime.getManifest().version],
    ['Extension id', chrome.runtime.id],
    ['State', { unpaired: 'not paired', paired: 'paired', pair_again: 'pair again (token refused)' }[st.phase] ?? st.phase],
    ['Sync server', st.backendUrl ?? '—'],
    ['User id', st.userId ?? '—'],
    ['Paired at', st.pairedAt ? formatWhen(st.pairedAt) : '—'],
    ['LinkedIn member (plainId)', st.plainId ?? '—'],
    ['Connection', linkStatusWords(st.linkStatus, st.holdReason)],
    ['Unipile account', st.unipileAccountId ?? '—'],
    ['Last successful sync', st.lastSyncAt ? `${formatWhen(st.lastSyncAt)} (${st.lastSyncReason})` : 'never'],
    ['Last attempt', st.lastAttemptAt ? `${formatWhen(st.lastAttemptAt)} (${st.lastAttemptReason})` : 'never'],
    ['Last error', st.lastError?.message ?? 'none'],
    ['Consecutive failures', String(st.failures ?? 0)],
    ['Next allowed try', st.nextAllowedAt ? formatWhen(st.nextAllowedAt) : '—'],
    ['Next scheduled sync', alarm ? `${formatWhen(alarm.scheduledTime)}, every ${alarm.periodInMinutes} min` : 'none'],
  ];
  if (alarmOverrideMinutes) rows.push(['Heartbeat override (test)', `${alarmOverrideMinutes} min`]);
  const dl = $('details');
  dl.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    return [dt, dd];
  }));
  $('unpair').disabled = st.phase !== 'paired';
}

$('settings-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const message = $('settings-message');
  const raw = $('default-backend-url').value.trim();
  try {
    if (raw) await chrome.storage.local.set({ defaultBackendUrl: normalizeBackendUrl(raw) });
    else await chrome.storage.local.remove('defaultBackendUrl');
    message.textContent = 'Saved.';
    message.className = 'message good';
  } catch (err) {
    message.textContent = err instanceof BackendUrlError ? err.message : String(err);
    message.className = 'message bad';
  }
});

$('unpair').addEventListener('click', async () => {
  const result = await chrome.runtime.sendMessage({ type: 'unpair' });
  $('unpair-message').textContent = result?.revoked ? 'Unpaired.' : 'Unpaired here (the server could not be reached).';
  render();
});

chrome.storage.onChanged.addListener((_c, area) => { if (area === 'local') render(); });
render();
