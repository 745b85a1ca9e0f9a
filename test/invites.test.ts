import t from 'tap';
import { startTestServer } from './fixtures/server.js';
import { sleep, TestClient } from './fixtures/ws-client.js';

const createInvite = async (http: string, headers: Record<string, string> = {}) => {
  const res = await fetch(`${http}/api/v1/invites`, { method: 'POST', headers });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, string> };
};

t.test('an invite pairs its first two holders, then is used up', async (t) => {
  const srv = await startTestServer({ inviteTtlMs: 60_000 });
  t.teardown(srv.close);
  const before = Date.now();
  const res = await createInvite(srv.http);
  t.equal(res.status, 201);
  t.match(res.body.code, /^[0-9A-HJKMNP-TV-Z]{10}$/, 'short Crockford base32 code');
  const expiresAt = Date.parse(res.body.expiresAt as string);
  t.ok(expiresAt >= before + 59_000 && expiresAt <= Date.now() + 60_000, 'expiresAt is the TTL from now (ISO 8601)');
  t.equal(res.headers.get('cache-control'), 'no-store');
  const code = res.body.code as string;

  const [a] = await TestClient.hello(srv.url);
  const [b] = await TestClient.hello(srv.url);
  const [c] = await TestClient.hello(srv.url);
  a.send({ type: 'join', code });
  t.same(await a.next('queued'), { type: 'queued', invite: code });
  b.send({ type: 'join', code: `${code.slice(0, 5).toLowerCase()}-${code.slice(5)}` });
  const mb = await b.next('matched');
  const ma = await a.next('matched');
  t.equal(ma.chat, mb.chat, 'friends share a chat (code is case- and dash-insensitive)');
  t.equal(ma.initiator, true, 'the one who waited is the initiator');
  t.same([ma.via, mb.via], ['invite', 'invite'], 'both are told they were paired by invite');
  const metrics = await (await fetch(`${srv.http}/metrics`)).text();
  t.match(metrics, /^relay_match_wait_seconds_count\{via="invite"\} 2$/m, 'both waits are timed');
  t.match(metrics, /^relay_matches_total\{via="invite"\} 1$/m);
  c.send({ type: 'join', code });
  t.match(await c.next('error'), { code: 'invite_used' });
  c.send({ type: 'join', code: 'ZZZZZZZZZZ' });
  t.match(await c.next('error'), { code: 'invite_unknown' });
});

t.test('a holder who cancels or drops frees the code for the next holder', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const { body } = await createInvite(srv.http);
  const code = body.code as string;
  const [a] = await TestClient.hello(srv.url);
  a.send({ type: 'join', code });
  await a.next('queued');
  a.send({ type: 'cancel' });
  await a.next('cancelled');
  const [b] = await TestClient.hello(srv.url);
  b.send({ type: 'join', code });
  await b.next('queued');
  b.close();
  await sleep(50);
  const [c] = await TestClient.hello(srv.url);
  const [d] = await TestClient.hello(srv.url);
  c.send({ type: 'join', code });
  await c.next('queued');
  d.send({ type: 'join', code });
  t.equal((await c.next('matched')).chat, (await d.next('matched')).chat);
});

t.test('joining a second code lets go of the first: a session is never in two waits or two chats', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const codeA = (await createInvite(srv.http)).body.code as string;
  const codeB = (await createInvite(srv.http)).body.code as string;
  const [x] = await TestClient.hello(srv.url);
  const [y] = await TestClient.hello(srv.url);
  const [z] = await TestClient.hello(srv.url);
  x.send({ type: 'join', code: codeA });
  t.same(await x.next('queued'), { type: 'queued', invite: codeA });
  y.send({ type: 'join', code: codeB });
  await y.next('queued');
  x.send({ type: 'join', code: codeB });
  const [mx, my] = await Promise.all([x.next('matched'), y.next('matched')]);
  t.equal(mx.chat, my.chat, 'x is paired on the second code');
  z.send({ type: 'join', code: codeA });
  t.same(await z.next('queued'), { type: 'queued', invite: codeA }, 'the first code waits for a new holder');
  x.send({ type: 'ping' });
  await x.next('pong');
  t.equal(x.all('matched').length, 1, 'x is never matched a second time');
  t.equal(srv.server.relay.stats().activeChats, 1);
  t.equal(srv.server.relay.stats().openInvites, 1, 'code A is still open, code B is used');
});

t.test('switching codes while nobody holds the second: waiting on it alone', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const codeA = (await createInvite(srv.http)).body.code as string;
  const codeB = (await createInvite(srv.http)).body.code as string;
  const [x] = await TestClient.hello(srv.url);
  x.send({ type: 'join', code: codeA });
  await x.next('queued');
  x.send({ type: 'join', code: codeB.toLowerCase() });
  t.same(await x.next('queued'), { type: 'queued', invite: codeB.toLowerCase() });
  const [w] = await TestClient.hello(srv.url);
  w.send({ type: 'join', code: codeA });
  t.same(await w.next('queued'), { type: 'queued', invite: codeA }, 'a friend on the first code is not paired with x');
  x.send({ type: 'join', code: codeB });
  t.same(await x.next('queued'), { type: 'queued', invite: codeB }, 'the same code again just waits on');
  x.send({ type: 'join', code: 'ZZZZZZZZZZ' });
  t.match(await x.next('error'), { code: 'invite_unknown' });
  const [v] = await TestClient.hello(srv.url);
  v.send({ type: 'join', code: codeB });
  t.equal((await v.next('matched')).chat, (await x.next('matched')).chat, 'a failed switch keeps the wait it had');
});

t.test('an expired invite is refused with invite_expired', async (t) => {
  const srv = await startTestServer({ inviteTtlMs: 1000 });
  t.teardown(srv.close);
  const { body } = await createInvite(srv.http);
  await sleep(1100);
  const [a] = await TestClient.hello(srv.url);
  a.send({ type: 'join', code: body.code as string });
  t.match(await a.next('error'), { code: 'invite_expired' });
});

t.test('invite creation is rate limited per client address', async (t) => {
  const srv = await startTestServer({ invitesPerMinute: 2, trustProxy: true });
  t.teardown(srv.close);
  const from = (ip: string) => ({ 'X-Forwarded-For': ip });
  t.equal((await createInvite(srv.http, from('198.51.100.1'))).status, 201);
  t.equal((await createInvite(srv.http, from('198.51.100.1'))).status, 201);
  const limited = await createInvite(srv.http, from('198.51.100.1'));
  t.equal(limited.status, 429);
  t.same(limited.body, { error: 'rate_limited' });
  t.ok(Number(limited.headers.get('retry-after')) > 0, 'Retry-After says when');
  t.equal((await createInvite(srv.http, from('198.51.100.2'))).status, 201, 'other addresses are unaffected');
});

t.test('the invite store is bounded', async (t) => {
  const srv = await startTestServer({ maxInvites: 2 });
  t.teardown(srv.close);
  t.equal((await createInvite(srv.http)).status, 201);
  t.equal((await createInvite(srv.http)).status, 201);
  const full = await createInvite(srv.http);
  t.equal(full.status, 503);
  t.same(full.body, { error: 'too_many_invites' });
});
