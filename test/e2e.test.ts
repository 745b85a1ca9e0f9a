import t from 'tap';
import { backoffDelay } from '../src/backoff.js';
import { bucketsFor, ChatCipher, fromBase64Url, largestBucket, toBase64Url } from '../src/e2e.js';

const MAX_BODY = 4096;

async function pair(chatId = 'chat-1') {
  const a = await ChatCipher.create(MAX_BODY);
  const b = await ChatCipher.create(MAX_BODY);
  t.ok(await a.accept(b.offer(), chatId));
  t.ok(await b.accept(a.offer(), chatId));
  return { a, b };
}

t.test('both sides derive working keys and the same safety code', async (t) => {
  const { a, b } = await pair();
  t.ok(a.ready && b.ready);
  t.match(a.safetyCode, /^\d{4} \d{4} \d{4}$/);
  t.equal(a.safetyCode, b.safetyCode);
  const sealed = await a.seal('hello ünïcödé 👋');
  t.notMatch(sealed, /hello/);
  t.same(await b.open(sealed), { ok: true, text: 'hello ünïcödé 👋', counter: 1, missed: 0 });
  t.same(await a.open(await b.seal('back')), { ok: true, text: 'back', counter: 1, missed: 0 });
  const other = await pair();
  t.not(other.a.safetyCode, a.safetyCode, 'fresh keys give a different code');
});

t.test('a side cannot open its own messages (one key per direction)', async (t) => {
  const { a } = await pair();
  t.same(await a.open(await a.seal('mine')), { ok: false, reason: 'tampered' });
});

t.test('keys are bound to the chat id', async (t) => {
  const a = await ChatCipher.create(MAX_BODY);
  const b = await ChatCipher.create(MAX_BODY);
  await a.accept(b.offer(), 'chat-1');
  await b.accept(a.offer(), 'chat-2');
  t.equal(a.safetyCode, b.safetyCode, 'the code is about the keys');
  t.same(await b.open(await a.seal('x')), { ok: false, reason: 'tampered' }, 'but a relay that mixes chats is caught');
});

t.test('padding hides the length inside a bucket', async (t) => {
  const { a } = await pair();
  const short = await a.seal('hi');
  const long = await a.seal('x'.repeat(200));
  t.equal(short.length, long.length);
  const bigger = await a.seal('x'.repeat(300));
  t.ok(bigger.length > short.length, 'the next bucket is bigger');
  const biggest = await a.seal('x'.repeat(a.maxTextBytes));
  t.ok(biggest.length <= MAX_BODY, 'the largest text still fits the relay limit');
  await t.rejects(a.seal('x'.repeat(a.maxTextBytes + 1)), /over/);
});

t.test('tampering, replay, reordering and garbage are detected', async (t) => {
  const { a, b } = await pair();
  const m1 = await a.seal('one');
  const m2 = await a.seal('two');
  const m3 = await a.seal('three');
  const bytes = fromBase64Url(m1);
  if (!bytes) throw new Error('bad base64');
  bytes[bytes.length - 20] = (bytes[bytes.length - 20] ?? 0) ^ 1;
  t.same(await b.open(toBase64Url(bytes)), { ok: false, reason: 'tampered' });
  t.same(await b.open(m1), { ok: true, text: 'one', counter: 1, missed: 0 });
  t.same(await b.open(m1), { ok: false, reason: 'replayed' });
  t.same(await b.open(m3), { ok: true, text: 'three', counter: 3, missed: 1 }, 'a skipped counter is reported');
  t.same(await b.open(m2), { ok: false, reason: 'replayed' }, 'an older message arriving late is refused');
  t.same(await b.open('not base64!'), { ok: false, reason: 'malformed' });
  t.same(await b.open('AQ'), { ok: false, reason: 'malformed' });
});

t.test('bad or changed key offers are refused', async (t) => {
  const a = await ChatCipher.create(MAX_BODY);
  t.notOk(await a.accept('{', 'c'));
  t.notOk(await a.accept(JSON.stringify({ v: 1, curve: 'P-256', pub: 'AAAA' }), 'c'));
  t.notOk(await a.accept(JSON.stringify({ v: 1, curve: 'P-256', pub: toBase64Url(new Uint8Array(65).fill(4)) }), 'c'));
  const b = await ChatCipher.create(MAX_BODY);
  const c = await ChatCipher.create(MAX_BODY);
  t.ok(await a.accept(b.offer(), 'c'));
  t.ok(await a.accept(b.offer(), 'c'), 'the same key again is fine (a re-sent key message)');
  t.notOk(await a.accept(c.offer(), 'c'), 'a different key mid-chat is refused');
});

t.test('buckets follow the relay message limit', async (t) => {
  t.same(bucketsFor(4096), [256, 1024, largestBucket(4096)]);
  t.same(bucketsFor(1000), [256, largestBucket(1000)]);
  t.same(bucketsFor(300), [largestBucket(300)]);
});

t.test('backoff grows exponentially, is capped and jittered', async (t) => {
  const policy = { baseMs: 100, capMs: 1000 };
  t.equal(
    backoffDelay(0, policy, () => 0),
    50,
  );
  t.equal(
    backoffDelay(0, policy, () => 1),
    100,
  );
  t.equal(
    backoffDelay(3, policy, () => 1),
    800,
  );
  t.equal(
    backoffDelay(50, policy, () => 1),
    1000,
    'capped',
  );
  t.equal(
    backoffDelay(50, policy, () => 0),
    500,
    'never below half',
  );
});
