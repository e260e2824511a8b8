/**
 * Every fault mode of the Meta simulator against the real service over HTTP, with the outcome
 * the delivery design promises. Timing runs on a clock that stands still until the test moves
 * it, and the jitter is fixed (random = 0.5), so each backoff delay is asserted exactly:
 *   retry n waits floor(0.5 × min(5 min, 1 s × 2^(n−1))) — 500 ms, 1,000 ms, … — or the
 *   Retry-After when that is longer; 131056 waits 4^n s for that contact only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { FaultSettings } from '../src/simulator';
import { manualClock, orderProblems, positionOf, sleep, startDeliveryRig, type DeliveryRig, type ManualClock } from './helpers/delivery';

const A = '15550001001';
const B = '15550001002';
/** How long to watch for a send that must not happen yet (the sender polls every 10 ms). */
const QUIET_MS = 200;

let rig: DeliveryRig | undefined;
let clock: ManualClock;

afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

async function start(faults: FaultSettings, env: Record<string, string> = {}): Promise<DeliveryRig> {
  clock = manualClock();
  rig = await startDeliveryRig({
    clock,
    random: () => 0.5,
    sender: { idlePollMs: 10, housekeepingMs: 0 },
    env: { SEND_UNKNOWN_WAIT: '1s', ...env },
    sim: { faults },
  });
  return rig;
}

async function tap(r: DeliveryRig, contact: string, pack: string): Promise<void> {
  const answer = await r.tap(contact, pack);
  expect(answer.status).toBe(200);
}

/** Waits until the contact's first outbox row satisfies `check`, and returns it. */
function firstRowWhen(r: DeliveryRig, contact: string, check: (row: ReturnType<DeliveryRig['row']>) => boolean) {
  return r.until(() => {
    const row = r.rows(contact)[0];
    return row !== undefined && check(row) && row;
  });
}

function positions(r: DeliveryRig, contact: string): string[] {
  return r.sim.sendsTo(contact).map((s) => {
    const at = positionOf(s);
    return at === undefined ? '?' : `${at.pack}#${at.position}`;
  });
}

async function expectNoSendFor(r: DeliveryRig, contact: string, count: number): Promise<void> {
  await sleep(QUIET_MS);
  expect(r.sim.sendsTo(contact)).toHaveLength(count);
}

describe('clear failures are retried with backoff', () => {
  it('when Graph answers 429 with Retry-After, then the next attempt is not made before Retry-After has passed', async () => {
    const r = await start({ http429: { next: 1, to: A, retryAfterSeconds: 3 } });
    await tap(r, A, 'duo');
    const t0 = clock();
    const failed = await firstRowWhen(r, A, (row) => row.state === 'pending' && row.attempts === 1);
    // Retry-After (3 s) beats the jittered 500 ms.
    expect(failed).toMatchObject({ run_at: t0 + 3000, error_code: 4, error_class: 'rate_limit' });
    expect(r.sim.rejections.map((x) => x.status)).toEqual([429]);

    clock.advance(2999);
    await expectNoSendFor(r, A, 0);
    clock.advance(1);
    await r.until(() => r.unlock(A, 'duo')?.state === 'completed');
    expect(positions(r, A)).toEqual(['duo#0', 'duo#1']);
    expect(r.rows(A).map((row) => row.attempts)).toEqual([2, 1]);
  });

  it('when Graph answers 5xx twice, then it is retried after 500 ms and 1,000 ms (full jitter at 0.5) and then accepted', async () => {
    const r = await start({ http5xx: { next: 2, to: A, status: 500 } });
    await tap(r, A, 'duo');
    const t0 = clock();
    const first = await firstRowWhen(r, A, (row) => row.attempts === 1 && row.state === 'pending');
    expect(first).toMatchObject({ run_at: t0 + 500, error_code: 131000, error_class: 'server' });

    clock.advance(499);
    await sleep(QUIET_MS);
    expect(r.rows(A)[0]?.attempts).toBe(1);
    clock.advance(1);
    const second = await firstRowWhen(r, A, (row) => row.attempts === 2 && row.state === 'pending');
    expect(second.run_at).toBe(t0 + 500 + 1000);

    clock.advance(999);
    await expectNoSendFor(r, A, 0);
    clock.advance(1);
    await r.until(() => r.unlock(A, 'duo')?.state === 'completed');
    expect(r.sim.rejections.map((x) => x.code)).toEqual([131000, 131000]);
    expect(positions(r, A)).toEqual(['duo#0', 'duo#1']);
    expect(r.rows(A)[0]).toMatchObject({ state: 'accepted', attempts: 3, resent: 0 });
    expect(r.sim.duplicateSends).toBe(0);
  });

  it('when Graph answers 130429 (throughput), then the message is retried after the backoff and accepted', async () => {
    const r = await start({ throughput: { next: 1, to: A } });
    await tap(r, A, 'duo');
    const t0 = clock();
    const failed = await firstRowWhen(r, A, (row) => row.attempts === 1 && row.state === 'pending');
    expect(failed).toMatchObject({ run_at: t0 + 500, error_code: 130429, error_class: 'rate_limit' });
    clock.advance(500);
    await r.until(() => r.unlock(A, 'duo')?.state === 'completed');
    expect(positions(r, A)).toEqual(['duo#0', 'duo#1']);
  });

  it('when Graph answers 131056 for one contact, then that contact backs off 4 s then 16 s while other contacts keep being sent', async () => {
    const r = await start({ pairRateLimit: { next: 2, to: A } });
    await tap(r, A, 'trio');
    await tap(r, B, 'trio');
    const t0 = clock();
    const hit1 = await firstRowWhen(r, A, (row) => row.pair_limit_hits === 1 && row.state === 'pending');
    expect(hit1).toMatchObject({ run_at: t0 + 4000, error_code: 131056, error_class: 'pair_rate_limit' });

    // The clock stands still: B's whole pack goes out while A waits.
    await r.until(() => r.unlock(B, 'trio')?.state === 'completed');
    expect(positions(r, B)).toEqual(['trio#0', 'trio#1', 'trio#2']);
    expect(r.sim.sendsTo(A)).toHaveLength(0);

    clock.advance(3999);
    await sleep(QUIET_MS);
    expect(r.rows(A)[0]?.attempts).toBe(1);
    clock.advance(1);
    const hit2 = await firstRowWhen(r, A, (row) => row.pair_limit_hits === 2 && row.state === 'pending');
    expect(hit2.run_at).toBe(t0 + 4000 + 16_000);

    clock.advance(15_999);
    await expectNoSendFor(r, A, 0);
    clock.advance(1);
    await r.until(() => r.unlock(A, 'trio')?.state === 'completed');
    expect(positions(r, A)).toEqual(['trio#0', 'trio#1', 'trio#2']);
  });
});

describe('permanent failures are dead letters', () => {
  it.each([
    [131047, 'recipient'],
    [131026, 'recipient'],
    [100, 'invalid_request'],
  ])('when message 2 of a pack is refused with %i, then it is a dead letter with that code, the rest of the pack is cancelled and the unlock failed', async (code, errorClass) => {
    // Message 1's answer is held back a little, so the fault can be armed for message 2.
    const r = await start({ slow: { next: 1, to: A, delayMs: 100 } });
    await tap(r, A, 'trio');
    await r.until(() => r.sim.sendsTo(A).length === 1);
    r.sim.updateFaults({ error: { code, next: 1, to: A } });
    await r.until(() => r.unlock(A, 'trio')?.state === 'failed');
    await sleep(QUIET_MS);

    const rows = r.rows(A);
    expect(rows.map((row) => row.state)).toEqual(['accepted', 'dead', 'dead']);
    expect(rows[1]).toMatchObject({ error_code: code, error_class: errorClass, attempts: 1 });
    expect(rows[2]).toMatchObject({ error_code: code, attempts: 0 });
    expect(positions(r, A)).toEqual(['trio#0']);
    expect(r.sim.rejections.filter((x) => x.to === A).map((x) => x.code)).toEqual([code]); // never retried
    const failures = r.events('delivery.failed', A);
    expect(failures.map((e) => [e.position, e.error_code, e.error_class])).toEqual([
      [1, code, errorClass],
      [2, code, errorClass],
    ]);
    expect(r.events('unlock.completed', A)).toHaveLength(0);
  });

  it('when Graph answers 190 (token expired), then the message is dead with error_class auth and its pack is cancelled', async () => {
    const r = await start({ error: { code: 190, next: 1, to: A } });
    await tap(r, A, 'duo');
    await r.until(() => r.unlock(A, 'duo')?.state === 'failed');
    const rows = r.rows(A);
    expect(rows.map((row) => [row.state, row.error_code, row.error_class])).toEqual([
      ['dead', 190, 'auth'],
      ['dead', 190, 'auth'],
    ]);
    expect(r.sim.rejections.map((x) => x.status)).toEqual([401]);
    expect(r.events('delivery.failed', A).map((e) => e.error_class)).toEqual(['auth', 'auth']);
  });

  it('when a message keeps failing past SEND_MAX_AGE, then it is given up as a dead letter with its last code', async () => {
    const r = await start({ http5xx: { probability: 1, to: A, status: 500 } }, { SEND_MAX_AGE: '10s' });
    await tap(r, A, 'duo');
    await firstRowWhen(r, A, (row) => row.attempts === 1 && row.state === 'pending');
    clock.advance(10_001);
    await r.until(() => r.unlock(A, 'duo')?.state === 'failed');
    const [first, second] = r.rows(A);
    expect(first).toMatchObject({ state: 'dead', attempts: 2, error_code: 131000, error_class: 'server' });
    expect(second).toMatchObject({ state: 'dead', attempts: 0 });
    const failures = r.events('delivery.failed', A);
    expect(String(failures[0]?.reason)).toMatch(/^gave up after 10 s/);
    expect(r.sim.sendsTo(A)).toHaveLength(0);
  });
});

describe('ambiguous sends', () => {
  it('when the answer never comes but a status echoes our callback data, then the row is unknown, then accepted, and nothing is resent', async () => {
    const r = await start({ timeout: { next: 1, to: A }, webhookOutage: true });
    await tap(r, A, 'duo');
    const unknown = await firstRowWhen(r, A, (row) => row.state === 'unknown');
    expect(unknown).toMatchObject({ attempts: 1, resent: 0, error_class: 'timeout', run_at: clock() + 1000 });
    expect(r.sim.sendsTo(A)).toHaveLength(1);
    // Message 2 waits behind the unknown one.
    await expectNoSendFor(r, A, 1);

    r.sim.updateFaults({ webhookOutage: null });
    await r.until(() => r.unlock(A, 'duo')?.state === 'completed');
    const [first] = r.rows(A);
    expect(first).toMatchObject({ state: 'accepted', resent: 0, attempts: 1, wamid: r.sim.sendsTo(A)[0]?.wamid });
    expect(positions(r, A)).toEqual(['duo#0', 'duo#1']);
    expect(r.sim.duplicateSends).toBe(0);
  });

  it('when the answer never comes and every status is dropped, then it is resent once after SEND_UNKNOWN_WAIT and counted', async () => {
    const r = await start({ timeout: { next: 1, to: A }, dropStatus: { probability: 1, to: A } });
    await tap(r, A, 'duo');
    await firstRowWhen(r, A, (row) => row.state === 'unknown');
    const since = clock();

    clock.advance(999);
    await expectNoSendFor(r, A, 1);
    clock.advance(1);
    await r.until(() => r.unlock(A, 'duo')?.state === 'completed');
    const [first, second] = r.rows(A);
    expect(first).toMatchObject({ state: 'accepted', resent: 1, attempts: 2 });
    expect(second).toMatchObject({ state: 'accepted', resent: 0, attempts: 1 });
    expect(first?.accepted_at).toBe(since + 1000);
    expect(positions(r, A)).toEqual(['duo#0', 'duo#0', 'duo#1']);
    expect(r.sim.sendsTo(A).map((s) => s.attempt)).toEqual([1, 2, 1]);
    expect(r.sim.duplicateSends).toBe(1);
  });

  it('when the request hangs (nothing accepted), then the row is unknown, resent once, and Meta has the message exactly once', async () => {
    const r = await start({ hang: { next: 1, to: A } });
    await tap(r, A, 'duo');
    await firstRowWhen(r, A, (row) => row.state === 'unknown');
    expect(r.sim.sendsTo(A)).toHaveLength(0);
    clock.advance(1000);
    await r.until(() => r.unlock(A, 'duo')?.state === 'completed');
    expect(r.rows(A).map((row) => row.resent)).toEqual([1, 0]);
    expect(positions(r, A)).toEqual(['duo#0', 'duo#1']);
    expect(r.sim.duplicateSends).toBe(0);
  });

  it('when answers are slow but within SEND_TIMEOUT, then every message is accepted on its first attempt, in order', async () => {
    const r = await start({ slow: { probability: 1, to: A, delayMs: 150 } });
    await tap(r, A, 'trio');
    await r.until(() => r.unlock(A, 'trio')?.state === 'completed');
    expect(r.rows(A).map((row) => [row.state, row.attempts, row.resent])).toEqual([
      ['accepted', 1, 0],
      ['accepted', 1, 0],
      ['accepted', 1, 0],
    ]);
    expect(orderProblems(r.sim.sendsTo(A).map((s) => positionOf(s) ?? { pack: '?', position: -1 }))).toEqual([]);
    expect(r.sim.stats().slowed).toBe(3);
  });

  it('when answers are slower than SEND_TIMEOUT, then the statuses resolve each send and nothing is sent twice', async () => {
    const r = await start({ slow: { probability: 1, to: A, delayMs: 600 } });
    await tap(r, A, 'duo');
    await r.until(() => r.unlock(A, 'duo')?.state === 'completed', 15_000);
    await sleep(700); // let the late answers arrive: they must not change anything
    expect(r.rows(A).map((row) => [row.state, row.attempts, row.resent])).toEqual([
      ['accepted', 1, 0],
      ['accepted', 1, 0],
    ]);
    expect(positions(r, A)).toEqual(['duo#0', 'duo#1']);
    expect(r.sim.duplicateSends).toBe(0);
  });
});

describe('held answers', () => {
  it('when Meta holds the answers of 150 sends, then the sends of other contacts are not queued behind them', async () => {
    // The Graph client must not cap sockets below the sender's in-flight limit (256): a smaller
    // pool would hold every later send until the held ones time out.
    const r = (rig = await startDeliveryRig({ env: { SEND_TIMEOUT: '8s' }, sim: { faults: { timeout: { next: 150 } }, statuses: { readProbability: 0 } } }));
    const contacts = Array.from({ length: 200 }, (_, i) => String(15550002000 + i));
    const taps = await Promise.all(contacts.map((c) => r.tap(c, 'duo')));
    expect(taps.every((t) => t.status === 200)).toBe(true);
    // Well before the held answers time out (8 s), every contact has had its pack accepted:
    // the held sends through their status echoes, the others through their answers.
    await r.until(() => r.sim.sends.length >= 400, 4_000);
    expect(r.sim.stats().unanswered).toBe(150);
    await r.sim.close(); // ends the held answers, so the service stops without waiting for them
  });
});
