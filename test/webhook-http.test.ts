/**
 * The webhook over real HTTP against a real SQLite file: the handshake, signatures, every
 * payload shape landing in the right tables, odd batches, body limits and the event log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signBody } from '../src/signature';
import {
  fixtureBytes,
  postSigned,
  send,
  startTestService,
  tableCounts,
  TEST_PREVIOUS_SECRET,
  TEST_SECRET,
  TEST_VERIFY_TOKEN,
  MESSAGE_EVENT_TYPES,
  type TestService,
  type WebhookCounts,
} from './helpers/webhook';

let svc: TestService;

beforeAll(async () => {
  svc = await startTestService({ META_APP_SECRET_PREVIOUS: TEST_PREVIOUS_SECRET });
});
afterAll(async () => {
  await svc.stop();
});

type Key = Exclude<keyof WebhookCounts, 'events'>;
const counts = (): WebhookCounts => tableCounts(svc.service.db);

/**
 * What changed between two counts, leaving out the zeros. Events are compared as
 * message_events: a tap also appends delivery events (click, unlock.*), not this file's concern.
 */
function delta(before: WebhookCounts, after: WebhookCounts): Partial<Record<Key, number>> {
  const out: Partial<Record<Key, number>> = {};
  for (const key of Object.keys(after) as Array<keyof WebhookCounts>) {
    if (key !== 'events' && after[key] !== before[key]) out[key] = after[key] - before[key];
  }
  return out;
}

const maxSeq = (): number => svc.service.db.prepare('SELECT coalesce(max(seq), 0) FROM events').pluck().get() as number;

function handshakeUrl(params: Record<string, string>): string {
  return `${svc.url}?${new URLSearchParams(params).toString()}`;
}

describe('storage settings', () => {
  it('when the service opens its database, then it is WAL with synchronous=FULL and a short busy timeout', () => {
    const db = svc.service.db;
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('synchronous', { simple: true })).toBe(2); // FULL: a 200 must survive power loss
    expect(db.pragma('busy_timeout', { simple: true })).toBe(100);
    expect(db.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all()).toContain(1);
  });
});

describe('GET /webhook (verification handshake)', () => {
  it('when mode is subscribe and the token matches, then 200 with the challenge verbatim as text/plain', async () => {
    const answer = await send(handshakeUrl({ 'hub.mode': 'subscribe', 'hub.verify_token': TEST_VERIFY_TOKEN, 'hub.challenge': '1158201444' }));
    expect(answer.status).toBe(200);
    expect(answer.body).toBe('1158201444');
    expect(answer.headers['content-type']).toMatch(/^text\/plain/);
  });

  it('when the challenge has characters that need URL encoding, then they are echoed decoded and unchanged', async () => {
    const challenge = 'a b+c/é&=?';
    const answer = await send(handshakeUrl({ 'hub.mode': 'subscribe', 'hub.verify_token': TEST_VERIFY_TOKEN, 'hub.challenge': challenge }));
    expect(answer.status).toBe(200);
    expect(answer.body).toBe(challenge);
  });

  it.each<[string, Record<string, string>]>([
    ['the token is wrong', { 'hub.mode': 'subscribe', 'hub.verify_token': 'nope', 'hub.challenge': '1' }],
    ['the token is a prefix of the real one', { 'hub.mode': 'subscribe', 'hub.verify_token': TEST_VERIFY_TOKEN.slice(0, -1), 'hub.challenge': '1' }],
    ['the mode is not subscribe', { 'hub.mode': 'unsubscribe', 'hub.verify_token': TEST_VERIFY_TOKEN, 'hub.challenge': '1' }],
    ['the mode is missing', { 'hub.verify_token': TEST_VERIFY_TOKEN, 'hub.challenge': '1' }],
    ['the token is missing', { 'hub.mode': 'subscribe', 'hub.challenge': '1' }],
  ])('when %s, then 403 and the challenge is not echoed', async (_label, params) => {
    const answer = await send(handshakeUrl(params));
    expect(answer.status).toBe(403);
    expect(answer.body).not.toBe('1');
  });

  it('when another method or path is used, then 405 with Allow, or 404', async () => {
    const put = await send(svc.url, '{}', { method: 'PUT' });
    expect(put.status).toBe(405);
    expect(put.headers.allow).toBe('GET, POST');
    expect((await send(svc.url.replace('/webhook', '/other'))).status).toBe(404);
  });
});

describe('POST /webhook: signatures', () => {
  const body = fixtureBytes('text');

  it.each<[string, Record<string, string>]>([
    ['missing', {}],
    ['signed with another secret', { 'x-hub-signature-256': signBody(body, 'not-the-secret') }],
    ['a sha1= header', { 'x-hub-signature-256': signBody(body, TEST_SECRET).replace('sha256=', 'sha1=') }],
    ['truncated', { 'x-hub-signature-256': signBody(body, TEST_SECRET).slice(0, -2) }],
    ['non-hex', { 'x-hub-signature-256': `sha256=${'z'.repeat(64)}` }],
  ])('when the signature is %s, then 401 and no row is written in any table', async (_label, headers) => {
    const before = counts();
    const answer = await send(svc.url, body, { headers: { 'content-type': 'application/json', ...headers } });
    expect(answer.status).toBe(401);
    expect(counts()).toEqual(before);
  });

  it('when one byte of a correctly signed body is flipped in transit, then 401 and nothing is written', async () => {
    const before = counts();
    const tampered = Buffer.from(body);
    tampered[tampered.length - 5] = (tampered[tampered.length - 5] ?? 0) ^ 0x20;
    const answer = await send(svc.url, tampered, { headers: { 'x-hub-signature-256': signBody(body, TEST_SECRET) } });
    expect(answer.status).toBe(401);
    expect(counts()).toEqual(before);
  });

  it('when the body is signed with the previous secret during rotation, then 200 and the inbox records secret index 1', async () => {
    const rotated = Buffer.from(JSON.stringify({ object: 'whatsapp_business_account', entry: [], note: 'rotation' }));
    const answer = await postSigned(svc.url, rotated, TEST_PREVIOUS_SECRET);
    expect(answer.status).toBe(200);
    const row = svc.service.db.prepare('SELECT secret_index, body FROM inbox ORDER BY id DESC LIMIT 1').get() as { secret_index: number; body: Buffer };
    expect(row.secret_index).toBe(1);
    expect(row.body.equals(rotated)).toBe(true);
  });
});

describe('POST /webhook: every payload shape lands in the right tables', () => {
  // In this order: the statuses of wamid.fixture.outbound.1 arrive sent → delivered → read.
  const cases: Array<[string, Partial<Record<Key, number>>]> = [
    ['text', { inbox: 1, inbound_messages: 1, message_events: 1 }],
    ['interactive-button-reply', { inbox: 1, inbound_messages: 1, message_events: 1 }],
    ['interactive-list-reply', { inbox: 1, inbound_messages: 1, message_events: 1 }],
    ['template-button', { inbox: 1, inbound_messages: 1, message_events: 1 }],
    ['image', { inbox: 1, inbound_messages: 2, message_events: 2 }],
    ['unsupported', { inbox: 1, inbound_messages: 1, message_events: 1 }],
    ['status-sent', { inbox: 1, statuses: 1, message_status: 1, message_events: 1 }],
    ['status-delivered', { inbox: 1, statuses: 1, message_events: 1 }],
    ['status-read', { inbox: 1, statuses: 1, message_events: 1 }],
    ['status-failed', { inbox: 1, statuses: 1, message_status: 1, message_events: 1 }],
    ['value-errors', { inbox: 1, webhook_changes: 1 }],
    ['template-status-update', { inbox: 1, webhook_changes: 1 }],
    ['account-alerts', { inbox: 1, webhook_changes: 1 }],
    ['malformed-neighbours', { inbox: 1, inbound_messages: 1, statuses: 1, message_status: 1, dead_letters: 6, message_events: 2 }],
  ];

  it.each(cases)('when the %s fixture is POSTed, then 200 and exactly these rows are written: %o', async (name, expected) => {
    const before = counts();
    const seqBefore = maxSeq();
    const bytes = fixtureBytes(name);
    const answer = await postSigned(svc.url, bytes);
    expect(answer.status).toBe(200);
    expect(answer.body).toBe('EVENT_RECEIVED');
    expect(delta(before, counts())).toEqual(expected);
    const inbox = svc.service.db.prepare('SELECT body, secret_index FROM inbox ORDER BY id DESC LIMIT 1').get() as { body: Buffer; secret_index: number };
    expect(inbox.body.equals(bytes)).toBe(true);
    expect(inbox.secret_index).toBe(0);
    // Every event of this request comes after every earlier event.
    const newSeqs = svc.service.db.prepare(`SELECT seq FROM events WHERE seq > ? AND type IN ${MESSAGE_EVENT_TYPES}`).pluck().all(seqBefore) as number[];
    expect(newSeqs).toHaveLength(expected.message_events ?? 0);
  });

  it('when all fixtures were stored, then each row carries the values of its payload', () => {
    const db = svc.service.db;
    const inbound = db.prepare('SELECT wamid, contact, type, sent_at, phone_number_id FROM inbound_messages ORDER BY id').all();
    expect(inbound).toEqual([
      { wamid: 'wamid.fixture.text.1', contact: '16505551234', type: 'text', sent_at: 1_749_416_383_000, phone_number_id: '106540352242922' },
      { wamid: 'wamid.fixture.button-reply.1', contact: '16505551234', type: 'interactive', sent_at: 1_749_854_575_000, phone_number_id: '106540352242922' },
      { wamid: 'wamid.fixture.list-reply.1', contact: '16505551234', type: 'interactive', sent_at: 1_749_854_580_000, phone_number_id: '106540352242922' },
      { wamid: 'wamid.fixture.quick-reply.1', contact: '16505559876', type: 'button', sent_at: 1_749_854_590_000, phone_number_id: '106540352242922' },
      { wamid: 'wamid.fixture.image.1', contact: '16505551234', type: 'image', sent_at: 1_750_090_702_000, phone_number_id: '106540352242922' },
      { wamid: 'wamid.fixture.reaction.1', contact: '16505551234', type: 'reaction', sent_at: 1_750_090_710_000, phone_number_id: '106540352242922' },
      { wamid: 'wamid.fixture.unsupported.1', contact: '16505551234', type: 'unsupported', sent_at: 1_750_090_720_000, phone_number_id: '106540352242922' },
      { wamid: 'wamid.fixture.survivor.1', contact: '16505551234', type: 'text', sent_at: 1_750_263_821_000, phone_number_id: '106540352242922' },
    ]);
    expect(db.prepare('SELECT wamid, status, error_code, callback_data, recipient FROM statuses ORDER BY id').all()).toEqual([
      { wamid: 'wamid.fixture.outbound.1', status: 'sent', error_code: null, callback_data: 'unlock:42:1', recipient: '16505551234' },
      { wamid: 'wamid.fixture.outbound.1', status: 'delivered', error_code: null, callback_data: 'unlock:42:1', recipient: '16505551234' },
      { wamid: 'wamid.fixture.outbound.1', status: 'read', error_code: null, callback_data: 'unlock:42:1', recipient: '16505551234' },
      { wamid: 'wamid.fixture.outbound.2', status: 'failed', error_code: 131026, callback_data: 'unlock:43:1', recipient: '16505550000' },
      { wamid: 'wamid.fixture.outbound.3', status: 'sent', error_code: null, callback_data: null, recipient: '16505551234' },
    ]);
    expect(db.prepare('SELECT wamid, status, rank, error_code FROM message_status ORDER BY wamid').all()).toEqual([
      { wamid: 'wamid.fixture.outbound.1', status: 'read', rank: 4, error_code: null },
      { wamid: 'wamid.fixture.outbound.2', status: 'failed', rank: 2, error_code: 131026 },
      { wamid: 'wamid.fixture.outbound.3', status: 'sent', rank: 1, error_code: null },
    ]);
    expect(db.prepare('SELECT field, error_code FROM webhook_changes ORDER BY id').all()).toEqual([
      { field: 'messages', error_code: 130429 },
      { field: 'message_template_status_update', error_code: null },
      { field: 'account_alerts', error_code: null },
    ]);
    expect(db.prepare('SELECT reason FROM dead_letters ORDER BY id').pluck().all()).toEqual([
      'entry has no changes array',
      'change needs a field and an object value',
      'message has no id',
      'message is not an object',
      'status has no valid timestamp',
      'value error has no numeric code',
    ]);
  });

  it('when the text message event is read back, then its data carries the decoded text and the wamid', () => {
    const row = svc.service.db.prepare("SELECT type, contact, data FROM events WHERE type = 'message.inbound' AND data LIKE '%wamid.fixture.text.1%'").get() as { type: string; contact: string; data: string };
    expect(row.type).toBe('message.inbound');
    expect(row.contact).toBe('16505551234');
    expect(JSON.parse(row.data)).toEqual({
      wamid: 'wamid.fixture.text.1',
      contact: '16505551234',
      type: 'text',
      sent_at: '2025-06-08T20:59:43.000Z',
      text: 'Olá! Is https://example.com/pack open?',
    });
  });

  it('when every fixture is POSTed again byte for byte, then each gets 200 and nothing at all is written', async () => {
    const before = counts();
    for (const [name] of cases) expect((await postSigned(svc.url, fixtureBytes(name))).status).toBe(200);
    expect(counts()).toEqual(before);
  });
});

describe('POST /webhook: unparseable and odd bodies', () => {
  it('when a correctly signed body is not JSON, then 200 (Meta must not retry it) and one dead letter', async () => {
    const before = counts();
    const answer = await postSigned(svc.url, 'this is {not json');
    expect(answer.status).toBe(200);
    expect(delta(before, counts())).toEqual({ inbox: 1, dead_letters: 1 });
    expect(svc.service.db.prepare('SELECT reason FROM dead_letters ORDER BY id DESC LIMIT 1').pluck().get()).toBe('body is not valid JSON');
  });

  it('when a correctly signed body is JSON but not an object, then 200 and one dead letter', async () => {
    const before = counts();
    expect((await postSigned(svc.url, '[1,2,3]')).status).toBe(200);
    expect(delta(before, counts())).toEqual({ inbox: 1, dead_letters: 1 });
    expect(svc.service.db.prepare('SELECT reason, body FROM dead_letters ORDER BY id DESC LIMIT 1').get()).toEqual({ reason: 'body is not a JSON object', body: '[1,2,3]' });
  });

  it('when the body is empty but signed, then 200 and a dead letter (not a crash)', async () => {
    const before = counts();
    expect((await postSigned(svc.url, '')).status).toBe(200);
    expect(delta(before, counts())).toEqual({ inbox: 1, dead_letters: 1 });
  });
});

describe('POST /webhook: batches mixing entries, changes, messages and statuses', () => {
  const meta = { display_phone_number: '15550783881', phone_number_id: '106540352242922' };
  const msg = (id: string, ts: string) => ({ from: '16505551234', id, timestamp: ts, type: 'text', text: { body: id } });
  const st = (id: string, status: string, ts: string) => ({ id, status, timestamp: ts, recipient_id: '16505551234' });
  const alert = { field: 'account_alerts', value: { entity_type: 'WABA', entity_id: '1', alert_info: { alert_type: 'X' } } };

  it('when one body holds statuses before their sent, duplicates within the body and other fields between, then each item counts once', async () => {
    const body = JSON.stringify({
      object: 'whatsapp_business_account',
      entry: [
        { id: '1', changes: [{ field: 'messages', value: { metadata: meta, statuses: [st('wamid.mix.out', 'read', '300')], messages: [msg('wamid.mix.in.1', '100')] } }] },
        {
          id: '1',
          changes: [
            alert,
            { field: 'messages', value: { metadata: meta, errors: [{ code: 131000, title: 'Something went wrong' }], statuses: [st('wamid.mix.out', 'sent', '100')], messages: [msg('wamid.mix.in.2', '101')] } },
          ],
        },
        { id: '1', changes: [{ field: 'messages', value: { metadata: meta, messages: [msg('wamid.mix.in.1', '100')], statuses: [st('wamid.mix.out', 'delivered', '200'), st('wamid.mix.out', 'read', '300')] } }] },
      ],
    });
    const before = counts();
    const seqBefore = maxSeq();
    expect((await postSigned(svc.url, body)).status).toBe(200);
    expect(delta(before, counts())).toEqual({ inbox: 1, inbound_messages: 2, statuses: 3, message_status: 1, webhook_changes: 2, message_events: 5 });
    const db = svc.service.db;
    expect(db.prepare("SELECT status FROM message_status WHERE wamid = 'wamid.mix.out'").pluck().get()).toBe('read');
    const events = db.prepare(`SELECT type, data FROM events WHERE seq > ? AND type IN ${MESSAGE_EVENT_TYPES} ORDER BY seq`).all(seqBefore) as Array<{ type: string; data: string }>;
    // Items are handled in body order, so the event log tells the story in that order.
    expect(events.map((e) => [e.type, (JSON.parse(e.data) as { wamid: string; status?: string; current?: string })])).toEqual([
      ['message.inbound', expect.objectContaining({ wamid: 'wamid.mix.in.1' })],
      ['message.status', expect.objectContaining({ wamid: 'wamid.mix.out', status: 'read', current: 'read' })],
      ['message.inbound', expect.objectContaining({ wamid: 'wamid.mix.in.2' })],
      ['message.status', expect.objectContaining({ wamid: 'wamid.mix.out', status: 'sent', current: 'read' })],
      ['message.status', expect.objectContaining({ wamid: 'wamid.mix.out', status: 'delivered', current: 'read' })],
    ]);
  });

  it('when the same messages and statuses are re-batched into a different body in reverse order, then nothing is stored again, not even the body', async () => {
    const body = JSON.stringify({
      object: 'whatsapp_business_account',
      entry: [
        { id: '1', changes: [{ field: 'messages', value: { metadata: meta, statuses: [st('wamid.mix.out', 'delivered', '200'), st('wamid.mix.out', 'sent', '100')], messages: [msg('wamid.mix.in.2', '101')] } }] },
        { id: '1', changes: [{ field: 'messages', value: { metadata: meta, messages: [msg('wamid.mix.in.1', '100')], statuses: [st('wamid.mix.out', 'read', '300')] } }] },
      ],
    });
    const before = counts();
    expect((await postSigned(svc.url, body)).status).toBe(200);
    // Every item has a UNIQUE key of its own and all were seen: the inbox row is taken back.
    expect(delta(before, counts())).toEqual({});
    // One new item in an otherwise repeated body keeps the body.
    const withNew = JSON.stringify({
      object: 'whatsapp_business_account',
      entry: [{ id: '1', changes: [{ field: 'messages', value: { metadata: meta, messages: [msg('wamid.mix.in.1', '100'), msg('wamid.mix.in.3', '102')] } }] }],
    });
    expect((await postSigned(svc.url, withNew)).status).toBe(200);
    expect(delta(before, counts())).toEqual({ inbox: 1, inbound_messages: 1, message_events: 1 });
  });
});

describe('POST /webhook: body limits', () => {
  const MB = 1024 * 1024;

  function bodyOfSize(bytes: number, wamid: string): Buffer {
    const shell = (text: string): string =>
      JSON.stringify({
        object: 'whatsapp_business_account',
        entry: [{ id: '1', changes: [{ field: 'messages', value: { messages: [{ from: '16505551234', id: wamid, timestamp: '1', type: 'text', text: { body: text } }] } }] }],
      });
    const padding = bytes - Buffer.byteLength(shell(''));
    return Buffer.from(shell('x'.repeat(padding)));
  }

  it('when a signed body is 3 MB, then it is accepted and stored whole', async () => {
    const body = bodyOfSize(3 * MB, 'wamid.big.3mb');
    expect(body.length).toBe(3 * MB);
    const before = counts();
    expect((await postSigned(svc.url, body)).status).toBe(200);
    expect(delta(before, counts())).toEqual({ inbox: 1, inbound_messages: 1, message_events: 1 });
    expect(svc.service.db.prepare('SELECT length(body) FROM inbox ORDER BY id DESC LIMIT 1').pluck().get()).toBe(3 * MB);
  });

  it('when a signed body is exactly the 4 MB limit, then it is accepted', async () => {
    const body = bodyOfSize(4 * MB, 'wamid.big.4mb');
    expect((await postSigned(svc.url, body)).status).toBe(200);
  });

  it.each([
    ['with Content-Length', false],
    ['chunked, without Content-Length', true],
  ])('when a signed body over 4 MB arrives %s, then 413 and nothing is written', async (_label, chunked) => {
    const body = bodyOfSize(4 * MB + 1, `wamid.big.over.${String(chunked)}`);
    const before = counts();
    const answer = await postSigned(svc.url, body, TEST_SECRET, { chunked });
    expect(answer.status).toBe(413);
    // The rest of the body is never read: the connection is closed, not kept alive.
    expect(answer.headers.connection).toBe('close');
    expect(counts()).toEqual(before);
  });

  it('when a client announces 100 MB, then 413 comes back before the body is sent', async () => {
    const before = counts();
    // Only the headers are sent; an answer proves the server did not wait for 100 MB.
    const answer = await send(svc.url, undefined, { method: 'POST', headers: { 'content-length': 100 * MB, 'x-hub-signature-256': signBody('', TEST_SECRET) }, timeoutMs: 5_000 });
    expect(answer.status).toBe(413);
    expect(counts()).toEqual(before);
  });
});

describe('event log', () => {
  it('when everything above was recorded, then seq is strictly increasing and there is one event per new message and status', () => {
    const db = svc.service.db;
    const events = db.prepare('SELECT seq, type, data FROM events ORDER BY rowid').all() as Array<{ seq: number; type: string; data: string }>;
    for (let i = 1; i < events.length; i++) expect(events[i]?.seq).toBeGreaterThan(events[i - 1]?.seq ?? Infinity);
    const inboundWamids = events.filter((e) => e.type === 'message.inbound').map((e) => (JSON.parse(e.data) as { wamid: string }).wamid);
    const statusKeys = events.filter((e) => e.type === 'message.status').map((e) => {
      const data = JSON.parse(e.data) as { wamid: string; status: string };
      return `${data.wamid}/${data.status}`;
    });
    expect(new Set(inboundWamids).size).toBe(inboundWamids.length);
    expect(new Set(statusKeys).size).toBe(statusKeys.length);
    expect(inboundWamids.sort()).toEqual((db.prepare('SELECT wamid FROM inbound_messages').pluck().all() as string[]).sort());
    expect(statusKeys.sort()).toEqual((db.prepare("SELECT wamid || '/' || status FROM statuses").pluck().all() as string[]).sort());
  });
});
