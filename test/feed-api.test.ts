import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBLEMS, problemType } from '../src/feed/problems';
import { createFeedStore } from '../src/store/feed-store';
import { createRollupStore } from '../src/store/rollup-store';
import { bearer, call, DASHBOARD_ORIGIN, seedUnlock, startFeedFixture, statusUpdate, textMessage, type Answer, type FeedFixture } from './helpers/feed';
import { REPO_ROOT } from './helpers/webhook';

const CONTACT = '16505551234';
const OTHER = '447700900123';
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

let f: FeedFixture;
let now: number;
let validate: (schema: string, body: unknown) => string[];
const exercised = new Set<string>();

async function get(path: string, headers: Record<string, string> = bearer(f.key)): Promise<Answer> {
  return call(`${f.api}${path}`, { headers });
}

/** Checks status, content type and body against the OpenAPI document's answer for that path. */
function conforms(answer: Answer, docPath: string, method = 'get'): void {
  exercised.add(`${method} ${docPath} ${answer.status}`);
  const doc = JSON.parse(openapi) as { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema?: { $ref: string } }> }> }>> };
  const response = doc.paths[docPath]?.[method]?.responses[String(answer.status)];
  expect(response, `${method} ${docPath} documents ${answer.status}`).toBeDefined();
  const [type, media] = Object.entries(response?.content ?? {})[0] ?? [];
  expect(String(answer.headers['content-type'])).toContain(type);
  const ref = media?.schema?.$ref;
  if (ref !== undefined) expect(validate(ref.replace('#/components/schemas/', ''), answer.json())).toEqual([]);
}

let openapi = '';

beforeAll(async () => {
  f = await startFeedFixture();
  now = Date.now();
  // Inbound messages and statuses through the real webhook path.
  await f.post(textMessage(CONTACT, 'wamid.in.1', 'hello', now - 3 * HOUR), now - 3 * HOUR);
  await f.post(textMessage(CONTACT, 'wamid.in.2', 'again', now - 2 * HOUR), now - 2 * HOUR);
  await f.post(textMessage(OTHER, 'wamid.in.3', 'other', now - HOUR), now - HOUR);
  // Taps, unlocks and outbox rows the way the delivery code writes them.
  const first = seedUnlock(f.db, { contact: CONTACT, pack: 'starter', at: now - 150 * MINUTE, messages: 3, accepted: 3, sentAfterMs: 200, deliveredAfterMs: 1500 });
  seedUnlock(f.db, { contact: OTHER, pack: 'starter', at: now - 90 * MINUTE, messages: 3, accepted: 1, sentAfterMs: 400, failedClass: 'permanent' });
  seedUnlock(f.db, { contact: OTHER, pack: 'pro', at: now - 30 * MINUTE, messages: 2, accepted: 2, sentAfterMs: 300, deliveredAfterMs: 2500 });
  await f.post(statusUpdate(CONTACT, first.wamids[0] ?? '', 'delivered', now - 149 * MINUTE), now - 149 * MINUTE);
  await f.post(statusUpdate(CONTACT, first.wamids[0] ?? '', 'read', now - 148 * MINUTE), now - 148 * MINUTE);

  openapi = (await get('/api/openapi.json', {})).body;
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema(JSON.parse(openapi) as object, 'doc');
  validate = (schema, body) => {
    const check = ajv.getSchema(`doc#/components/schemas/${schema}`);
    if (check === undefined) return [`no schema ${schema}`];
    return check(body) ? [] : (check.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ''}`);
  };
});

afterAll(async () => {
  await f?.close();
});

describe('when the dashboard calls each endpoint with a valid key', () => {
  it('then health answers without a key, with queue depth, oldest age and last webhook time', async () => {
    const answer = await get('/api/health', {});
    expect(answer.status).toBe(200);
    conforms(answer, '/api/health');
    const body = answer.json<{ status: string; sender: { queue_depth: number; oldest_pending_age_seconds: number }; webhook: { last_received_at: string } }>();
    expect(body.status).toBe('ok');
    expect(body.sender.queue_depth).toBe(1); // the half-failed unlock's last message, still pending
    expect(body.sender.oldest_pending_age_seconds).toBeGreaterThan(89 * 60);
    expect(Date.parse(body.webhook.last_received_at)).toBe(now - 148 * MINUTE);
  });

  it('then the summary counts what was written, and carries no phone number', async () => {
    const answer = await get('/api/summary');
    conforms(answer, '/api/summary');
    const body = answer.json<Record<string, number>>();
    expect(body).toMatchObject({ clicks: 3, unique_contacts: 2, unlocks_started: 3, unlocks_completed: 2, messages_sent: 6, messages_failed: 1 });
    expect(answer.body).not.toContain(CONTACT);
    expect(answer.body).not.toContain(OTHER);
  });

  it('then the summary of a window that holds nothing is all zeros, with a null success rate', async () => {
    const answer = await get(`/api/summary?from=${new Date(now - 40 * HOUR).toISOString()}&to=${now - 30 * HOUR}`);
    conforms(answer, '/api/summary');
    expect(answer.json()).toMatchObject({ clicks: 0, messages_sent: 0, delivery_success_rate: null });
  });

  it('then clicks come as zero-filled buckets, per pack on request', async () => {
    const hourly = await get('/api/clicks?bucket=hour');
    conforms(hourly, '/api/clicks');
    const points = hourly.json<{ points: Array<{ clicks: number }> }>().points;
    expect(points.length).toBeGreaterThanOrEqual(24);
    expect(points.reduce((sum, p) => sum + p.clicks, 0)).toBe(3);
    const pro = await get(`/api/clicks?bucket=minute&pack=pro&from=${now - 4 * HOUR}`);
    conforms(pro, '/api/clicks');
    expect(pro.json<{ points: Array<{ clicks: number }> }>().points.reduce((sum, p) => sum + p.clicks, 0)).toBe(1);
    const daily = await get(`/api/clicks?bucket=day&from=${now - 10 * 24 * HOUR}&to=${now}`);
    expect(daily.json<{ points: unknown[] }>().points.length).toBeGreaterThanOrEqual(10);
  });

  it('then a contact\'s history pages newest first, every item once, with statuses from the webhook', async () => {
    const seen: Array<{ id: string; at: string; direction: string; status?: string | null; wamid?: string; message?: unknown }> = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const answer = await get(`/api/contacts/${CONTACT}/messages?limit=2${cursor === null ? '' : `&cursor=${cursor}`}`);
      conforms(answer, '/api/contacts/{contact}/messages');
      const body = answer.json<{ items: typeof seen; next_cursor: string | null }>();
      expect(body.items.length).toBeLessThanOrEqual(2);
      seen.push(...body.items);
      cursor = body.next_cursor;
      if (cursor === null) break;
    }
    expect(cursor).toBeNull();
    expect(seen.map((i) => i.id).sort()).toEqual(['in:1', 'in:2', 'out:1', 'out:2', 'out:3'].sort());
    const times = seen.map((i) => Date.parse(i.at));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
    expect(seen.find((i) => i.id === 'out:1')?.status).toBe('read');
    // The inbound message object is read back from the raw webhook body it arrived in.
    expect(seen.find((i) => i.wamid === 'wamid.in.1')?.message).toEqual({ from: CONTACT, id: 'wamid.in.1', timestamp: String(Math.floor((now - 3 * HOUR) / 1000)), type: 'text', text: { body: 'hello' } });
  });

  it('then performance gives percentiles from the raw rows and Graph API error rates', async () => {
    const answer = await get('/api/performance');
    conforms(answer, '/api/performance');
    const body = answer.json<{ latencies: Record<string, { count: number; p50_ms: number | null; p99_ms: number | null }>; graph_api: { messages: number; dead: number; by_error_class: unknown[] } }>();
    expect(body.latencies.click_to_sent).toMatchObject({ count: 3, p50_ms: 300, p99_ms: 400 });
    expect(body.latencies.click_to_delivered).toMatchObject({ count: 2, p99_ms: 2500 });
    expect(body.latencies.webhook_ack?.count).toBe(0);
    expect(body.graph_api).toMatchObject({ messages: 8, dead: 1, by_error_class: [{ error_class: 'permanent', messages: 1 }] });
  });

  it('then events page through the log after a seq, filtered by type', async () => {
    const all = await get('/api/events?after=0&limit=1000');
    conforms(all, '/api/events');
    const body = all.json<{ events: Array<{ seq: number; type: string }>; head: number; has_more: boolean }>();
    expect(body.events.map((e) => e.seq)).toEqual(Array.from({ length: body.head }, (_, i) => i + 1));
    const page = await get('/api/events?after=2&limit=2&types=message.inbound,message.status');
    const filtered = page.json<{ events: Array<{ seq: number; type: string }>; next_after: number; has_more: boolean }>();
    expect(filtered.events.every((e) => e.seq > 2 && ['message.inbound', 'message.status'].includes(e.type))).toBe(true);
    expect(filtered.events).toHaveLength(2);
    expect(filtered.next_after).toBe(filtered.events[1]?.seq);
    expect(filtered.has_more).toBe(true);
  });

  it('then packs list the catalog with a funnel each', async () => {
    const answer = await get('/api/packs');
    conforms(answer, '/api/packs');
    const body = answer.json<{ packs: Array<{ id: string; funnel: { clicks: number; messages_sent: number }; messages: number }> }>();
    expect(body.packs.map((p) => p.id)).toEqual(['starter', 'pro']);
    expect(body.packs[0]).toMatchObject({ messages: 3, funnel: { clicks: 2, messages_sent: 4 } });
    expect(answer.body).not.toContain(OTHER);
  });

  it('then a WebSocket ticket is issued', async () => {
    const answer = await call(`${f.api}/api/ws-ticket`, { method: 'POST', headers: bearer(f.key) });
    expect(answer.status).toBe(201);
    conforms(answer, '/api/ws-ticket', 'post');
    expect(answer.json<{ expires_in_seconds: number }>().expires_in_seconds).toBe(30);
  });

  it('then every documented path was exercised', () => {
    const doc = JSON.parse(openapi) as { paths: Record<string, object> };
    const hit = new Set([...exercised].map((e) => e.split(' ')[1]));
    hit.add('/api/openapi.json');
    expect(Object.keys(doc.paths).filter((p) => !hit.has(p))).toEqual([]);
  });
});

describe('when a request is wrong', () => {
  it('then bad queries get a 400 problem that names the parameter and leaks nothing', async () => {
    for (const path of ['/api/summary?from=yesterday', '/api/clicks?bucket=week', '/api/events?after=-1', '/api/summary?frm=1', '/api/clicks?bucket=minute&from=0&to=999999999', '/api/contacts/abc/messages', `/api/contacts/${CONTACT}/messages?cursor=bm9wZQ`, '/api/summary?from=2&to=1']) {
      const answer = await get(path);
      expect(answer.status, path).toBe(400);
      expect(answer.headers['content-type']).toContain('application/problem+json');
      conforms(answer, path.startsWith('/api/contacts') ? '/api/contacts/{contact}/messages' : path.slice(0, path.indexOf('?')));
      expect(answer.body).not.toMatch(/SELECT|sqlite|\/work\/|node_modules|at .+:\d+:\d+/i);
    }
  });

  it('then every bad token gets the same 401 body', async () => {
    const bodies = new Set<string>();
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer nope' }, { authorization: `Bearer ${f.key}x` }, { authorization: `Basic ${f.key}` }, { authorization: `Bearer ctu_${'A'.repeat(43)}` }]) {
      const answer = await get('/api/summary', headers);
      expect(answer.status).toBe(401);
      expect(answer.headers['www-authenticate']).toBe('Bearer realm="click-to-unlock"');
      bodies.add(answer.body);
    }
    expect(bodies.size).toBe(1);
  });

  it('then an unknown path is a 404 problem and a wrong method a 405 with Allow', async () => {
    expect((await get('/api/nope')).status).toBe(404);
    const wrong = await call(`${f.api}/api/summary`, { method: 'DELETE', headers: bearer(f.key) });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe('GET');
  });
});

describe('when a browser calls the API', () => {
  it('then security headers are set and X-Powered-By is not', async () => {
    const answer = await get('/api/summary');
    expect(answer.headers['x-powered-by']).toBeUndefined();
    expect(answer.headers['x-content-type-options']).toBe('nosniff');
    expect(answer.headers['strict-transport-security']).toBeDefined();
    expect(answer.headers['content-security-policy']).toContain("default-src 'self'");
    expect(answer.headers['cache-control']).toBe('no-store');
  });

  it('then CORS answers only the exact allowlisted origin, always with Vary: Origin', async () => {
    const allowed = await get('/api/summary', { ...bearer(f.key), origin: DASHBOARD_ORIGIN });
    expect(allowed.headers['access-control-allow-origin']).toBe(DASHBOARD_ORIGIN);
    expect(String(allowed.headers.vary)).toContain('Origin');
    for (const origin of ['http://evil.test', `${DASHBOARD_ORIGIN}.evil.test`, 'http://dashboard.test:8081', 'null']) {
      const foreign = await get('/api/summary', { ...bearer(f.key), origin });
      expect(foreign.headers['access-control-allow-origin']).toBeUndefined();
      expect(String(foreign.headers.vary)).toContain('Origin');
    }
    const preflight = { 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' };
    const ok = await call(`${f.api}/api/summary`, { method: 'OPTIONS', headers: { ...preflight, origin: DASHBOARD_ORIGIN } });
    expect(ok.status).toBe(204);
    expect(ok.headers['access-control-allow-headers']).toContain('Authorization');
    const refused = await call(`${f.api}/api/summary`, { method: 'OPTIONS', headers: { ...preflight, origin: 'http://evil.test' } });
    expect(refused.status).toBe(403);
    expect(refused.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('when a key exceeds its rate limit', () => {
  it('then it gets 429 with Retry-After while other keys are unaffected', async () => {
    const limited = await startFeedFixture({ rateLimit: { perSecond: 1, burst: 3 } });
    try {
      const statuses: number[] = [];
      let retryAfter: string | string[] | undefined;
      for (let i = 0; i < 5; i++) {
        const answer = await call(`${limited.api}/api/summary`, { headers: bearer(limited.key) });
        statuses.push(answer.status);
        if (answer.status === 429) {
          retryAfter = answer.headers['retry-after'];
          expect(answer.headers['content-type']).toContain('application/problem+json');
        }
      }
      expect(statuses.slice(0, 3)).toEqual([200, 200, 200]);
      expect(statuses.slice(3)).toContain(429);
      expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
      expect((await call(`${limited.api}/api/health`)).status).toBe(200);
    } finally {
      await limited.close();
    }
  });
});

describe('when the problem registry is read', () => {
  it('then every problem type is documented in docs/api.md', () => {
    const doc = readFileSync(join(REPO_ROOT, 'docs', 'api.md'), 'utf8');
    const missing = Object.keys(PROBLEMS).filter((code) => !doc.includes(problemType(code as keyof typeof PROBLEMS)));
    expect(missing).toEqual([]);
  });
});

describe('when contacts tap on many days', () => {
  it('then unique contacts over any run of days equals a COUNT(DISTINCT) over the raw contact-days', async () => {
    const g = await startFeedFixture();
    try {
      const rollup = createRollupStore(g.db);
      const DAY = 24 * HOUR;
      const base = Date.UTC(2025, 0, 1);
      let state = 7;
      const random = (): number => (state = (state * 1103515245 + 12345) % 2147483648) / 2147483648;
      g.db.transaction(() => {
        for (let day = 0; day < 20; day++) {
          for (let i = 0; i < 60; i++) rollup.noteContact(base + day * DAY + Math.floor(random() * DAY), String(10_000_000 + Math.floor(random() * 150)));
        }
      })();
      const store = createFeedStore(g.ro);
      const brute = g.ro.prepare<[number, number], { n: number }>('SELECT COUNT(DISTINCT contact) AS n FROM rollup_contact_day WHERE day >= ? AND day < ?');
      for (let first = 0; first < 20; first++) {
        for (let last = first; last < 20; last++) {
          const from = base + first * DAY + 5 * HOUR;
          const to = base + last * DAY + 7 * HOUR;
          const expected = brute.get(base + first * DAY, base + (last + 1) * DAY)?.n;
          expect(store.uniqueContacts(from, to), `days ${first}..${last}`).toBe(expected);
        }
      }
    } finally {
      await g.close();
    }
  });
});
