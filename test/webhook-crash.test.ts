/**
 * Crash test for invariant 1 (200 only after commit): the compiled CLI is SIGKILLed at
 * random moments while a client POSTs distinct signed events; after a final restart every
 * event that got a 200 must be in the database and the file must pass integrity_check.
 * Needs the build (`npm test` builds first; or run `npm run build`).
 */
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { killAll, requireBuild, startService } from './helpers/cli';
import { MESSAGE_EVENT_TYPES, makeTempDir, postSigned, seededRandom, TEST_SECRET, type CliProcess } from './helpers/webhook';

const CYCLES = 8;
const TOTAL_BUDGET_MS = 35_000;
const CONCURRENCY = 16;
const SEED = Number(process.env.CRASH_SEED ?? Date.now() % 1_000_000);

const dir = makeTempDir('ctu-crash-');
const children: CliProcess[] = [];
afterAll(() => {
  killAll(children);
  dir.remove();
});

/** `ctu start` on fresh free ports; retention stays off, no pass could start in a run this short anyway. */
async function startOnFreePorts(): Promise<CliProcess> {
  return (await startService(dir.dbPath, {}, children)).cli;
}

type Event = { key: string; kind: 'message' | 'status'; body: string };

function eventNumber(n: number): Event {
  const value =
    n % 3 === 2
      ? { statuses: [{ id: `wamid.crash.out.${n}`, status: 'delivered', timestamp: String(1_750_000_000 + n), recipient_id: '16505551234' }] }
      : { messages: [{ from: '16505551234', id: `wamid.crash.in.${n}`, timestamp: String(1_750_000_000 + n), type: 'text', text: { body: `event ${n}` } }] };
  const body = JSON.stringify({ object: 'whatsapp_business_account', entry: [{ id: '1', changes: [{ field: 'messages', value }] }] });
  return n % 3 === 2 ? { key: `wamid.crash.out.${n}`, kind: 'status', body } : { key: `wamid.crash.in.${n}`, kind: 'message', body };
}

describe('crash safety of the compiled service', () => {
  it('when the service is SIGKILLed repeatedly under load, then every acknowledged event survives and the database is intact', async () => {
    requireBuild();
    const random = seededRandom(SEED);
    const started = Date.now();
    const acked: Event[] = [];
    let next = 0;
    let sent = 0;
    let cycles = 0;

    while (cycles < CYCLES && Date.now() - started < TOTAL_BUDGET_MS) {
      const cli = await startOnFreePorts();
      let alive = true;
      const worker = async (): Promise<void> => {
        while (alive) {
          const event = eventNumber(next++);
          sent++;
          try {
            const answer = await postSigned(cli.url, event.body, TEST_SECRET, { timeoutMs: 5_000 });
            if (answer.status === 200) acked.push(event);
          } catch {
            // The process died mid-request: not acknowledged, so Meta would retry it.
          }
        }
      };
      const workers = Array.from({ length: CONCURRENCY }, () => worker());
      await new Promise((resolve) => setTimeout(resolve, 50 + Math.floor(random() * 1_500)));
      cli.child.kill('SIGKILL');
      const exit = await cli.exited;
      alive = false;
      await Promise.all(workers);
      expect(exit.signal).toBe('SIGKILL');
      cycles++;
    }
    console.info(`crash: seed ${SEED}, ${cycles} kills, ${sent} POSTs, ${acked.length} acknowledged, ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(cycles).toBeGreaterThanOrEqual(3);
    expect(acked.length).toBeGreaterThan(0);

    // The last restart: recovery from the WAL happens on open; then stop gracefully.
    const last = await startOnFreePorts();
    const probe = eventNumber(next++);
    expect((await postSigned(last.url, probe.body)).status).toBe(200);
    acked.push(probe);
    last.child.kill('SIGTERM');
    expect(await last.exited).toEqual({ code: 0, signal: null });

    const db = new Database(dir.dbPath, { readonly: true });
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      const inbound = new Set(db.prepare('SELECT wamid FROM inbound_messages').pluck().all() as string[]);
      const statuses = new Set(db.prepare("SELECT wamid FROM statuses WHERE status = 'delivered'").pluck().all() as string[]);
      const missing = acked.filter((e) => !(e.kind === 'message' ? inbound : statuses).has(e.key)).map((e) => e.key);
      expect(missing).toEqual([]);
      // Whatever was committed, committed whole: one event per stored item, no more, no less.
      const events = db.prepare(`SELECT count(*) FROM events WHERE type IN ${MESSAGE_EVENT_TYPES}`).pluck().get() as number;
      expect(events).toBe(inbound.size + statuses.size);
    } finally {
      db.close();
    }
  }, 90_000);
});
