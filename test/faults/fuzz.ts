/**
 * Scenario 4, input fuzzing with fast-check against the running compiled service:
 *  - the webhook gets generated bodies (Meta-shaped envelopes with every field mutated,
 *    arbitrary JSON, raw bytes, truncated JSON, oversize bodies) with generated headers
 *    (signature missing / malformed / for other bytes / under another secret / valid, odd
 *    content types, chunked bodies, other methods and paths);
 *  - the REST API gets generated paths, queries, methods and credentials.
 * Checked: the process never dies, no 5xx except a 503 that the service logged as a storage
 * fault, and a request with a bad signature writes NO row (every table counted before and
 * after a bad-signature-only phase, once on an empty and once on a busy database).
 */
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { Agent, request, type RequestOptions } from 'node:http';
import { expect } from 'vitest';
import { signBody } from '../../src/signature';
import { openDatabase } from '../../src/store/database';
import { createApiKey } from '../../src/store/key-store';
import { sleep, triggerOf } from '../helpers/delivery';
import { TEST_SECRET } from '../helpers/webhook';
import { openOutboxRows } from './history';
import { listenerUrl, report, startRig } from './rig';

export interface FuzzParams {
  readonly webhookRequests: number;
  readonly apiRequests: number;
  readonly seed: number;
}

export const FUZZ_SHORT: FuzzParams = { webhookRequests: 3_000, apiRequests: 1_000, seed: 42 };
export const FUZZ_LONG: FuzzParams = { webhookRequests: 100_000, apiRequests: 10_000, seed: 42 };

const PACKS = [
  { id: 'trio', size: 3 },
  { id: 'duo', size: 2 },
];
const CONCURRENCY = 32;
const CHUNK = 500; // cases generated at a time, so a long run never holds 100,000 bodies
const API_KEYS = 100; // the feed limits each key to 20/s after a burst of 100; spread the load
const STORAGE_FAULT_LOG = 'database unavailable';

export function fuzzBudgetMs(p: FuzzParams): number {
  return 90_000 + p.webhookRequests * 3 + p.apiRequests * 5;
}

// ---- generated webhook requests ------------------------------------------------------------

type SignatureMode = 'valid' | 'missing' | 'empty' | 'garbage' | 'wrongHex' | 'sha1' | 'otherBody' | 'otherSecret' | 'flippedDigit' | 'padded';
const BAD_SIGNATURES: readonly SignatureMode[] = ['missing', 'empty', 'garbage', 'wrongHex', 'sha1', 'otherBody', 'otherSecret', 'flippedDigit', 'padded'];

interface WebhookCase {
  readonly body: Buffer;
  readonly signature: SignatureMode;
  readonly garbage: string;
  readonly method: string;
  readonly path: string;
  readonly contentType: string | undefined;
  readonly chunked: boolean;
  readonly extraHeaders: ReadonlyArray<readonly [string, string]>;
}

const headerText = fc.string({ maxLength: 40 }).map((s) => s.replace(/[^\x20-\x7e]/g, '').trim());
const headerName = fc.stringMatching(/^x-[a-z0-9-]{1,20}$/);
const anyValue = fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }));
const maybe = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | unknown> => fc.oneof({ weight: 4, arbitrary: arb }, { weight: 1, arbitrary: anyValue });
const contact = fc.oneof(fc.stringMatching(/^1555\d{7}$/), fc.stringMatching(/^\d{1,20}$/), fc.string({ maxLength: 24 }));
const wamid = fc.oneof(fc.uuid().map((u) => `wamid.fuzz.${u}`), fc.string({ maxLength: 60 }));
const timestamp = fc.oneof(fc.constant(String(Math.floor(Date.now() / 1000))), fc.integer({ min: -1, max: 4_102_444_800 }).map(String), fc.string({ maxLength: 12 }));
const trigger = fc.oneof(fc.constantFrom(...PACKS.map((p) => triggerOf(p.id))), fc.string({ maxLength: 30 }));

const message = fc.record(
  {
    from: maybe(contact),
    id: maybe(wamid),
    timestamp: maybe(timestamp),
    type: maybe(fc.constantFrom('interactive', 'button', 'text', 'image', 'reaction', 'unsupported', '')),
    interactive: maybe(fc.record({ type: maybe(fc.constantFrom('button_reply', 'list_reply', 'nfm_reply')), button_reply: maybe(fc.record({ id: maybe(trigger), title: maybe(fc.string({ maxLength: 20 })) })) }, { requiredKeys: [] })),
    button: maybe(fc.record({ payload: maybe(trigger), text: maybe(fc.string({ maxLength: 20 })) }, { requiredKeys: [] })),
    text: maybe(fc.record({ body: fc.string({ maxLength: 200 }) })),
    context: maybe(fc.record({ from: maybe(contact), id: maybe(wamid) }, { requiredKeys: [] })),
  },
  { requiredKeys: [] },
);
const status = fc.record(
  {
    id: maybe(wamid),
    status: maybe(fc.constantFrom('sent', 'delivered', 'read', 'failed', 'deleted', 'warning', '')),
    timestamp: maybe(timestamp),
    recipient_id: maybe(contact),
    biz_opaque_callback_data: maybe(fc.oneof(fc.nat({ max: 5_000 }).map((n) => `ctu:o:${n}`), fc.string({ maxLength: 20 }))),
    errors: maybe(fc.array(fc.record({ code: maybe(fc.integer()), title: maybe(fc.string({ maxLength: 20 })) }, { requiredKeys: [] }), { maxLength: 2 })),
  },
  { requiredKeys: [] },
);
const change = fc.record(
  {
    field: maybe(fc.constantFrom('messages', 'message_template_status_update', 'account_update', '')),
    value: maybe(
      fc.record(
        {
          messaging_product: maybe(fc.constant('whatsapp')),
          metadata: maybe(fc.record({ phone_number_id: maybe(fc.stringMatching(/^\d{1,16}$/)), display_phone_number: maybe(fc.string({ maxLength: 15 })) }, { requiredKeys: [] })),
          contacts: maybe(fc.array(fc.record({ wa_id: maybe(contact), profile: maybe(fc.record({ name: fc.string({ maxLength: 30 }) })) }, { requiredKeys: [] }), { maxLength: 2 })),
          messages: maybe(fc.array(message, { maxLength: 4 })),
          statuses: maybe(fc.array(status, { maxLength: 4 })),
        },
        { requiredKeys: [] },
      ),
    ),
  },
  { requiredKeys: [] },
);
const envelope = fc.record(
  { object: maybe(fc.constantFrom('whatsapp_business_account', 'page', '')), entry: maybe(fc.array(fc.record({ id: maybe(fc.string({ maxLength: 16 })), changes: maybe(fc.array(change, { maxLength: 3 })) }, { requiredKeys: [] }), { maxLength: 3 })) },
  { requiredKeys: [] },
);

const body: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 8, arbitrary: envelope.map((e) => Buffer.from(JSON.stringify(e))) },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: fc.tuple(envelope, fc.nat()).map(([e, n]) => {
    const text = JSON.stringify(e);
    return Buffer.from(text.slice(0, n % (text.length + 1)));
  }) },
  { weight: 1, arbitrary: fc.constantFrom('', '{}', '[]', 'null', '{"object":"whatsapp_business_account","entry":null}', '\u0000').map((s) => Buffer.from(s)) },
);

function webhookCase(signatures: fc.Arbitrary<SignatureMode>): fc.Arbitrary<WebhookCase> {
  return fc.record({
    body,
    signature: signatures,
    garbage: headerText,
    method: fc.oneof({ weight: 20, arbitrary: fc.constant('POST') }, { weight: 1, arbitrary: fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS') }),
    path: fc.oneof({ weight: 20, arbitrary: fc.constant('/webhook') }, { weight: 1, arbitrary: fc.constantFrom('/webhook?hub.mode=x', '/webhook/', '/WEBHOOK', '/', '/webhook/../webhook', '/%2e%2e/webhook') }),
    contentType: fc.option(fc.oneof(fc.constantFrom('application/json', 'text/plain', 'application/json; charset=latin1', 'multipart/form-data'), headerText), { nil: undefined }),
    chunked: fc.boolean(),
    extraHeaders: fc.array(fc.tuple(headerName, headerText), { maxLength: 3 }),
  });
}

function signatureHeader(c: WebhookCase): string | undefined {
  const valid = signBody(c.body, TEST_SECRET);
  switch (c.signature) {
    case 'valid':
      return valid;
    case 'missing':
      return undefined;
    case 'empty':
      return '';
    case 'garbage':
      return c.garbage;
    case 'wrongHex':
      return `sha256=${valid.slice(7).split('').reverse().join('')}`;
    case 'sha1':
      return `sha1=${valid.slice(7, 47)}`;
    case 'otherBody':
      return signBody(Buffer.concat([c.body, Buffer.from(' ')]), TEST_SECRET);
    case 'otherSecret':
      return signBody(c.body, `${TEST_SECRET}-not`);
    case 'flippedDigit':
      return `${valid.slice(0, -1)}${valid.endsWith('0') ? '1' : '0'}`;
    case 'padded':
      return `${valid}00`;
  }
}

interface Answer {
  readonly status: number;
  readonly body: string;
}

/**
 * One connection per request: a keep-alive socket the server closed after answering an earlier
 * request early (404, 405, 413 without reading the body) would make the NEXT request fail on
 * the client side, which would hide whether the server dropped that request itself.
 */
function sendCase(url: URL, c: WebhookCase): Promise<Answer> {
  const headers: Record<string, string | number> = {};
  for (const [name, value] of c.extraHeaders) headers[name] = value;
  const signature = signatureHeader(c);
  if (signature !== undefined) headers['x-hub-signature-256'] = signature;
  if (c.contentType !== undefined && c.contentType !== '') headers['content-type'] = c.contentType;
  if (!c.chunked) headers['content-length'] = c.body.length;
  // Every method carries its body: a declared length without the bytes would desync the keep-alive socket.
  return exchange({ host: url.hostname, port: url.port, path: c.path, method: c.method, headers, agent: false }, c.body);
}

function exchange(options: RequestOptions, payload: Buffer | undefined): Promise<Answer> {
  return new Promise((resolve) => {
    const req = request(options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', () => resolve({ status: 0, body: '' }));
    });
    req.setTimeout(20_000, () => req.destroy(new Error('timed out')));
    req.on('error', (error) => resolve({ status: 0, body: error.message }));
    req.end(payload);
  });
}

async function runAll<T>(items: readonly T[], run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, items.length) }, async () => {
      while (next < items.length) await run(items[next++] as T);
    }),
  );
}

/** Row count of every table in the database. */
function tableCounts(dbPath: string): Record<string, number> {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all() as string[];
    return Object.fromEntries(tables.map((t) => [t, db.prepare(`SELECT count(*) FROM "${t}"`).pluck().get() as number]));
  } finally {
    db.close();
  }
}

class Tally {
  readonly statuses = new Map<number, number>();
  readonly fiveHundreds: string[] = [];
  readonly unanswered: string[] = [];
  count(answer: Answer, what: string): void {
    this.statuses.set(answer.status, (this.statuses.get(answer.status) ?? 0) + 1);
    if (answer.status >= 500) this.fiveHundreds.push(`${answer.status} for ${what}: ${answer.body.slice(0, 120)}`);
    if (answer.status === 0) this.unanswered.push(`${what}: ${answer.body}`);
  }
  get(status: number): number {
    return this.statuses.get(status) ?? 0;
  }
  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.statuses].sort(([a], [b]) => a - b));
  }
}

// ---- the scenario --------------------------------------------------------------------------

export async function fuzzScenario(p: FuzzParams): Promise<void> {
  const seed = Number(process.env.FAULTS_SEED ?? p.seed);
  const rig = await startRig({ packs: PACKS, sim: { seed }, env: { SEND_RATE_PER_SECOND: '1000' } });
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  try {
    // Keys first, on the migrated file, before the service holds the write lock.
    const setup = openDatabase(rig.dir.dbPath);
    const keys = Array.from({ length: API_KEYS }, (_, i) => createApiKey(setup, `fuzz ${i}`).key);
    setup.close();
    const cli = await rig.start();
    const webhook = new URL(cli.url);
    const api = new URL(listenerUrl(cli, 'api'));
    const started = Date.now();

    const webhookTally = new Tally();
    const badWithoutRefusal: string[] = [];
    let sent = 0;
    const fire = async (count: number, signatures: fc.Arbitrary<SignatureMode>, chunkSeed: number): Promise<void> => {
      for (let done = 0; done < count; done += CHUNK) {
        const cases = fc.sample(webhookCase(signatures), { numRuns: Math.min(CHUNK, count - done), seed: chunkSeed + done });
        await runAll(cases, async (c) => {
          const answer = await sendCase(webhook, c);
          sent++;
          webhookTally.count(answer, `${c.method} ${c.path} (${c.signature}, ${c.body.length} B${c.chunked ? ', chunked' : ''}, content-type ${JSON.stringify(c.contentType)}, ${JSON.stringify(c.extraHeaders)})`);
          // A signed-looking POST to /webhook with a bad signature must be refused, never acknowledged.
          if (c.signature !== 'valid' && c.method === 'POST' && c.path === '/webhook' && answer.status === 200) badWithoutRefusal.push(`${c.signature}: ${c.body.toString('utf8').slice(0, 80)}`);
        });
      }
    };
    const badOnly = fc.constantFrom(...BAD_SIGNATURES);
    const badShare = Math.floor(p.webhookRequests / 5);

    // Phase 1: bad signatures on an empty database. Not one row anywhere.
    const empty = tableCounts(rig.dir.dbPath);
    await fire(badShare, badOnly, seed);
    expect(tableCounts(rig.dir.dbPath), 'rows after bad-signature requests on an empty database').toEqual(empty);

    // Phase 2: everything mixed, half of it validly signed (taps unlock packs, statuses arrive).
    const mixed = fc.oneof({ weight: 1, arbitrary: fc.constant<SignatureMode>('valid') }, { weight: 1, arbitrary: badOnly });
    await fire(p.webhookRequests - 3 * badShare, mixed, seed + 1_000_000);
    // Oversize bodies, validly signed: refused with 413, never buffered whole.
    const big = Buffer.alloc(5 * 1024 * 1024, 0x20);
    for (const chunked of [false, true]) {
      const answer = await sendCase(webhook, { body: big, signature: 'valid', garbage: '', method: 'POST', path: '/webhook', contentType: 'application/json', chunked, extraHeaders: [] });
      expect([413, 0], `oversize ${chunked ? 'chunked' : 'sized'} body`).toContain(answer.status); // 0: the server closed the socket mid-body, as it may
    }

    // Phase 3: once the database is quiet (sends settled, status webhooks delivered), bad signatures again.
    await rig.sim.waitFor(() => openOutboxRows(rig.dir.dbPath) === 0, 60_000).catch(() => undefined);
    await rig.sim.idle(30_000).catch(() => undefined);
    let before = tableCounts(rig.dir.dbPath);
    for (let i = 0; i < 40; i++) {
      await sleep(500);
      const again = tableCounts(rig.dir.dbPath);
      if (JSON.stringify(again) === JSON.stringify(before)) break;
      before = again;
    }
    await fire(2 * badShare, badOnly, seed + 2_000_000);
    expect(tableCounts(rig.dir.dbPath), 'rows after bad-signature requests on a busy database').toEqual(before);
    const webhookSeconds = (Date.now() - started) / 1000;

    // The REST API: generated paths, queries, methods and credentials.
    const apiStarted = Date.now();
    const apiTally = new Tally();
    const leaks: string[] = [];
    const endpoint = fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom('/api/health', '/api/summary', '/api/clicks', '/api/events', '/api/packs', '/api/performance', '/api/openapi.json', '/api/ws-ticket') },
      { weight: 2, arbitrary: contact.map((c) => `/api/contacts/${encodeURIComponent(c)}/messages`) },
      { weight: 1, arbitrary: fc.constantFrom('/api/contacts/%ZZ/messages', '/api/contacts//messages', '/api/%00', '/api/summary/', '/api/../api/summary', '/', '/index.html', '/nope') },
      { weight: 1, arbitrary: fc.webPath().map((s) => `/api${s.startsWith('/') ? s : `/${s}`}`) },
    );
    const queryValue = fc.oneof(fc.string({ maxLength: 30 }), fc.integer().map(String), fc.date({ noInvalidDate: true }).map((d) => d.toISOString()), fc.constantFrom('minute', 'hour', 'day', '', '-1', '1e3', 'NaN', '9'.repeat(40)));
    const query = fc.array(fc.tuple(fc.constantFrom('from', 'to', 'bucket', 'pack', 'after', 'limit', 'types', 'cursor', 'x', 'from[]'), queryValue), { maxLength: 4 });
    const credential = fc.oneof(
      { weight: 7, arbitrary: fc.nat({ max: API_KEYS - 1 }).map((i) => `Bearer ${keys[i] as string}`) },
      { weight: 2, arbitrary: headerText.map((t) => `Bearer ${t}`) },
      { weight: 1, arbitrary: fc.constant('') },
    );
    const apiCase = fc.record({
      path: endpoint,
      query,
      method: fc.oneof({ weight: 10, arbitrary: fc.constant('GET') }, { weight: 1, arbitrary: fc.constantFrom('POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS') }),
      credential,
      origin: fc.option(fc.constantFrom('http://evil.example', 'null', api.origin), { nil: undefined }),
    });
    let apiSent = 0;
    for (let done = 0; done < p.apiRequests; done += CHUNK) {
      const cases = fc.sample(apiCase, { numRuns: Math.min(CHUNK, p.apiRequests - done), seed: seed + 3_000_000 + done });
      await runAll(cases, async (c) => {
        const search = new URLSearchParams(c.query).toString();
        const headers: Record<string, string> = {};
        if (c.credential !== '') headers.authorization = c.credential;
        if (c.origin !== undefined) headers.origin = c.origin;
        const answer = await exchange({ host: api.hostname, port: api.port, path: `${c.path}${search === '' ? '' : `?${search}`}`, method: c.method, headers, agent }, undefined);
        apiSent++;
        apiTally.count(answer, `${c.method} ${c.path}?${search}`);
        if (answer.status >= 400 && /SELECT |sqlite|\/work\/|\/tmp\/|node_modules|\bat .+:\d+:\d+/i.test(answer.body)) leaks.push(`${answer.status} ${c.path}: ${answer.body.slice(0, 120)}`);
      });
    }
    const apiSeconds = (Date.now() - apiStarted) / 1000;

    // Still alive, still healthy, and stops cleanly.
    expect(cli.child.exitCode, `the service died:\n${cli.output().slice(-2000)}`).toBeNull();
    const health = await exchange({ host: api.hostname, port: api.port, path: '/api/health', method: 'GET', headers: { authorization: `Bearer ${keys[0] as string}` } }, undefined);
    expect(health.status).toBe(200);
    const storageFaults = cli.output().split('\n').filter((l) => l.includes(STORAGE_FAULT_LOG)).length;
    expect(await rig.stop()).toBe(0);

    report('fuzz', {
      seed,
      webhookRequests: sent,
      webhookPerSecond: Math.round(sent / webhookSeconds),
      webhookStatuses: webhookTally.toJSON(),
      apiRequests: apiSent,
      apiPerSecond: Math.round(apiSent / apiSeconds),
      apiStatuses: apiTally.toJSON(),
      storageFaultsLogged: storageFaults,
    });
    expect(sent).toBe(p.webhookRequests);
    expect(apiSent).toBe(p.apiRequests);
    expect(badWithoutRefusal, 'bad signatures acknowledged with 200').toEqual([]);
    // A 503 counts only when the service logged the storage fault behind it.
    const unexplained = [...webhookTally.fiveHundreds, ...apiTally.fiveHundreds].filter((line) => !line.startsWith('503'));
    expect(unexplained, '5xx answers').toEqual([]);
    expect(webhookTally.get(503) + apiTally.get(503), '503s without a logged storage fault').toBeLessThanOrEqual(storageFaults);
    expect(webhookTally.get(401), 'bad signatures were refused').toBeGreaterThan(badShare);
    expect(webhookTally.get(200), 'validly signed requests were accepted').toBeGreaterThan(0);
    expect(webhookTally.unanswered, 'requests the service never answered').toEqual([]);
    expect(apiTally.get(200), 'the API answered the valid requests').toBeGreaterThan(0);
    expect(apiTally.unanswered, 'API requests never answered').toEqual([]);
    expect(leaks, 'error bodies leaking SQL, paths or stacks').toEqual([]);
  } finally {
    agent.destroy();
    await rig.dispose();
  }
}
