/**
 * Crash test for delivery: the compiled CLI (`ctu start`) sends packs to a Meta simulator that
 * lives in this test process (so its send log survives), and is SIGKILLed again and again while
 * taps flow in and sends are in flight. After the last restart and the drain:
 *  - every tap that got a 200 has its pack delivered completely, in order;
 *  - no unlock is left unfinished, no outbox row is lost;
 *  - every duplicate Meta saw is an ambiguous attempt the outbox counted (resent = 1), at most once.
 * Needs the build (`npm test` builds first; or run `npm run build`).
 */
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildTapPayload, startSimulator, syntheticContacts, type Simulator } from '../src/simulator';
import { makeTempDir, postSigned, REPO_ROOT, seededRandom, startCli, TEST_SECRET, testEnv, type CliProcess } from './helpers/webhook';
import { orderProblems, outboxIdOf, positionsByContact, simEnv, sleep, triggerOf, writeCatalogFile } from './helpers/delivery';

const KILLS = 4;
const TAPS_PER_SECOND = 150;
const SEED = Number(process.env.CRASH_SEED ?? Date.now() % 1_000_000);
const PACK = { id: 'trio', size: 3 };
/** Sends each killed copy must have made before its kill (about 0.1 s of sending at this rate). */
const MIN_SENDS_BEFORE_KILL = 50;

const dir = makeTempDir('ctu-delivery-crash-');
const children: CliProcess[] = [];
let sim: Simulator | undefined;
afterAll(async () => {
  for (const cli of children) if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL');
  await sim?.close();
  dir.remove();
});

/** Posts one tap per contact at a steady pace until `signal` aborts; records who got a 200. */
async function tapUntil(url: string, contacts: string[], acked: Set<string>, signal: AbortSignal): Promise<void> {
  const inFlight = new Set<Promise<void>>();
  const started = performance.now();
  let sent = 0;
  while (!signal.aborted && contacts.length > 0) {
    const due = Math.floor(((performance.now() - started) * TAPS_PER_SECOND) / 1000) - sent;
    for (let i = 0; i < due && contacts.length > 0; i++) {
      const contact = contacts.shift() as string;
      sent++;
      const payload = buildTapPayload({ contact, trigger: triggerOf(PACK.id), phoneNumberId: sim?.phoneNumberId }, TEST_SECRET);
      const p = postSigned(url, payload.body, TEST_SECRET, { timeoutMs: 5_000 }).then(
        (answer) => {
          if (answer.status === 200) acked.add(contact);
        },
        () => undefined, // killed mid-request: not acknowledged, so nothing is promised
      );
      const tracked = p.finally(() => inFlight.delete(tracked));
      inFlight.add(tracked);
    }
    await sleep(10);
  }
  await Promise.all(inFlight);
}

describe('delivery across crashes', () => {
  it('when the service is SIGKILLed repeatedly during heavy sending, then every acknowledged tap gets its whole pack in order and every duplicate is a counted resend', async () => {
    const built = existsSync(join(REPO_ROOT, 'dist', 'src', 'cli.js'));
    if (!built && process.env.CI) throw new Error('dist/src/cli.js is missing: run `npm run build` before this test');
    if (!built) return;

    const random = seededRandom(SEED);
    // Slow answers keep many sends in flight when the kill comes; dropped statuses leave some of
    // those ambiguous sends without an echo, so they must be resent (and counted).
    sim = await startSimulator({
      appSecret: TEST_SECRET,
      seed: SEED,
      statuses: { readProbability: 0, deliveredDelayMs: 50 },
      faults: { slow: { probability: 0.5, delayMs: 200 }, dropStatus: { probability: 0.15 } },
    });
    const env = testEnv(
      dir.dbPath,
      simEnv(sim, {
        LOG_LEVEL: 'info',
        PACKS_FILE: writeCatalogFile(dir.path, [PACK]),
        SEND_RATE_PER_SECOND: '1000',
        SEND_TIMEOUT: '3s', // leases last SEND_TIMEOUT + 5 s: a killed worker's rows come back 8 s later
        SEND_UNKNOWN_WAIT: '2s',
      }),
    );
    const contacts = syntheticContacts(5_000);
    const acked = new Set<string>();

    for (let round = 0; round <= KILLS; round++) {
      const cli = await startCli(env);
      children.push(cli);
      sim.setWebhook(cli.url, TEST_SECRET);
      const last = round === KILLS;
      const abort = new AbortController();
      const sendsBefore = sim.sends.length;
      const tapping = tapUntil(cli.url, contacts, acked, abort.signal);
      await sleep(last ? 1_000 : 1_200 + Math.floor(random() * 1_500));
      if (last) {
        abort.abort();
        await tapping;
        break;
      }
      // Kill only once this copy is sending in earnest, so sends are in flight (ambiguous) when
      // it dies: on a loaded machine start-up can take most of the random delay.
      const current = sim;
      await current.waitFor(() => current.sends.length >= sendsBefore + MIN_SENDS_BEFORE_KILL, 8_000).catch((error: Error) => {
        throw new Error(`round ${round}: the copy made ${current.sends.length - sendsBefore} sends, not ${MIN_SENDS_BEFORE_KILL}, before its kill: ${error.message}`);
      });
      cli.child.kill('SIGKILL');
      abort.abort();
      await tapping;
      await cli.exited;
    }
    const final = children[children.length - 1] as CliProcess;

    // Drain: every outbox row settles (leases of killed workers expire, unknown rows resolve or are resent).
    const db = new Database(dir.dbPath, { readonly: true, fileMustExist: true });
    const open = db.prepare(`SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending', 'unknown')`).pluck();
    try {
      await sim.waitFor(() => open.get() === 0, 40_000);
    } catch (error) {
      const states = db.prepare(`SELECT state, resent, substr(last_error, 1, 50) AS error, count(*) AS n, min(run_at) - ${Date.now()} AS due FROM outbox WHERE state <> 'accepted' GROUP BY 1, 2, 3`).all();
      throw new Error(`${(error as Error).message}; open rows: ${JSON.stringify(states)}\n${final.output().slice(-2000)}`);
    } finally {
      db.close();
    }
    await sim.idle(10_000).catch(() => undefined);
    final.child.kill('SIGTERM');
    expect((await final.exited).code).toBe(0);

    const check = new Database(dir.dbPath, { readonly: true, fileMustExist: true });
    try {
      const unlocks = check.prepare('SELECT contact, state FROM unlocks').all() as Array<{ contact: string; state: string }>;
      const rows = check.prepare('SELECT id, contact, position, state, resent FROM outbox').all() as Array<{ id: number; contact: string; position: number; state: string; resent: number }>;

      expect(acked.size).toBeGreaterThan(300);
      const unlocked = new Map(unlocks.map((u) => [u.contact, u.state]));
      const missing = [...acked].filter((c) => unlocked.get(c) !== 'completed');
      expect(missing, 'acknowledged taps without a completed unlock').toEqual([]);
      expect(unlocks.filter((u) => u.state !== 'completed')).toEqual([]);
      expect(rows.filter((r) => r.state !== 'accepted')).toEqual([]);
      expect(rows).toHaveLength(unlocks.length * PACK.size);

      // Meta's view: for every unlocked contact, positions 0, 1, 2 in order.
      const byContact = positionsByContact(sim.sends);
      const problems: string[] = [];
      for (const { contact } of unlocks) {
        const list = byContact.get(contact) ?? [];
        const positions = new Set(list.map((x) => x.position));
        if (positions.size !== PACK.size) problems.push(`${contact}: positions ${[...positions].join(',')}`);
        problems.push(...orderProblems(list).map((p) => `${contact}: ${p}`));
      }
      expect(problems).toEqual([]);

      // Duplicates: only rows that were resent after an ambiguous attempt, and at most one extra copy each.
      const resent = new Set(rows.filter((r) => r.resent === 1).map((r) => r.id));
      const duplicates = sim.sends.filter((s) => s.attempt > 1);
      expect(duplicates.filter((s) => !resent.has(outboxIdOf(s) ?? -1))).toEqual([]);
      expect(duplicates.filter((s) => s.attempt > 2)).toEqual([]);
      expect(duplicates.length).toBe(sim.duplicateSends);
      expect(resent.size, 'the kills left ambiguous sends that had to be resent').toBeGreaterThan(0);
      expect(check.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      check.close();
    }
  }, 120_000);
});
