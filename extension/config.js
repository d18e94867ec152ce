// What a build bakes in. tools/build.mjs rewrites this file in each package from the brand
// configuration (brand.json or `make extension BRAND=path`); this copy is the generic build's,
// so the folder also loads unpacked as it is.
//   backendUrl:     the sync server, or null (the user types it in the popup)
//   pairingOrigins: web origins allowed to pair the extension (externally_connectable), exact
//   connectUrl:     the integrator's page where "Connect LinkedIn" lives (shown while unpaired)
//   target:         'chrome' (also Edge) or 'firefox'
export const CONFIG = Object.freeze({
  backendUrl: null,
  pairingOrigins: Object.freeze([]),
  connectUrl: null,
  target: 'chrome',
});
