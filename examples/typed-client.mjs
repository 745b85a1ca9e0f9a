// Two strangers chat through a running relay with the typed client (src/client.ts), then one of them loses its
// connection and resumes without losing a message.
//
//   npm run build                                  # compiles src/client.ts to dist/src/client.js
//   node examples/typed-client.mjs                 # against ws://localhost:8080/ws (`npm start`)
//   node examples/typed-client.mjs ws://host:port/ws
//
// Exits 0 when everything happened as described, 1 with a message on stderr otherwise (for instance when no relay
// answers within TIMEOUT_MS). Node 20 has no global WebSocket, so the sockets come from `ws` (a devDependency).
import WebSocket from 'ws';
import { RelayClient } from '../dist/src/client.js';

const url = process.argv[2] ?? 'ws://localhost:8080/ws';
const TIMEOUT_MS = 10_000;

const fail = (why) => {
  console.error(`typed-client example failed: ${why}`);
  process.exit(1);
};
// A relay that accepts the TCP connection but never answers would otherwise leave us waiting for ever.
const watchdog = setTimeout(() => fail(`no answer from ${url} within ${TIMEOUT_MS / 1000} s`), TIMEOUT_MS);

async function main() {
  const newClient = () => new RelayClient({ url, createSocket: (u) => new WebSocket(u) });
  const alice = newClient();
  const bob = newClient();

  // Each side: hello -> welcome with an anonymous id and a secret resume token.
  try {
    await Promise.all([alice.connect(), bob.connect()]);
  } catch (err) {
    fail(`cannot reach the relay at ${url} (${err.message}); start one with \`npm start\``);
  }
  console.log(`alice connected as ${alice.id}`);
  console.log(`bob connected as ${bob.id}`);

  // Both look for a stranger; the relay pairs them (a stranger already waiting on a shared relay may win instead).
  const matched = Promise.all([alice.next('matched'), bob.next('matched')]);
  alice.send({ type: 'find' });
  bob.send({ type: 'find' });
  const [m] = await matched;
  console.log(`matched in chat ${m.chat} (via ${m.via})`);

  // One message each way. The client acks what it receives, so the sender hears "delivered".
  const toBob = bob.next('msg');
  const delivered = alice.next('delivered');
  alice.sendMessage('hello, stranger');
  const got = await toBob;
  console.log(`bob received #${got.seq}: ${got.body}`);
  console.log(`alice sees #${(await delivered).seq} delivered`);
  const toAlice = alice.next('msg');
  bob.sendMessage('hi alice');
  const reply = await toAlice;
  console.log(`alice received #${reply.seq}: ${reply.body}`);

  // Bob's network drops. The relay keeps his session, chat and undelivered messages for its resume window.
  const bobId = bob.id;
  const away = alice.next('partner', (f) => f.state === 'away');
  bob.drop();
  await away;
  console.log('bob dropped; alice sees her partner away');
  alice.sendMessage('are you still there?');

  // Reconnecting resumes the same identity and chat; what he missed arrives once, in order.
  const missed = bob.next('msg');
  const back = alice.next('partner', (f) => f.state === 'back');
  const welcome = await bob.connect();
  console.log(`bob resumed: ${welcome.resumed}, same id: ${welcome.id === bobId}, same chat: ${bob.chatId === m.chat}`);
  const late = await missed;
  console.log(`bob received #${late.seq} after resuming: ${late.body}`);
  await back;
  console.log('alice sees her partner back');

  // Alice leaves; both close their sockets.
  const ended = bob.next('ended');
  alice.send({ type: 'leave' });
  console.log(`alice left; bob sees the chat ended (${(await ended).reason})`);
  const closed = Promise.all([alice, bob].map((c) => new Promise((resolve) => c.onClosed(resolve))));
  alice.close();
  bob.close();
  await closed;
  console.log('both closed');
}

main().then(
  () => clearTimeout(watchdog),
  (err) => fail(err.message),
);
