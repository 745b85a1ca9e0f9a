import { Buffer } from 'node:buffer';
import t from 'tap';
import { forwardedAddress, limitedUnit } from '../src/address.js';
import { ConfigError, loadConfig, settings } from '../src/config.js';
import { constantTimeEqual, newIdentity, tokenMatches } from '../src/identity.js';
import { clusterKeys, randomKeys } from '../src/keys.js';
import { TokenBucket } from '../src/limits.js';
import {
  decodeClientFrame,
  encode,
  encodeMsg,
  encodeSent,
  utf8Length,
  type WelcomeFrame,
  welcomeEncoder,
} from '../src/protocol.js';
import { ReportTracker } from '../src/reports.js';
import { ManualClock } from './fixtures/manual-clock.js';

t.test('config: defaults, parsing, all problems at once, frozen', async (t) => {
  const c = loadConfig({});
  t.equal(c.port, 8080);
  t.equal(c.host, '127.0.0.1');
  t.equal(c.maxMessageBytes, 4096);
  t.ok(c.bufferSessionMaxMessages >= 300);
  t.ok(Object.isFrozen(c));
  const parsed = loadConfig({ PORT: '9000', TRUST_PROXY: 'yes', ALLOWED_ORIGINS: 'https://a, https://b' });
  t.same([parsed.port, parsed.trustProxy, parsed.allowedOrigins], [9000, true, ['https://a', 'https://b']]);
  try {
    loadConfig({ PORT: '70000', LOG_LEVEL: 'loud', IDLE_TIMEOUT_S: '1.5' });
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof ConfigError);
    t.equal((err as ConfigError).problems.length, 3, 'every problem reported together');
  }
  t.throws(() => loadConfig({ IDLE_TIMEOUT_S: '4' }), /IDLE_TIMEOUT_S: must be 0 or at least 8/);
  t.throws(() => loadConfig({ MAX_PAYLOAD_BYTES: '1024', MAX_MESSAGE_BYTES: '4096' }), /MAX_PAYLOAD_BYTES/);
  for (const s of Object.values(settings)) t.ok(s.doc.length > 10, `${s.env} is documented`);
});

t.test('config: <NAME>_FILE reads the value from a file, never echoing it', async (t) => {
  const dir = t.testdir({ secret: `${Buffer.alloc(32, 7).toString('base64')}\n`, port: '9100', short: 'c2hvcnQ=' });
  const c = loadConfig({ CLUSTER_SECRET_FILE: `${dir}/secret`, PORT_FILE: `${dir}/port` });
  t.equal(c.clusterSecret, Buffer.alloc(32, 7).toString('base64'), 'the trailing newline is dropped');
  t.equal(c.port, 9100);
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig(env);
      return [];
    } catch (err) {
      return (err as ConfigError).problems;
    }
  };
  t.same(problems({ PORT: '1', PORT_FILE: `${dir}/port` }), ['PORT and PORT_FILE: set one, not both']);
  t.same(problems({ CLUSTER_SECRET_FILE: `${dir}/missing` }), [
    `CLUSTER_SECRET_FILE: cannot read ${dir}/missing (ENOENT)`,
  ]);
  const bad = problems({ CLUSTER_SECRET_FILE: `${dir}/short` });
  t.match(bad, [/^CLUSTER_SECRET: expected base64/]);
  t.notOk(bad.join('').includes('c2hvcnQ'), 'the contents are never echoed');
});

t.test('identity: token check is exact', async (t) => {
  const key = randomKeys().token;
  const id = newIdentity(key);
  const other = newIdentity(key);
  t.match(id.token, /^[A-Za-z0-9_-]{43}$/, '256 bits, base64url');
  t.equal(tokenMatches(key, id.id, id.token), true);
  t.equal(tokenMatches(key, id.id, other.token), false, "another session's token");
  t.equal(tokenMatches(key, other.id, id.token), false);
  t.equal(tokenMatches(key, id.id, `${id.token}x`), false);
  t.equal(tokenMatches(key, id.id, `${id.token.slice(0, -1)}${id.token.endsWith('A') ? 'B' : 'A'}`), false);
  t.equal(tokenMatches(key, id.id, id.token.slice(0, -1)), false, 'a prefix');
  t.equal(tokenMatches(key, id.id, ''), false);
  t.equal(tokenMatches(randomKeys().token, id.id, id.token), false, 'another key (another process alone)');
});

t.test('keys: every instance sharing CLUSTER_SECRET derives the same keys, and no other secret does', async (t) => {
  const secret = Buffer.alloc(32, 7);
  const a = clusterKeys(secret);
  const b = clusterKeys(Buffer.from(secret));
  t.same(a.token, b.token);
  t.same(a.address, b.address);
  t.notSame(a.token, a.address, 'one key per use');
  t.notSame(clusterKeys(Buffer.alloc(32, 8)).token, a.token);
  t.notSame(a.token, secret, 'the secret itself is never the key');
  const id = newIdentity(a.token);
  t.equal(tokenMatches(b.token, id.id, id.token), true, "another instance checks this instance's token");
});

t.test('identity: the constant-time comparison tokens are checked with', async (t) => {
  t.equal(constantTimeEqual('abc', 'abc'), true);
  t.equal(constantTimeEqual('', ''), true);
  t.equal(constantTimeEqual('abc', 'abd'), false, 'last character');
  t.equal(constantTimeEqual('abc', 'xbc'), false, 'first character');
  t.equal(constantTimeEqual('abc', 'ab'), false, 'a prefix');
  t.equal(constantTimeEqual('ab', 'abc'), false, 'an extension');
  t.equal(constantTimeEqual('é', 'e\u0301'), false, 'no Unicode normalization: bytes are compared');
  t.equal(constantTimeEqual('\u00e9', '\u00c3\u00a9'), false, 'not fooled by the same bytes in another encoding');
  t.equal(constantTimeEqual('ü'.repeat(40), 'ü'.repeat(40)), true);
});

t.test('token bucket: burst, refill, wait hint', async (t) => {
  const clock = new ManualClock();
  const bucket = new TokenBucket({ clock, perSecond: 2, burst: 3 });
  t.same([bucket.take(), bucket.take(), bucket.take(), bucket.take()], [true, true, true, false]);
  t.equal(bucket.msUntilToken(), 500);
  clock.advance(500);
  t.equal(bucket.take(), true);
  clock.advance(60_000);
  t.same([bucket.take(), bucket.take(), bucket.take(), bucket.take()], [true, true, true, false], 'capped at burst');
});

t.test('token bucket: fractional rates on epoch-millisecond clocks give exactly the burst', async (t) => {
  // Float error on ~1.7e12 ms must neither refuse the last token of a burst nor allow one more.
  for (const perSecond of [3, 7, 1 / 6, 1000]) {
    const clock = new ManualClock(1_763_000_000_000.123);
    const bucket = new TokenBucket({ clock, perSecond, burst: 5 });
    const takes = Array.from({ length: 6 }, () => bucket.take());
    t.same(takes, [true, true, true, true, true, false], `${perSecond}/s`);
    const wait = bucket.msUntilToken();
    t.equal(wait, Math.ceil(1000 / perSecond), `${perSecond}/s: wait one interval`);
    clock.advance(wait - 1);
    t.equal(bucket.take(), false, `${perSecond}/s: not a millisecond early`);
    clock.advance(1);
    t.equal(bucket.take(), true, `${perSecond}/s: then one token`);
    t.equal(bucket.take(), false);
  }
});

t.test('reports: distinct reporters within the window start a cool-down', async (t) => {
  const clock = new ManualClock();
  const reports = new ReportTracker({ clock, threshold: 2, windowMs: 1000, cooldownMs: 5000 });
  reports.report(['s1', 'addr1'], 'r1');
  reports.report(['s1', 'addr1'], 'r1');
  t.equal(reports.cooldownLeft(['s1']), 0, 'one reporter twice is one');
  clock.advance(1500);
  reports.report(['s1', 'addr1'], 'r2');
  t.equal(reports.cooldownLeft(['s1']), 0, 'reports older than the window do not count');
  reports.report(['s1', 'addr1'], 'r3');
  t.equal(reports.cooldownLeft(['s1']), 5000);
  t.equal(reports.cooldownLeft(['new-session', 'addr1']), 5000, 'the address is cooled down too');
  clock.advance(5000);
  t.equal(reports.cooldownLeft(['s1', 'addr1']), 0);
});

t.test('protocol: utf8Length agrees with Buffer.byteLength', async (t) => {
  for (const s of ['', 'abc', 'é', '€', '😀', 'a😀b', '\ud800', 'x\udc00y', 'ü'.repeat(100)])
    t.equal(utf8Length(s), Buffer.byteLength(s), JSON.stringify(s));
});

t.test('protocol: decoding normalizes and bounds fields', async (t) => {
  const limits = { maxMessageBytes: 10, maxChunkBytes: 20 };
  t.same(decodeClientFrame('{"type":"find","interests":[" Music ","music","Go"]}', limits), {
    ok: true,
    frame: { type: 'find', interests: ['music', 'go'] },
  });
  t.match(decodeClientFrame('{"type":"find","interests":["a\\u0007"]}', limits), { ok: false, code: 'bad_field' });
  for (const [name, tag] of [
    ['right-to-left override', 'chess\u202emoc.live'],
    ['zero-width space', 'che\u200bss'],
    ['zero-width joiner', 'a\u200db'],
    ['byte order mark', '\ufeffchess'],
    ['lone high surrogate', 'chess\ud800'],
    ['lone low surrogate', '\udc00chess'],
    ['line separator', 'a\u2028b'],
    ['only spaces', '   '],
  ] as [string, string][])
    t.match(
      decodeClientFrame(JSON.stringify({ type: 'find', interests: [tag] }), limits),
      { ok: false, code: 'bad_field' },
      name,
    );
  t.same(
    decodeClientFrame(
      JSON.stringify({ type: 'find', interests: ['Caf\u0065\u0301', 'CAFÉ', '  Board   Games ', '😀'] }),
      limits,
    ),
    { ok: true, frame: { type: 'find', interests: ['café', 'board games', '😀'] } },
    'NFC, case and spacing: decomposed and precomposed é are one tag',
  );
  t.match(decodeClientFrame('{"type":"msg","id":"1","body":"12345678901"}', limits), {
    ok: false,
    code: 'message_too_long',
    id: '1',
  });
  t.match(decodeClientFrame('{"type":"msg","id":"1","body":"x","kind":""}', limits), { ok: false, code: 'bad_field' });
  t.same(decodeClientFrame('{"type":"hello","v":1,"resume":{"id":1}}', limits), {
    ok: true,
    frame: { type: 'hello', v: 1 },
  });
  t.match(decodeClientFrame('{"type":"constructor"}', limits), { ok: false, code: 'unknown_type' });
  t.match(decodeClientFrame('{"type":"ping","t":{"deep":1}}', limits), { ok: false, code: 'bad_field' });
});

t.test('protocol: the hand-built msg and sent frames are exactly what encode gives', async (t) => {
  const awkward = [
    'plain',
    'quote " backslash \\ slash /',
    'new\nline\ttab\u0000nul\u001f',
    'ünïcödé 한국어 😀',
    'lone \ud800 surrogate \udfff',
    '\u2028\u2029',
    '{"type":"msg"}',
  ];
  for (const text of awkward) {
    t.equal(
      encodeMsg(7, text, text, undefined, 1700000000123),
      encode({ type: 'msg', seq: 7, id: text, body: text, ts: 1700000000123 }),
    );
    t.equal(
      encodeMsg(8, 'id', text, text, 1),
      encode({ type: 'msg', seq: 8, id: 'id', body: text, kind: text, ts: 1 }),
      'with a kind',
    );
    t.equal(encodeSent(text, 9), encode({ type: 'sent', id: text, seq: 9 }));
    t.same(JSON.parse(encodeMsg(1, 'a', text, undefined, 2)).body, text, 'and it parses back');
  }
});

t.test('the hand-built welcome is byte-identical to encode', async (t) => {
  const limits = {
    maxPayloadBytes: 65536,
    maxMessageBytes: 4096,
    rateLimitPerSec: 20,
    rateLimitBurst: 40,
    maxInterests: 5,
    maxInterestLength: 32,
    bufferMessages: 500,
    maxChunkBytes: 64_000,
    maxFileBytes: 10 * 1024 * 1024,
    fileRateBytesPerSec: 4 * 1024 * 1024,
    fileRateBurstBytes: 1024 * 1024,
    fileWindowChunks: 8,
  };
  const welcome = welcomeEncoder(120_000, limits);
  const chat = {
    id: 'c1',
    partner: 'away' as const,
    interests: ['a "b"', 'ü'],
    initiator: true,
    via: 'invite' as const,
    sentSeq: 3,
    deliveredSeq: 2,
    readSeq: 1,
  };
  for (const [resumed, state, c] of [
    [false, 'idle', null],
    [true, 'chatting', chat],
    [true, 'queued', null],
  ] as const) {
    const frame: WelcomeFrame = {
      type: 'welcome',
      id: 'i"d',
      token: 't\\k',
      resumed,
      resumeWindowMs: 120_000,
      limits,
      state,
      chat: c === null ? null : { ...c, interests: [...c.interests] },
    };
    t.equal(welcome('i"d', 't\\k', resumed, state, c), encode(frame), state);
  }
});

t.test('address: the client entry of a forwarding header, by trusted hops', async (t) => {
  t.equal(forwardedAddress('192.0.2.1', 1), '192.0.2.1');
  t.equal(forwardedAddress('10.0.0.1, 192.0.2.1', 1), '192.0.2.1', 'nginx alone: the last');
  t.equal(forwardedAddress('192.0.2.1, 198.51.100.7', 2), '192.0.2.1', 'CDN then nginx: second from the right');
  t.equal(forwardedAddress('6.6.6.6, 192.0.2.1 ,198.51.100.7', 2), '192.0.2.1', 'what the client wrote is ignored');
  t.equal(forwardedAddress('192.0.2.1', 3), '192.0.2.1', 'fewer entries than hops: the leftmost');
});

t.test('address: IPv6 clients count by /64, mapped IPv4 as IPv4', async (t) => {
  t.equal(limitedUnit('192.0.2.1'), '192.0.2.1');
  t.equal(limitedUnit('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
  t.equal(limitedUnit('2001:db8:1:2::9'), '2001:db8:1:2::/64');
  t.equal(limitedUnit('[2001:db8:1:2::9]'), '2001:db8:1:2::/64');
  t.equal(limitedUnit('::ffff:192.0.2.7'), '192.0.2.7');
  t.equal(limitedUnit('0000:0000:0000:0000:0000:ffff:c000:0207'), '192.0.2.7', 'as uWebSockets.js writes it');
  t.equal(limitedUnit('2001:db8::1.2.3.4'), '2001:db8:0:0::/64');
  t.equal(limitedUnit('::1'), '0:0:0:0::/64');
});
