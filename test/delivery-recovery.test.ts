/**
 * After an outage, backed-off retries do not wait out their backoff once Graph API answers
 * again: the first accepted send makes them due, and the limiter paces the drain.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { manualClock, startDeliveryRig, type DeliveryRig, type ManualClock } from './helpers/delivery';

const A = '15550002001';
const B = '15550002002';
let rig: DeliveryRig | undefined;
let clock: ManualClock;

/** A's first message once its first attempt failed and it waits for a retry. */
function firstAttemptFailed(r: DeliveryRig) {
  return r.until(() => {
    const row = r.rows(A)[0];
    return row !== undefined && row.state === 'pending' && row.attempts === 1 && row;
  });
}

afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

describe('recovery after a Graph API outage', () => {
  it('when a send succeeds after server errors, then the other backed-off retries become due at once', async () => {
    clock = manualClock();
    // A's first message fails with 503 and backs off; B's first attempt fails too, then B succeeds.
    rig = await startDeliveryRig({
      clock,
      random: () => 0.99, // long backoffs, so only the pull-forward can make A due soon
      sender: { idlePollMs: 10, housekeepingMs: 0 },
      sim: { faults: { http5xx: { next: 1, to: A, status: 503 } } },
    });
    const r = rig;
    expect((await r.tap(A, 'duo')).status).toBe(200);
    const failed = await firstAttemptFailed(r);
    const t0 = clock();
    expect(failed.run_at).toBeGreaterThan(t0); // waiting out its backoff
    expect(failed).toMatchObject({ error_class: 'server' });

    // Another contact's send goes through (Graph API is back): A is due now, without the clock moving.
    expect((await r.tap(B, 'duo')).status).toBe(200);
    await r.until(() => r.unlock(B, 'duo')?.state === 'completed');
    await r.until(() => r.unlock(A, 'duo')?.state === 'completed');
    expect(clock()).toBe(t0);
    expect(r.rows(A).map((row) => row.attempts)).toEqual([2, 1]);
  });

  it('when only a throughput limit (429) backed a message off, then its Retry-After is still honoured', async () => {
    clock = manualClock();
    rig = await startDeliveryRig({
      clock,
      random: () => 0.5,
      sender: { idlePollMs: 10, housekeepingMs: 0 },
      sim: { faults: { http429: { next: 1, to: A, retryAfterSeconds: 30 } } },
    });
    const r = rig;
    expect((await r.tap(A, 'duo')).status).toBe(200);
    const failed = await firstAttemptFailed(r);
    expect((await r.tap(B, 'duo')).status).toBe(200);
    await r.until(() => r.unlock(B, 'duo')?.state === 'completed');
    expect(r.rows(A)[0]).toMatchObject({ state: 'pending', attempts: 1, run_at: failed.run_at });
  });
});
