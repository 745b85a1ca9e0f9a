// The bus payload: a batch of envelopes in order, each checked on its own.
import t from 'tap';
import { decodeBatch, type Envelope, encodeBatch } from '../src/envelope.js';

const msg: Envelope = { t: 'msg', to: 'b', chat: 'c', from: 'a', node: 'n0', id: 'm1', body: 'x', ts: 1 };
const delivered: Envelope = { t: 'delivered', to: 'a', chat: 'c', seq: 3 };

t.test('a batch round-trips in order', async (t) => {
  t.same(decodeBatch(encodeBatch([msg, delivered, msg])), { envelopes: [msg, delivered, msg], malformed: 0 });
});

t.test('a bad item is dropped alone; its neighbours arrive', async (t) => {
  const text = JSON.stringify([msg, { t: 'msg', to: 'b' }, { t: 'nonsense', to: 'x' }, null, 7, delivered]);
  t.same(decodeBatch(text), { envelopes: [msg, delivered], malformed: 4 });
});

t.test('a payload that is not a JSON array is one bad item', async (t) => {
  for (const text of ['', 'not json', '{"t":"msg"}', JSON.stringify(msg), 'null', '[1'])
    t.same(decodeBatch(text), { envelopes: [], malformed: 1 }, JSON.stringify(text));
});

t.test('every field is checked', async (t) => {
  const bad: unknown[] = [
    { ...msg, to: 1 },
    { ...msg, body: 5 },
    { ...msg, ts: -1 },
    { ...delivered, seq: 1.5 },
    { t: 'end', to: 'a', chat: 'c', reason: 'because' },
    { t: 'presence', to: 'a', chat: 'c', here: 'yes', node: 'n1' },
  ];
  t.same(decodeBatch(JSON.stringify(bad)), { envelopes: [], malformed: bad.length });
});
