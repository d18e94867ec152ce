// Firefox only (content script on the brand's pairing origins): Firefox has no
// externally_connectable, so a page cannot call runtime.sendMessage(EXTENSION_ID, …). This script
// relays the page's window.postMessage({cookiesync: 'request', id, message}) to the background and
// posts {cookiesync: 'answer', id, answer} back. The background decides with the same
// lib/external.js rules as for Chrome, from the page's URL (sender.url).
// A classic script, not a module: content scripts cannot be ES modules.
(() => {
  const api = globalThis.browser?.runtime ? globalThis.browser : globalThis.chrome;
  // Lets the page's snippet know at once that the extension is there (see README, One-click pairing).
  document.documentElement.dataset.cookiesync = 'ready';
  window.addEventListener('message', (event) => {
    // Only the page itself (not a frame, not another origin) may ask.
    if (event.source !== window || event.origin !== window.location.origin) return;
    const data = event.data;
    if (!data || data.cookiesync !== 'request' || typeof data.id !== 'string') return;
    Promise.resolve(api.runtime.sendMessage({ type: 'external', message: data.message }))
      .catch(() => null)
      .then((answer) => window.postMessage({ cookiesync: 'answer', id: data.id, answer: answer ?? null }, window.location.origin));
  });
})();
