/**
 * Redelivery storm: Meta delivers at least once and retries, so every event arrives 1–5
 * times, sometimes byte for byte, sometimes re-batched with others, in any order and
 * concurrently. Exactly one row and one event per distinct item must remain.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MESSAGE_EVENT_TYPES, metaCallback, postSigned, runConcurrently, seededRandom, startTestService, type TestService } from './helpers/webhook';

const DISTINCT_MESSAGES = 600;
const DISTINCT_STATUS_WAMIDS = 200; // two statuses each: 400 distinct (wamid, status)
const DISTINCT = DISTINCT_MESSAGES + DISTINCT_STATUS_WAMIDS * 2;
const CONCURRENCY = 50;
const SEED = Number(process.env.STORM_SEED ?? 20_251_125);

type Item = { kind: 'message'; json: object } | { kind: 'status'; json: object };

function envelope(items: readonly Item[]): string {
  const messages = items.filter((i) => i.kind === 'message').map((i) => i.json);
  const statuses = items.filter((i) => i.kind === 'status').map((i) => i.json);
  return JSON.stringify(metaCallback({ ...(messages.length > 0 ? { messages } : {}), ...(statuses.length > 0 ? { statuses } : {}) }));
}

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService();
});
afterAll(async () => {
  await svc.stop();
});

describe('redelivery storm', () => {
  it(`when ${DISTINCT} distinct events arrive 1–5 times each, shuffled, re-batched and ${CONCURRENCY} at a time, then exactly ${DISTINCT} are stored with one event each`, async () => {
    const random = seededRandom(SEED);
    const pick = (n: number): number => Math.floor(random() * n);

    const items: Item[] = [];
    for (let i = 0; i < DISTINCT_MESSAGES; i++) {
      items.push({
        kind: 'message',
        json: { from: `1650555${String(i % 97).padStart(4, '0')}`, id: `wamid.storm.in.${i}`, timestamp: String(1_750_000_000 + i), type: 'text', text: { body: `tap ${i}` } },
      });
    }
    for (let i = 0; i < DISTINCT_STATUS_WAMIDS; i++) {
      for (const [offset, status] of [[0, 'sent'], [5, 'delivered']] as const) {
        items.push({ kind: 'status', json: { id: `wamid.storm.out.${i}`, status, timestamp: String(1_750_000_000 + i + offset), recipient_id: '16505551234' } });
      }
    }
    expect(items).toHaveLength(DISTINCT);

    // Every item gets 1–5 deliveries; about a third of the extra ones travel inside a
    // re-batched body together with other items (a different body, the same items).
    const bodies: string[] = [];
    let rebatched = 0;
    for (const item of items) {
      const deliveries = 1 + pick(5);
      for (let d = 0; d < deliveries; d++) {
        if (d > 0 && random() < 0.35) {
          const companions = Array.from({ length: 1 + pick(3) }, () => items[pick(items.length)] as Item);
          const batch = [...companions, item].sort(() => random() - 0.5);
          bodies.push(envelope(batch));
          rebatched++;
        } else {
          bodies.push(envelope([item]));
        }
      }
    }
    expect(rebatched).toBeGreaterThan(100);
    for (let i = bodies.length - 1; i > 0; i--) {
      const j = pick(i + 1);
      [bodies[i], bodies[j]] = [bodies[j] as string, bodies[i] as string];
    }

    const batchSizes: number[] = [];
    svc.service.committer?.onBatch((batch) => batchSizes.push(batch.size));

    const started = performance.now();
    const answers = await runConcurrently(
      bodies.map((body) => () => postSigned(svc.url, body)),
      CONCURRENCY,
    );
    const seconds = (performance.now() - started) / 1000;
    console.info(`storm: seed ${SEED}, ${bodies.length} POSTs (${rebatched} re-batched) in ${seconds.toFixed(2)} s, ${batchSizes.length} commits, largest batch ${Math.max(...batchSizes)}`);

    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    const db = svc.service.db;
    const wamids = db.prepare('SELECT wamid FROM inbound_messages ORDER BY wamid').pluck().all() as string[];
    expect(wamids).toEqual(Array.from({ length: DISTINCT_MESSAGES }, (_, i) => `wamid.storm.in.${i}`).sort());
    const statusKeys = db.prepare("SELECT wamid || '/' || status FROM statuses ORDER BY 1").pluck().all() as string[];
    expect(statusKeys).toEqual(
      Array.from({ length: DISTINCT_STATUS_WAMIDS }, (_, i) => [`wamid.storm.out.${i}/delivered`, `wamid.storm.out.${i}/sent`]).flat().sort(),
    );
    expect(db.prepare("SELECT count(*) FROM message_status WHERE status = 'delivered'").pluck().get()).toBe(DISTINCT_STATUS_WAMIDS);

    // One event per distinct item: DISTINCT events in all, no key twice.
    const eventKeys = (db.prepare(`SELECT type, data FROM events WHERE type IN ${MESSAGE_EVENT_TYPES}`).all() as Array<{ type: string; data: string }>).map((e) => {
      const data = JSON.parse(e.data) as { wamid: string; status?: string };
      return e.type === 'message.status' ? `${data.wamid}/${data.status ?? ''}` : data.wamid;
    });
    expect(eventKeys).toHaveLength(DISTINCT);
    expect(new Set(eventKeys).size).toBe(DISTINCT);
    expect(db.prepare('SELECT count(*) FROM dead_letters').pluck().get()).toBe(0);
    // Concurrent requests must have shared transactions (group commit), or this was not a storm.
    expect(Math.max(...batchSizes)).toBeGreaterThan(1);
  });
});
