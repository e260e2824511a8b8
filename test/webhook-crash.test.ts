/**
 * Crash test for invariant 1 (200 only after commit): the compiled CLI is SIGKILLed at
 * random moments while a client POSTs distinct signed events; after a final restart every
 * event that got a 200 must be in the database and the file must pass integrity_check.
 * Needs the build (`npm test` builds first; or run `npm run build`).
 */
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, MESSAGE_EVENT_TYPES, makeTempDir, postSigned, REPO_ROOT, seededRandom, startCli, TEST_SECRET, TEST_VERIFY_TOKEN, type CliProcess } from './helpers/webhook';

const CYCLES = 8;
const TOTAL_BUDGET_MS = 35_000;
const CONCURRENCY = 16;
const SEED = Number(process.env.CRASH_SEED ?? Date.now() % 1_000_000);

const dir = makeTempDir('ctu-crash-');
const children: CliProcess[] = [];
afterAll(() => {
  for (const cli of children) if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL');
  dir.remove();
});

async function cliEnv(): Promise<Record<string, string>> {
  return {
    DATABASE_PATH: dir.dbPath,
    META_APP_SECRET: TEST_SECRET,
    META_VERIFY_TOKEN: TEST_VERIFY_TOKEN,
    HOST: '127.0.0.1',
    WEBHOOK_PORT: String(await freePort()),
    WS_PORT: String(await freePort()),
    API_PORT: String(await freePort()),
    METRICS_PORT: String(await freePort()),
    LOG_LEVEL: 'info',
  };
}

/** Starts the CLI on fresh free ports; retries when a port was taken between probe and bind. */
async function startOnFreePorts(): Promise<CliProcess> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const cli = await startCli(await cliEnv());
      children.push(cli);
      return cli;
    } catch (error) {
      lastError = error;
      if (!String(error).includes('EADDRINUSE')) break;
    }
  }
  throw lastError;
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
    if (!existsSync(join(REPO_ROOT, 'dist', 'src', 'cli.js'))) {
      throw new Error('dist/src/cli.js is missing: run `npm run build` first (`npm test` does)');
    }
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
