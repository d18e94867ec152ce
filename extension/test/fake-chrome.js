// A small in-memory stand-in for the chrome.* APIs background.js uses, so the
// service worker's wiring can be exercised under node (the real thing is covered
// by tests/e2e in Chromium).

class Event {
  constructor() { this.listeners = []; }
  addListener(fn) { this.listeners.push(fn); }
  emit(...args) { return this.listeners.map((fn) => fn(...args)); }
}

function area() {
  let data = {};
  return {
    async get(keys) {
      const list = keys === undefined || keys === null ? Object.keys(data) : [].concat(keys);
      return Object.fromEntries(list.filter((k) => k in data).map((k) => [k, structuredClone(data[k])]));
    },
    async set(items) { data = { ...data, ...structuredClone(items) }; },
    async remove(keys) { for (const k of [].concat(keys)) delete data[k]; },
    dump() { return structuredClone(data); },
  };
}

export function makeChrome({ version = '0.1.0', granted = [] } = {}) {
  const cookies = new Map();
  const alarms = new Map();
  const chrome = {
    runtime: {
      id: 'testextensionid',
      getManifest: () => ({ version }),
      getURL: (p) => `chrome-extension://testextensionid/${p}`,
      onMessage: new Event(),
      onMessageExternal: new Event(),
    },
    storage: { local: area(), session: area(), onChanged: new Event() },
    action: {
      badge: { text: '', color: null },
      async setBadgeText({ text }) { chrome.action.badge.text = text; },
      async setBadgeBackgroundColor({ color }) { chrome.action.badge.color = color; },
      async getBadgeText() { return chrome.action.badge.text; },
    },
    alarms: {
      onAlarm: new Event(),
      async create(name, info) { alarms.set(name, { name, scheduledTime: info.when, periodInMinutes: info.periodInMinutes }); },
      async clear(name) { return alarms.delete(name); },
      async get(name) { return alarms.get(name); },
      all: () => alarms,
    },
    cookies: {
      onChanged: new Event(),
      async get({ url, name }) {
        if (!url.startsWith('https://www.linkedin.com')) throw new Error(`No host permissions for cookies at url: "${url}"`);
        const value = cookies.get(name);
        return value === undefined ? null : { name, value, domain: '.linkedin.com' };
      },
      set(name, value) {
        if (value === null) cookies.delete(name); else cookies.set(name, value);
      },
    },
    permissions: {
      onAdded: new Event(),
      async contains({ origins }) { return origins.every((o) => granted.includes(o)); },
      async remove({ origins }) {
        for (const o of origins) {
          const i = granted.indexOf(o);
          if (i >= 0) granted.splice(i, 1);
        }
        return true;
      },
      granted,
    },
  };
  return chrome;
}
