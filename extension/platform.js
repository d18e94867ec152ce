// The one place that picks the WebExtension namespace: Firefox's promise-based `browser.*`
// where it exists, Chrome's (and Edge's) `chrome.*` otherwise. The other modules import it as
// `import { ext as chrome } from './platform.js'`, so their `chrome.*` calls stay as they read
// and run on either browser.
//
// A Proxy rather than a captured value: the lookup happens on each use, so the node tests,
// which install a fresh fake `chrome` per loaded worker, see the current one.
export const ext = new Proxy({}, {
  get(_target, key) {
    const api = globalThis.browser?.runtime ? globalThis.browser : globalThis.chrome;
    return api[key];
  },
});
