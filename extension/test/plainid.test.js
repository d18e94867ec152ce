import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { decodeHtmlEntities, extractPlainId, findPlainIds, plainIdProblem } from '../lib/plainid.js';

const fixture = (name) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

test('decodes the entities LinkedIn uses, in a single pass', () => {
  assert.equal(decodeHtmlEntities('{&quot;a&quot;:&#34;b&#34;,&#x22;c&#X22;}'), '{"a":"b","c"}');
  assert.equal(decodeHtmlEntities('Tom &amp;amp; Jerry &lt;3 &apos;x&#39;'), "Tom &amp; Jerry <3 'x'");
  assert.equal(decodeHtmlEntities('&amp;quot;'), '&quot;');
  assert.equal(decodeHtmlEntities('&unknown; &#99999999; & alone'), '&unknown; &#99999999; & alone');
});

test('finds plainId in a real-looking feed page (&quot; escaping, other members around)', () => {
  assert.equal(extractPlainId(fixture('feed-quot.html')), '738291046');
});

test('tolerates &#34; escaping, whitespace, key reordering and an upper-case closing tag', () => {
  assert.equal(extractPlainId(fixture('feed-numeric-entities-reordered.html')), '5550001234');
});

test('tolerates hexadecimal entities', () => {
  assert.equal(extractPlainId(fixture('feed-hex-entities.html')), '42424242');
});

test('falls back to the text when the JSON moved out of <code>', () => {
  assert.equal(extractPlainId(fixture('feed-plainid-moved.html')), '90817263');
});

test('returns a string of digits, also when LinkedIn sends the id as a string', () => {
  const html = '<code>{&quot;data&quot;:{&quot;plainId&quot;:&quot;0012345&quot;}}</code>';
  assert.equal(extractPlainId(html), '12345');
  assert.equal(typeof extractPlainId(fixture('feed-quot.html')), 'string');
});

test('keeps every digit of ids beyond 2^53', () => {
  const html = '<code>{&quot;data&quot;:{&quot;plainId&quot;:98765432109876543210}}</code>';
  assert.equal(extractPlainId(html), '98765432109876543210');
});

test('a signed-out page has no member id', () => {
  assert.equal(extractPlainId(fixture('guest-home.html')), null);
  assert.equal(plainIdProblem(fixture('guest-home.html')), 'none');
  assert.equal(extractPlainId(''), null);
  assert.equal(extractPlainId(undefined), null);
});

test('two different members on one page: refuse to guess', () => {
  assert.deepEqual(findPlainIds(fixture('feed-two-members.html')), ['111111111', '222222222']);
  assert.equal(extractPlainId(fixture('feed-two-members.html')), null);
  assert.equal(plainIdProblem(fixture('feed-two-members.html')), 'ambiguous');
});

test('the same member twice is fine', () => {
  assert.equal(extractPlainId(fixture('feed-same-member-twice.html')), '333444555');
  assert.equal(plainIdProblem(fixture('feed-same-member-twice.html')), null);
});

test('ignores plainId outside a top-level data object when a structured one exists', () => {
  const html = '<code>{&quot;included&quot;:[{&quot;plainId&quot;:1}],&quot;data&quot;:{&quot;x&quot;:1}}</code>'
    + '<code>{&quot;data&quot;:{&quot;plainId&quot;:777}}</code>';
  assert.equal(extractPlainId(html), '777');
});

test('broken JSON in a <code> block does not throw', () => {
  const html = '<code>{&quot;data&quot;:{&quot;plainId&quot;:12,</code>';
  assert.equal(extractPlainId(html), '12'); // textual fallback
  assert.equal(extractPlainId('<code>{not json plainId}</code>'), null);
});
