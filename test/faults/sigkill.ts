/**
 * Scenario 1, SIGKILL cycles under taps: the compiled service is killed again and again while
 * new contacts tap Unlock at a steady rate and sends are in flight; Meta's stand-in keeps
 * redelivering every tap until it gets a 200. After the last restart and the drain, the
 * history checker must find: no acknowledged tap lost, every pack complete and in order at
 * Meta, and duplicates only where an attempt was ambiguous (outbox.resent = 1), each counted.
 */
import { expect } from 'vitest';
import { syntheticContacts } from '../../src/simulator';
import { sleep, triggerOf } from '../helpers/delivery';
import { seededRandom } from '../helpers/webhook';
import { checkHistory, openOutboxRows } from './history';
import { envNumber, MetaRedelivery, tapStream, report, startRig } from './rig';

export interface SigkillParams {
  readonly cycles: number;
  readonly tapsPerSecond: number;
  /** The service runs this long (uniformly at random within) before each kill. */
  readonly upMs: readonly [number, number];
  readonly seed: number;
}

export const SIGKILL_SHORT: SigkillParams = { cycles: 3, tapsPerSecond: 50, upMs: [1_500, 3_000], seed: 1 };
export const SIGKILL_LONG: SigkillParams = { cycles: envNumber('FAULTS_SIGKILL_CYCLES', 50), tapsPerSecond: 200, upMs: [1_500, 4_000], seed: 1 };

const PACK = { id: 'trio', size: 3 };

/** Generous bound for one scenario run, for the test's timeout. */
export function sigkillBudgetMs(p: SigkillParams): number {
  return p.cycles * (p.upMs[1] + 4_000) + 150_000;
}

export async function sigkillScenario(p: SigkillParams): Promise<void> {
  const seed = Number(process.env.FAULTS_SEED ?? p.seed);
  const random = seededRandom(seed);
  // Slow answers keep sends in flight when the kill comes; dropped statuses leave some of those
  // ambiguous sends without an echo, so they must be resent (and counted). Status callbacks that
  // hit a dead service are retried as Meta retries them (for days, not six times).
  const rig = await startRig({
    packs: [PACK],
    sim: {
      seed,
      statuses: { readProbability: 0, deliveredDelayMs: 50 },
      faults: { slow: { probability: 0.4, delayMs: 150 }, dropStatus: { probability: 0.15 } },
      delivery: { maxAttempts: 10_000, retryMaxMs: 1_000 },
    },
    env: { SEND_RATE_PER_SECOND: '2000', SEND_TIMEOUT: '3s', SEND_UNKNOWN_WAIT: '2s' },
  });
  const meta = new MetaRedelivery();
  const started = Date.now();
  try {
    const contacts = syntheticContacts(Math.ceil((p.cycles + 2) * (p.upMs[1] / 1000 + 3) * p.tapsPerSecond));
    const abort = new AbortController();
    // One steady stream of taps across every kill and restart, as Meta's traffic would be.
    const tapping = tapStream(meta, rig.sim.phoneNumberId, triggerOf(PACK.id), p.tapsPerSecond, abort.signal, contacts);
    let kills = 0;
    let sendsAtKills = 0;
    for (let cycle = 0; cycle < p.cycles; cycle++) {
      const cli = await rig.start();
      meta.target = cli.url;
      const sendsAtStart = rig.sim.sends.length;
      await sleep(p.upMs[0] + Math.floor(random() * (p.upMs[1] - p.upMs[0])));
      const sendsBefore = rig.sim.sends.length;
      await rig.kill();
      meta.target = undefined;
      kills++;
      if (sendsBefore > sendsAtStart) sendsAtKills++;
    }

    // The last start: taps stop, Meta's redeliveries catch up, the outbox settles.
    const final = await rig.start();
    meta.target = final.url;
    abort.abort();
    const taps = await tapping;
    await meta.drain(60_000);
    const settled = await rig.sim.waitFor(() => openOutboxRows(rig.dir.dbPath) === 0, 60_000).catch(() => false);
    expect(settled, `outbox still has ${openOutboxRows(rig.dir.dbPath)} open rows 60 s after the last restart`).toBe(true);
    await rig.sim.idle(15_000).catch(() => undefined);
    expect(await rig.stop(), 'graceful stop after the drain').toBe(0);

    const history = checkHistory({ dbPath: rig.dir.dbPath, pack: PACK, acknowledged: meta.acked.keys(), sends: rig.sim.sends, simDuplicateSends: rig.sim.duplicateSends });
    report('sigkill', {
      seed,
      kills,
      tapsPerSecond: p.tapsPerSecond,
      taps,
      posts: meta.posts,
      redeliveries: meta.redeliveries,
      acknowledged: history.acknowledgedTaps,
      unlocks: history.unlocks,
      sends: history.sends,
      duplicateSends: history.duplicateSends,
      resentRows: history.resentRows,
      lost: history.problems.length === 0 ? 0 : 'see problems',
      seconds: Math.round((Date.now() - started) / 1000),
    });
    expect(history.problems).toEqual([]);
    expect(kills).toBe(p.cycles);
    expect(sendsAtKills, 'cycles in which sends were flowing when the kill came').toBe(p.cycles);
    expect(history.acknowledgedTaps, 'every tap was eventually acknowledged').toBe(taps);
    expect(history.acknowledgedTaps).toBeGreaterThan(p.cycles * p.tapsPerSecond);
    expect(meta.redeliveries, 'the kills cost Meta some redeliveries').toBeGreaterThan(0);
  } finally {
    meta.close();
    await rig.dispose();
  }
}
