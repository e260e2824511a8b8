import { Agent, request } from 'node:http';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFeedFixture, type FeedFixture } from './helpers/feed';

let f: FeedFixture;
const agent = new Agent({ keepAlive: true, maxSockets: 16 });

beforeAll(async () => {
  f = await startFeedFixture({ rateLimit: { perSecond: 1_000_000, burst: 1_000_000 } });
});

afterAll(async () => {
  agent.destroy();
  await f?.close();
});

function raw(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${f.api}${path}`, { headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** Runs the requests `limit` at a time. */
async function all<T>(items: readonly T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await run(items[next++] as T);
    }),
  );
}

// Header values must be legal HTTP header text; anything else never reaches the server.
const headerSafe = (s: string): string => s.replace(/[^\x20-\x7e]/g, '').trim();

describe('when 10,000 fuzzed tokens, tickets and queries arrive', () => {
  it('then bad tokens all get the identical 401 body and never a 5xx', async () => {
    const tokens = fc.sample(
      fc.oneof(
        fc.string({ maxLength: 80 }),
        fc.stringMatching(/^ctu_[A-Za-z0-9_-]{0,110}$/),
        fc.constant(f.key.slice(0, -1)),
        fc.constant(`${f.key}x`),
        fc.constant(f.key.toUpperCase()),
      ),
      { numRuns: 4_000, seed: 20250101 },
    );
    const bodies = new Set<string>();
    const statuses = new Set<number>();
    await all(tokens, 16, async (token) => {
      const value = headerSafe(token);
      const answer = await raw('/api/summary', value === '' ? {} : { authorization: `Bearer ${value}` });
      statuses.add(answer.status);
      bodies.add(answer.body);
    });
    expect([...statuses]).toEqual([401]);
    expect(bodies.size).toBe(1);
  });

  it('then fuzzed WebSocket tickets are refused with the same 401 body before the upgrade', async () => {
    const tickets = fc.sample(fc.oneof(fc.string({ maxLength: 60 }), fc.stringMatching(/^wst_[A-Za-z0-9_-]{32}$/)), { numRuns: 2_000, seed: 7 });
    const wsUrl = new URL(f.ws);
    const bodies = new Set<string>();
    const statuses = new Set<number>();
    await all(tickets, 16, async (ticket) => {
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(
          { host: wsUrl.hostname, port: wsUrl.port, path: `/ws?ticket=${encodeURIComponent(ticket)}`, headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          },
        );
        req.on('upgrade', (res, socket) => {
          socket.destroy();
          resolve({ status: res.statusCode ?? 101, body: '' });
        });
        req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
        req.on('error', reject);
        req.end();
      });
      statuses.add(answer.status);
      if (answer.status === 401) bodies.add(answer.body);
    });
    // A ticket longer than the query allows is a 400; every other guess is the same 401.
    expect([...statuses].filter((s) => s !== 401 && s !== 400)).toEqual([]);
    expect(statuses.has(401)).toBe(true);
    expect(bodies.size).toBe(1);
  });

  it('then malformed queries with a valid key get 400 or 200, never a 5xx', async () => {
    const params = ['from', 'to', 'bucket', 'pack', 'after', 'limit', 'types', 'cursor', 'x'];
    const value = fc.oneof(fc.string({ maxLength: 30 }), fc.integer().map(String), fc.date({ noInvalidDate: true }).map((d) => d.toISOString()), fc.constantFrom('minute', 'hour', 'day', '', '-1', '1e3', 'NaN'));
    const query = fc.array(fc.tuple(fc.constantFrom(...params), value), { maxLength: 4 });
    const path = fc.constantFrom('/api/summary', '/api/clicks', '/api/events', '/api/packs', '/api/performance', '/api/contacts/16505551234/messages', '/api/contacts/%ZZ/messages', '/api/contacts/1%2F2/messages');
    const cases = fc.sample(fc.tuple(path, query), { numRuns: 4_000, seed: 99 });
    const statuses = new Map<number, number>();
    const leaks: string[] = [];
    await all(cases, 16, async ([p, q]) => {
      const search = new URLSearchParams(q).toString();
      const answer = await raw(`${p}${search === '' ? '' : `?${search}`}`, { authorization: `Bearer ${f.key}` });
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
      if (answer.status >= 400 && /SELECT|sqlite|\/work\/|node_modules|\bat .+:\d+:\d+/i.test(answer.body)) leaks.push(answer.body);
    });
    expect([...statuses.keys()].filter((s) => s >= 500)).toEqual([]);
    expect([...statuses.keys()].every((s) => s === 200 || s === 400)).toBe(true);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(1000);
    expect(leaks).toEqual([]);
  });
});
