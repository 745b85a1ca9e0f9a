// Steps of journey.yml. Each one speaks protocol v1 on the scenario's socket
// (context.ws, a `ws` WebSocket) through its own listener, waits for what it
// needs with a timeout, and reports to artillery: chat.pairing_ms,
// chat.delivery_ms (sender stamp to partner, same machine), chat.matched and
// chat.partner_left counters. Any protocol error fails the virtual user.
const TIMEOUT_MS = 15_000;
const stamp = () => performance.timeOrigin + performance.now();

function inbox(context) {
  if (context.inbox) return context.inbox;
  const box = { waiters: [], seq: 0, chatting: false, sentIds: 0, counter: 0 };
  context.inbox = box;
  context.ws.on('message', (data) => {
    const f = JSON.parse(String(data));
    if (f.type === 'msg') {
      box.seq = Math.max(box.seq, f.seq);
      context.ws.send(JSON.stringify({ type: 'ack', seq: f.seq }));
      box.ee?.emit('histogram', 'chat.delivery_ms', stamp() - Number(f.body.split(' ')[0]));
    }
    if (f.type === 'matched') box.chatting = true;
    if (f.type === 'ended') box.chatting = false;
    for (const w of [...box.waiters]) if (w.test(f)) w.resolve(f);
  });
  return box;
}

function waitFor(context, test) {
  const box = inbox(context);
  return new Promise((resolve, reject) => {
    const w = {
      test,
      resolve: (f) => {
        clearTimeout(timer);
        box.waiters.splice(box.waiters.indexOf(w), 1);
        if (f.type === 'error') reject(new Error(`relay error ${f.code}`));
        else resolve(f);
      },
    };
    const timer = setTimeout(() => {
      box.waiters.splice(box.waiters.indexOf(w), 1);
      reject(new Error('timeout'));
    }, TIMEOUT_MS);
    box.waiters.push(w);
  });
}

const step = (fn) => async (context, ee) => {
  inbox(context).ee = ee;
  await fn(context, ee);
};

const send = (context, frame) => context.ws.send(JSON.stringify(frame));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function findPartner(context, ee) {
  const started = Date.now();
  // A `leave` or `msg` that crossed the partner's leave is answered with not_in_chat after the chat
  // ended: harmless, and not an answer to this find.
  const matched = waitFor(context, (f) => f.type === 'matched' || (f.type === 'error' && f.code !== 'not_in_chat'));
  send(context, { type: 'find' });
  await matched;
  ee.emit('counter', 'chat.matched', 1);
  ee.emit('histogram', 'chat.pairing_ms', Date.now() - started);
}

async function chat(context, ee) {
  const box = inbox(context);
  const { messages, intervalMs } = context.vars;
  for (let i = 0; i < messages && box.chatting; i++) {
    const id = `m${box.counter++}`;
    const sent = waitFor(
      context,
      (f) => (f.type === 'sent' && f.id === id) || f.type === 'error' || f.type === 'ended',
    );
    send(context, { type: 'msg', id, body: `${stamp()} hello from artillery` });
    const reply = await sent;
    if (reply.type === 'ended') break;
    await sleep(intervalMs);
  }
  if (!box.chatting) ee.emit('counter', 'chat.partner_left', 1);
}

async function leaveChat(context) {
  if (!inbox(context).chatting) return;
  const ended = waitFor(context, (f) => f.type === 'ended' || f.type === 'error');
  send(context, { type: 'leave' });
  await ended;
}

module.exports = {
  hello: step(async (context) => {
    const welcome = waitFor(context, (f) => f.type === 'welcome' || f.type === 'error');
    send(context, { type: 'hello', v: 1 });
    await welcome;
  }),
  findPartner: step(findPartner),
  chat: step(chat),
  next: step(async (context, ee) => {
    await leaveChat(context);
    await findPartner(context, ee);
  }),
  leave: step(leaveChat),
};
