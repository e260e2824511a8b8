/**
 * The Meta simulator over real HTTP on loopback: Graph API sends and their error shapes,
 * signed status webhooks to a tiny receiver started here, every fault mode, the control
 * endpoint, and the tap driver's payloads as our own parser reads them.
 */
import { createServer, request, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { closeServer, listen } from '../src/http-listen';
import { parseWebhook, type InboundMessageItem, type StatusItem } from '../src/meta-payload';
import { verifySignature } from '../src/signature';
import {
  buildTapPayload,
  driveTaps,
  graphErrorAnswer,
  knownGraphErrorCodes,
  startSimulator,
  syntheticContacts,
  type Simulator,
  type SimulatorOptions,
  type TapProgress,
} from '../src/simulator';

const SECRET = 'sim-test-app-secret';
const CONTACT = '15550001234';
const ZERO_DELAYS = { sentDelayMs: 0, deliveredDelayMs: 0, readDelayMs: 0, readProbability: 1 };

// ---- a tiny webhook receiver: records every POST, checks its signature, answers as told ----

interface ReceivedPost {
  readonly body: Buffer;
  readonly signatureOk: boolean;
  readonly answered: number;
}

interface Receiver {
  readonly url: string;
  readonly posts: ReceivedPost[];
  /** Status items of every POST answered 200, in arrival order. */
  statuses(): StatusItem[];
  close(): Promise<void>;
}

async function startReceiver(answer: (n: number) => number = () => 200): Promise<Receiver> {
  const posts: ReceivedPost[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const check = verifySignature(body, req.headers['x-hub-signature-256'], [SECRET]);
      const status = check.ok ? answer(posts.length + 1) : 401;
      posts.push({ body, signatureOk: check.ok, answered: status });
      res.writeHead(status, { 'Content-Type': 'text/plain' }).end(status === 200 ? 'EVENT_RECEIVED' : 'no');
    });
  });
  const port = await listen(server, 0, '127.0.0.1');
  return {
    url: `http://127.0.0.1:${port}/webhook`,
    posts,
    statuses: () =>
      posts
        .filter((p) => p.answered === 200)
        .flatMap((p) => parseWebhook(JSON.parse(p.body.toString('utf8'))).items)
        .filter((i): i is StatusItem => i.kind === 'status'),
    close: () => closeServer(server, 0),
  };
}

// ---- a Graph API client, one connection per request ----

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly json: Record<string, unknown>;
}

function http(url: string, options: { method?: string; body?: unknown; token?: string | null; timeoutMs?: number } = {}): Promise<Answer> {
  const bytes = options.body === undefined ? undefined : Buffer.from(typeof options.body === 'string' ? options.body : JSON.stringify(options.body));
  const headers: Record<string, string | number> = { 'Content-Type': 'application/json' };
  if (options.token !== null) headers.Authorization = `Bearer ${options.token ?? 'test-token'}`;
  if (bytes !== undefined) headers['Content-Length'] = bytes.length;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? (bytes === undefined ? 'GET' : 'POST'), headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, json: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown> }));
    });
    req.setTimeout(options.timeoutMs ?? 10_000, () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(bytes);
  });
}

const textTo = (to: string, callbackData?: string): Record<string, unknown> => ({
  messaging_product: 'whatsapp',
  recipient_type: 'individual',
  to,
  type: 'text',
  text: { body: 'Part 1 of your pack' },
  ...(callbackData !== undefined ? { biz_opaque_callback_data: callbackData } : {}),
});

interface GraphError {
  message: string;
  type: string;
  code: number;
  error_subcode?: number;
  error_data: { messaging_product: string; details: string };
  fbtrace_id: string;
}

function graphError(answer: Answer): GraphError {
  const error = answer.json.error as GraphError;
  expect(error).toMatchObject({ message: expect.stringMatching(/^\(#\d+\) /), type: 'OAuthException', error_data: { messaging_product: 'whatsapp', details: expect.any(String) } });
  expect(error.fbtrace_id).toMatch(/^\S{8,}$/);
  return error;
}

// ---- per-test simulator and receiver, always closed ----

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()));
});

async function setup(options: SimulatorOptions = {}, answer?: (n: number) => number): Promise<{ sim: Simulator; receiver: Receiver; post: (body: unknown, extra?: Parameters<typeof http>[1]) => Promise<Answer> }> {
  const receiver = await startReceiver(answer);
  open.push(receiver);
  const sim = await startSimulator({ accessToken: 'test-token', appSecret: SECRET, webhookUrl: receiver.url, seed: 7, statuses: ZERO_DELAYS, ...options });
  open.push(sim);
  return { sim, receiver, post: (body, extra) => http(sim.messagesUrl(), { body, ...extra }) };
}

const statusNames = (receiver: Receiver, wamid: string): string[] => receiver.statuses().filter((s) => s.wamid === wamid).map((s) => s.status);

describe('Graph error catalog', () => {
  it('when any catalogued code is answered, then the body has Graph error shape, a 4xx/5xx status, and throughput codes answer 400', () => {
    const codes = knownGraphErrorCodes();
    expect(codes).toEqual(expect.arrayContaining([4, 100, 190, 80007, 130429, 131000, 131016, 131026, 131047, 131056]));
    for (const code of codes) {
      const answer = graphErrorAnswer(code);
      expect(answer.status).toBeGreaterThanOrEqual(400);
      expect(answer.status).toBeLessThan(600);
      expect(graphError({ status: answer.status, headers: {}, json: JSON.parse(answer.body) as Record<string, unknown> }).code).toBe(code);
    }
    expect([4, 80007, 130429, 131056].map((c) => graphErrorAnswer(c).status)).toEqual([400, 400, 400, 400]);
    expect(graphErrorAnswer(190).headers['WWW-Authenticate']).toMatch(/invalid_token/);
  });
});

describe('Graph API sends', () => {
  it('when a valid send is posted, then it answers a unique wamid in Graph shape and logs the send', async () => {
    const { sim, post } = await setup();
    const first = await post(textTo(`+${CONTACT}`, 'outbox:1'));
    const second = await post(textTo(CONTACT, 'outbox:2'));
    expect(first.status).toBe(200);
    expect(first.json).toEqual({ messaging_product: 'whatsapp', contacts: [{ input: `+${CONTACT}`, wa_id: CONTACT }], messages: [{ id: expect.stringMatching(/^wamid\./) }] });
    const ids = [first, second].map((a) => (a.json.messages as Array<{ id: string }>)[0]?.id);
    expect(new Set(ids).size).toBe(2);
    expect(sim.sendsTo(CONTACT).map((s) => [s.seq, s.wamid, s.type, s.callbackData, s.attempt, s.answered])).toEqual([
      [1, ids[0], 'text', 'outbox:1', 1, true],
      [2, ids[1], 'text', 'outbox:2', 1, true],
    ]);
    expect(sim.sends[0]?.body).toMatchObject({ text: { body: 'Part 1 of your pack' } });
    expect(sim.duplicateSends).toBe(0);
  });

  it('when the token is missing or wrong, then it answers 401 with code 190 OAuthException and accepts nothing', async () => {
    const { sim, post } = await setup();
    for (const token of [null, 'wrong-token']) {
      const answer = await post(textTo(CONTACT), { token });
      expect(answer.status).toBe(401);
      expect(graphError(answer).code).toBe(190);
    }
    expect(sim.sends).toHaveLength(0);
    expect(sim.rejections.map((r) => [r.reason, r.code, r.status])).toEqual([
      ['auth', 190, 401],
      ['auth', 190, 401],
    ]);
  });

  it('when the body is invalid, then it answers 400 code 100 with the reason in error_data.details', async () => {
    const { sim, post } = await setup();
    const button = (title: string): Record<string, unknown> => ({
      messaging_product: 'whatsapp',
      to: CONTACT,
      type: 'interactive',
      interactive: { type: 'button', body: { text: 'Tap to unlock' }, action: { buttons: [{ type: 'reply', reply: { id: 'unlock:starter', title } }] } },
    });
    const cases: Array<[unknown, RegExp]> = [
      [{ messaging_product: 'whatsapp', type: 'text', text: { body: 'hi' } }, /parameter to is required/],
      [{ ...textTo(CONTACT), type: 'hologram' }, /type must be one of/],
      [button('A title longer than twenty'), /Button title length invalid/],
      [{ ...textTo(CONTACT), messaging_product: 'sms' }, /messaging_product/],
      [{ ...textTo(CONTACT), text: { body: '' } }, /text\.body/],
      ['{not json', /not valid JSON/],
    ];
    for (const [body, details] of cases) {
      const answer = await post(body);
      expect(answer.status).toBe(400);
      const error = graphError(answer);
      expect(error.code).toBe(100);
      expect(error.error_data.details).toMatch(details);
    }
    expect((await post(button('Unlock'))).status).toBe(200);
    expect(sim.sends).toHaveLength(1);
    expect(sim.rejections.every((r) => r.reason === 'validation')).toBe(true);
  });

  it('when the phone number id is not the simulated one, then it answers 400 code 100 subcode 33', async () => {
    const { sim } = await setup();
    const answer = await http(`${sim.url}/v23.0/999999/messages`, { body: textTo(CONTACT) });
    expect(answer.status).toBe(400);
    expect(graphError(answer)).toMatchObject({ code: 100, error_subcode: 33 });
  });

  it('when a mark-as-read body is posted, then it answers success without logging a send', async () => {
    const { sim, post } = await setup();
    const answer = await post({ messaging_product: 'whatsapp', status: 'read', message_id: 'wamid.inbound' });
    expect([answer.status, answer.json]).toEqual([200, { success: true }]);
    expect(sim.sends).toHaveLength(0);
  });
});

describe('status webhooks', () => {
  it('when a send is accepted, then sent, delivered and read arrive signed, in order, in Meta envelope, echoing the callback data', async () => {
    const { sim, receiver, post } = await setup({ statuses: { sentDelayMs: 5, deliveredDelayMs: 5, readDelayMs: 5, readProbability: 1 } });
    const answer = await post(textTo(CONTACT, 'outbox:42'));
    const wamid = (answer.json.messages as Array<{ id: string }>)[0]?.id ?? '';
    await sim.waitFor(() => statusNames(receiver, wamid).length === 3, 5_000);
    expect(receiver.posts.every((p) => p.signatureOk)).toBe(true);
    expect(statusNames(receiver, wamid)).toEqual(['sent', 'delivered', 'read']);
    for (const status of receiver.statuses()) {
      expect(status).toMatchObject({ wamid, recipient: CONTACT, callbackData: 'outbox:42', phoneNumberId: sim.phoneNumberId, errors: [] });
      expect(Math.abs(status.timestampMs - Date.now())).toBeLessThan(5_000);
    }
    const envelope = JSON.parse(receiver.posts[0]?.body.toString('utf8') ?? '{}') as { object: string; entry: Array<{ id: string; changes: Array<{ field: string; value: Record<string, unknown> }> }> };
    expect(envelope.object).toBe('whatsapp_business_account');
    expect(envelope.entry[0]?.id).toBe(sim.wabaId);
    expect(envelope.entry[0]?.changes[0]).toMatchObject({
      field: 'messages',
      value: { messaging_product: 'whatsapp', metadata: { display_phone_number: sim.displayPhoneNumber, phone_number_id: sim.phoneNumberId } },
    });
    const sent = (envelope.entry[0]?.changes[0]?.value.statuses as Array<Record<string, unknown>>)[0];
    expect(sent).toMatchObject({ id: wamid, status: 'sent', timestamp: expect.stringMatching(/^\d{10}$/), recipient_id: CONTACT, biz_opaque_callback_data: 'outbox:42', pricing: { category: 'service' } });
    await sim.idle(2_000);
    expect(sim.statusDeliveries.filter((d) => d.wamid === wamid).map((d) => d.status)).toEqual(['sent', 'delivered', 'read']);
  });

  it('when many sends are due together, then their statuses share POSTs and every chain stays in order', async () => {
    const { sim, receiver, post } = await setup();
    const wamids: string[] = [];
    await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const answer = await post(textTo(`1555000${String(i).padStart(4, '0')}`, `outbox:${i}`));
        wamids.push((answer.json.messages as Array<{ id: string }>)[0]?.id ?? '');
      }),
    );
    await sim.idle(5_000);
    expect(receiver.statuses()).toHaveLength(90);
    for (const wamid of wamids) expect(statusNames(receiver, wamid)).toEqual(['sent', 'delivered', 'read']);
    expect(receiver.posts.length).toBeLessThan(90);
  });

  it('when our webhook answers non-200, then the POST is retried with the same signed bytes until it is accepted', async () => {
    const { sim, receiver, post } = await setup({ statuses: { ...ZERO_DELAYS, readProbability: 0 }, delivery: { retryBaseMs: 20 } }, (n) => (n <= 2 ? 503 : 200));
    await post(textTo(CONTACT, 'outbox:1'));
    await sim.idle(5_000);
    expect(receiver.posts.map((p) => p.answered).slice(0, 3)).toEqual([503, 503, 200]);
    expect(receiver.posts[0]?.body.equals(receiver.posts[2]?.body ?? Buffer.alloc(0))).toBe(true);
    expect(receiver.statuses().map((s) => s.status)).toEqual(['sent', 'delivered']);
    expect(sim.stats().statuses).toMatchObject({ webhookRetries: 2, webhookFailures: 2, gaveUp: 0, pending: 0 });
  });

  it('when our webhook keeps failing, then the simulator gives up after maxAttempts instead of retrying forever', async () => {
    const { sim, receiver, post } = await setup({ statuses: { ...ZERO_DELAYS, readProbability: 0 }, delivery: { retryBaseMs: 5, maxAttempts: 3 } }, () => 500);
    await post(textTo(CONTACT));
    await sim.idle(5_000);
    expect(receiver.posts).toHaveLength(6); // sent ×3, then delivered ×3
    expect(sim.stats().statuses).toMatchObject({ gaveUp: 2, delivered: 0 });
  });

  it('when a status failure is configured, then a failed status carries errors with code, title, message and details', async () => {
    const { sim, receiver, post } = await setup({ statuses: { ...ZERO_DELAYS, failureProbability: 1, failureCode: 131026 } });
    await post(textTo(CONTACT, 'outbox:9'));
    await sim.idle(5_000);
    const failed = receiver.statuses().find((s) => s.status === 'failed');
    expect(receiver.statuses().map((s) => s.status)).toEqual(['sent', 'failed']);
    expect(failed?.errors).toEqual([{ code: 131026, title: 'Message undeliverable', message: 'Message undeliverable', details: expect.any(String) }]);
    expect(failed?.callbackData).toBe('outbox:9');
  });
});

describe('answer faults', () => {
  const cases: Array<[string, Record<string, unknown>, number, number]> = [
    ['http429', { http429: { next: 1, retryAfterSeconds: 7 } }, 429, 4],
    ['http5xx 500', { http5xx: { next: 1 } }, 500, 131000],
    ['http5xx 503', { http5xx: { next: 1, status: 503 } }, 503, 131016],
    ['throughput', { throughput: { next: 1 } }, 400, 130429],
    ['pairRateLimit', { pairRateLimit: { next: 1 } }, 400, 131056],
    ['error 131047', { error: { next: 1, code: 131047 } }, 400, 131047],
    ['error 131026', { error: { next: 1, code: 131026 } }, 400, 131026],
    ['error 100', { error: { next: 1, code: 100 } }, 400, 100],
    ['error 190', { error: { next: 1, code: 190 } }, 401, 190],
  ];
  it.each(cases)('when %s is injected, then the next send gets its Graph error shape and status, and the one after succeeds', async (_name, faults, status, code) => {
    const { sim, post } = await setup();
    sim.setFaults(faults);
    const failed = await post(textTo(CONTACT, 'outbox:1'));
    expect(failed.status).toBe(status);
    expect(graphError(failed).code).toBe(code);
    if (status === 429) expect(failed.headers['retry-after']).toBe('7');
    expect(sim.sends).toHaveLength(0);
    expect(sim.rejections[0]).toMatchObject({ reason: 'fault', code, status, to: CONTACT, callbackData: 'outbox:1' });
    expect((await post(textTo(CONTACT, 'outbox:1'))).status).toBe(200);
    expect(sim.sends[0]?.attempt).toBe(1); // rejected attempts do not count as sends
  });

  it('when a fault is count-based, then exactly the next N sends fail; when it names a contact, then others are untouched', async () => {
    const { sim, post } = await setup();
    sim.setFaults({ pairRateLimit: { next: 2, to: CONTACT } });
    expect((await post(textTo('15550009876'))).status).toBe(200);
    const codes = [];
    for (let i = 0; i < 4; i++) {
      const answer = await post(textTo(CONTACT));
      codes.push(answer.status === 200 ? 0 : graphError(answer).code);
    }
    expect(codes).toEqual([131056, 131056, 0, 0]);
    expect(sim.faults()).toEqual({ pairRateLimit: { next: 0, to: CONTACT } });
  });

  it('when a fault is probability-based with a seed, then the same seed gives the same outcomes', async () => {
    const outcomes = async (): Promise<number[]> => {
      const { sim, post } = await setup({ seed: 1234, faults: { http5xx: { probability: 0.5 } } });
      const statuses = [];
      for (let i = 0; i < 24; i++) statuses.push((await post(textTo(CONTACT))).status);
      await sim.close();
      return statuses;
    };
    const first = await outcomes();
    expect(await outcomes()).toEqual(first);
    const failures = first.filter((s) => s === 500).length;
    expect(failures).toBeGreaterThan(3);
    expect(failures).toBeLessThan(21);
  });

  it('when slow is injected, then the answer comes after delayMs and the message is accepted on arrival', async () => {
    const { sim, post } = await setup({ faults: { slow: { next: 1, delayMs: 300 } } });
    const started = performance.now();
    const answer = await post(textTo(CONTACT));
    expect(answer.status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(sim.stats().slowed).toBe(1);
  });

  it('when hang is injected, then nothing is accepted and no answer comes until close ends the connection', async () => {
    const { sim, receiver, post } = await setup({ faults: { hang: { next: 2 } } });
    await expect(post(textTo(CONTACT), { timeoutMs: 200 })).rejects.toThrow('client timeout');
    const pending = post(textTo(CONTACT), { timeoutMs: 30_000 });
    await sim.waitFor(() => sim.stats().hung === 2, 2_000);
    expect(sim.sends).toHaveLength(0);
    expect(sim.rejections.map((r) => [r.fault, r.status])).toEqual([
      ['hang', 0],
      ['hang', 0],
    ]);
    await sim.close();
    await expect(pending).rejects.toThrow(/socket hang up|ECONNRESET/);
    expect(receiver.posts).toHaveLength(0);
  });

  it('when timeout is injected, then the send is accepted and its statuses are sent, but the answer never comes', async () => {
    const { sim, receiver, post } = await setup({ faults: { timeout: { next: 1 } } });
    await expect(post(textTo(CONTACT, 'outbox:7'), { timeoutMs: 300 })).rejects.toThrow('client timeout');
    const [ambiguous] = sim.sends;
    expect(ambiguous).toMatchObject({ callbackData: 'outbox:7', answered: false, attempt: 1 });
    await sim.waitFor(() => statusNames(receiver, ambiguous?.wamid ?? '').length === 3, 5_000);
    expect(receiver.statuses()[0]).toMatchObject({ wamid: ambiguous?.wamid, callbackData: 'outbox:7' });
    // Resending the same outbox row after an ambiguous attempt is exactly a duplicate send.
    expect((await post(textTo(CONTACT, 'outbox:7'))).status).toBe(200);
    expect(sim.sends[1]?.attempt).toBe(2);
    expect(sim.duplicateSends).toBe(1);
    expect(sim.stats().unanswered).toBe(1);
  });
});

describe('status faults', () => {
  it('when statuses are duplicated, then the copy arrives in its own POST after the original', async () => {
    const { sim, receiver, post } = await setup({ faults: { duplicateStatus: { next: 1, statuses: ['delivered'] } } });
    await post(textTo(CONTACT));
    await sim.idle(5_000);
    expect(receiver.statuses().map((s) => s.status)).toEqual(['sent', 'delivered', 'delivered', 'read']);
    expect(receiver.posts).toHaveLength(4);
    expect(sim.stats().statuses.duplicated).toBe(1);
  });

  it('when statuses are reordered, then read arrives before delivered before sent, with their original timestamps', async () => {
    const { sim, receiver, post } = await setup({ statuses: { sentDelayMs: 0, deliveredDelayMs: 1000, readDelayMs: 1000, readProbability: 1 }, faults: { reorderStatuses: { next: 1 } } });
    await post(textTo(CONTACT));
    await sim.idle(8_000);
    const statuses = receiver.statuses();
    expect(statuses.map((s) => s.status)).toEqual(['read', 'delivered', 'sent']);
    expect(statuses[0]?.timestampMs).toBeGreaterThan(statuses[2]?.timestampMs ?? Infinity);
  });

  it('when a status is dropped, then it never arrives and the rest still do', async () => {
    const { sim, receiver, post } = await setup({ faults: { dropStatus: { probability: 1, statuses: ['delivered'] } } });
    await post(textTo(CONTACT));
    await sim.idle(5_000);
    expect(receiver.statuses().map((s) => s.status)).toEqual(['sent', 'read']);
    expect(sim.stats().statuses.dropped).toBe(1);
  });

  it('when an asyncFailure is injected, then the accepted send ends with a failed status carrying the code', async () => {
    const { sim, receiver, post } = await setup({ faults: { asyncFailure: { next: 1, code: 131047 } } });
    expect((await post(textTo(CONTACT))).status).toBe(200);
    await sim.idle(5_000);
    expect(receiver.statuses().map((s) => [s.status, s.errors[0]?.code])).toEqual([
      ['sent', undefined],
      ['failed', 131047],
    ]);
  });

  it('when the webhook is in an outage, then statuses are held and delivered once it ends', async () => {
    const { sim, receiver, post } = await setup({ faults: { webhookOutage: true } });
    await post(textTo(CONTACT));
    await new Promise((r) => setTimeout(r, 150));
    expect(receiver.posts).toHaveLength(0);
    expect(sim.stats().statuses.pending).toBe(3);
    sim.updateFaults({ webhookOutage: null });
    await sim.idle(5_000);
    expect(receiver.statuses().map((s) => s.status)).toEqual(['sent', 'delivered', 'read']);
  });

  it('when no webhook URL is set yet, then statuses wait for setWebhook', async () => {
    const receiver = await startReceiver();
    open.push(receiver);
    const sim = await startSimulator({ accessToken: 'test-token', appSecret: SECRET, statuses: ZERO_DELAYS });
    open.push(sim);
    await http(sim.messagesUrl(), { body: textTo(CONTACT) });
    await new Promise((r) => setTimeout(r, 50));
    sim.setWebhook(receiver.url);
    await sim.idle(5_000);
    expect(receiver.statuses()).toHaveLength(3);
  });
});

describe('control endpoint', () => {
  it('when faults are posted over HTTP, then they apply, can be read back with what is left, and bad ones are refused', async () => {
    const { sim, post } = await setup();
    const set = await http(`${sim.url}/_sim/faults`, { body: { pairRateLimit: { next: 2 }, http429: { probability: 0 } } });
    expect(set.status).toBe(200);
    expect(graphError(await post(textTo(CONTACT))).code).toBe(131056);
    expect((await http(`${sim.url}/_sim/faults`)).json).toEqual({ pairRateLimit: { next: 1 }, http429: { probability: 0 } });
    const patched = await http(`${sim.url}/_sim/faults`, { method: 'PATCH', body: { pairRateLimit: null, slow: { next: 1, delayMs: 1 } } });
    expect(patched.json).toEqual({ http429: { probability: 0 }, slow: { next: 1, delayMs: 1 } });
    const bad = await http(`${sim.url}/_sim/faults`, { body: { http5xx: { probability: 2 } } });
    expect(bad.status).toBe(400);
    expect((bad.json.error as { message: string }).message).toMatch(/^http5xx\.probability/);
    expect((await http(`${sim.url}/_sim/faults`, { body: { nonsense: true } })).status).toBe(400);
    expect(sim.faults()).toEqual({ http429: { probability: 0 }, slow: { next: 1, delayMs: 1 } });
  });

  it('when the send log, stats and status settings are read over HTTP, then they reflect the sends', async () => {
    const { sim, post } = await setup();
    await post(textTo(CONTACT, 'outbox:1'));
    await post(textTo('15550009876', 'outbox:2'));
    const log = await http(`${sim.url}/_sim/sends?to=${CONTACT}`);
    expect(log.json).toMatchObject({ total: 1, sends: [{ to: CONTACT, callbackData: 'outbox:1', attempt: 1 }] });
    expect((await http(`${sim.url}/_sim/stats`)).json).toMatchObject({ accepted: 2, rejected: 0, duplicateSends: 0 });
    const statuses = await http(`${sim.url}/_sim/statuses`, { body: { readProbability: 0.25 } });
    expect(statuses.json).toMatchObject({ readProbability: 0.25, sentDelayMs: 0 });
    expect((await http(`${sim.url}/_sim/statuses`, { body: { readProbability: 'often' } })).status).toBe(400);
    expect((await http(`${sim.url}/_sim/reset`, { body: {} })).status).toBe(200);
    expect(sim.sends).toHaveLength(0);
  });
});

describe('tap driver', () => {
  it('when a tap payload is built, then parseWebhook reads a tap with the trigger for both button kinds, and the signature verifies', () => {
    for (const [kind, source] of [
      ['button_reply', 'button_reply'],
      ['quick_reply', 'quick_reply'],
    ] as const) {
      const payload = buildTapPayload({ contact: CONTACT, trigger: 'unlock:starter', kind }, SECRET);
      expect(verifySignature(payload.body, payload.signature, [SECRET]).ok).toBe(true);
      const items = parseWebhook(JSON.parse(payload.body.toString('utf8'))).items;
      expect(items).toHaveLength(1);
      expect(items[0]).toMatchObject({ kind: 'message', wamid: payload.wamid, from: CONTACT, tap: { trigger: 'unlock:starter', source } });
      expect(Math.abs((items[0] as InboundMessageItem).timestampMs - Date.now())).toBeLessThan(2_000);
    }
    const wamids = new Set(Array.from({ length: 100 }, () => buildTapPayload({ contact: CONTACT, trigger: 't' }, SECRET).wamid));
    expect(wamids.size).toBe(100);
  });

  it('when synthetic contacts are asked for, then they are distinct 1555000xxxx numbers', () => {
    const contacts = syntheticContacts(3);
    expect(contacts).toEqual(['15550000000', '15550000001', '15550000002']);
    expect(new Set(syntheticContacts(10_000)).size).toBe(10_000);
  });

  it('when taps are driven with duplicates, then every POST is signed, parses into taps, and the counts add up', async () => {
    const receiver = await startReceiver((n) => (n === 3 ? 503 : 200));
    open.push(receiver);
    const progress: TapProgress[] = [];
    const report = await driveTaps({
      webhookUrl: receiver.url,
      appSecret: SECRET,
      contacts: 10,
      triggers: ['unlock:starter', 'unlock:mini'],
      ratePerSecond: 200,
      taps: 40,
      duplicateRate: 0.5,
      maxDeliveries: 3,
      quickReplyRate: 0.5,
      retryDelayMs: 10,
      seed: 3,
      onProgress: (p) => progress.push(p),
      progressIntervalMs: 20,
    });
    expect(report).toMatchObject({ taps: 40, total: 40, completed: 40, non200: 1, retries: 1, undelivered: 0, errors: 0, aborted: false });
    expect(report.posts).toBe(40 + report.duplicatePosts + report.retries);
    expect(report.duplicatePosts).toBeGreaterThan(0);
    expect(receiver.posts).toHaveLength(report.posts);
    expect(receiver.posts.every((p) => p.signatureOk)).toBe(true);
    const taps = receiver.posts
      .filter((p) => p.answered === 200)
      .flatMap((p) => parseWebhook(JSON.parse(p.body.toString('utf8'))).items)
      .filter((i): i is InboundMessageItem => i.kind === 'message' && i.tap !== undefined);
    expect(taps).toHaveLength(40 + report.duplicatePosts);
    expect(new Set(taps.map((t) => t.wamid)).size).toBe(40);
    expect(new Set(taps.map((t) => t.from))).toEqual(new Set(syntheticContacts(10)));
    expect(new Set(taps.map((t) => t.tap?.source))).toEqual(new Set(['button_reply', 'quick_reply']));
    expect(progress.at(-1)).toMatchObject({ completed: 40, inFlight: 0 });
    // 40 taps at 200/s take about 200 ms: the pacing is real, not a burst.
    expect(report.elapsedMs).toBeGreaterThanOrEqual(180);
    expect(report.latencyMs.max).toBeGreaterThan(0);
  });

  it('when the drive is aborted, then it stops launching and resolves with what was sent', async () => {
    const receiver = await startReceiver();
    open.push(receiver);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const report = await driveTaps({ webhookUrl: receiver.url, appSecret: SECRET, contacts: 5, triggers: ['t'], ratePerSecond: 100, durationMs: 10_000, signal: controller.signal });
    expect(report.aborted).toBe(true);
    expect(report.taps).toBeGreaterThan(0);
    expect(report.taps).toBeLessThan(100);
    expect(receiver.posts).toHaveLength(report.taps);
  });

  it('when taps hit the simulator-fed service shape, then a driven tap and the statuses of the resulting send both reach one receiver', async () => {
    // The round trip the sandbox makes: tap → (our service would send) → statuses back.
    const { sim, receiver, post } = await setup();
    await driveTaps({ webhookUrl: receiver.url, appSecret: SECRET, contacts: [CONTACT], triggers: ['unlock:starter'], ratePerSecond: 50, taps: 1 });
    await post(textTo(CONTACT, 'outbox:1'));
    await sim.idle(5_000);
    const kinds = receiver.posts.flatMap((p) => parseWebhook(JSON.parse(p.body.toString('utf8'))).items.map((i) => i.kind));
    expect(kinds).toEqual(['message', 'status', 'status', 'status']);
  });
});

describe('lifecycle', () => {
  it('when closed with statuses, retries, slow answers and hangs pending, then nothing of the simulator stays running', async () => {
    const baseline = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').length;
    const receiver = await startReceiver(() => 503);
    const sim = await startSimulator({
      accessToken: 'test-token',
      appSecret: SECRET,
      webhookUrl: receiver.url,
      statuses: { sentDelayMs: 0, deliveredDelayMs: 60_000, readDelayMs: 0, readProbability: 1 },
      delivery: { retryBaseMs: 60_000 },
      faults: { hang: { next: 1 }, slow: { next: 2, delayMs: 60_000 } },
    });
    const hung = http(sim.messagesUrl(), { body: textTo(CONTACT), timeoutMs: 30_000 }).catch(() => 'ended');
    const slow = http(sim.messagesUrl(), { body: textTo(CONTACT), timeoutMs: 30_000 }).catch(() => 'ended');
    await sim.waitFor(() => sim.stats().statuses.webhookRetries >= 1 && sim.stats().hung === 1, 5_000);
    const waiting = sim.waitFor(() => false, 60_000).catch((e: Error) => e.message);
    await sim.close();
    await receiver.close();
    expect(await hung).toBe('ended');
    expect(await slow).toBe('ended');
    expect(await waiting).toMatch(/closed/);
    await new Promise((r) => setTimeout(r, 50));
    expect(process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').length).toBeLessThanOrEqual(baseline);
  });
});
