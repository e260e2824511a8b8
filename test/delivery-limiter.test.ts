/**
 * The global send limiter against the simulator over real HTTP: with a backlog far larger than
 * the rate, the sender holds SEND_RATE_PER_SECOND (Meta's default 80/s per number) within a few
 * percent, measured from the simulator's acceptedAt timestamps in the steady state (after the
 * first second, which may include the bucket's initial tenth-of-a-second burst).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { driveTaps, syntheticContacts } from '../src/simulator';
import { TEST_SECRET } from './helpers/webhook';
import { startDeliveryRig, triggerOf, type DeliveryRig } from './helpers/delivery';

const RATE = 80;
const WARMUP_MS = 1_000;
const WINDOW_MS = 5_000;

let rig: DeliveryRig | undefined;

afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

describe('send limiter', () => {
  it('when the backlog exceeds the rate, then the sender holds 80 sends/s within a few percent', async () => {
    const r = (rig = await startDeliveryRig({
      env: { SEND_RATE_PER_SECOND: String(RATE), SEND_TIMEOUT: '5s' },
      sim: { statuses: { readProbability: 0 } },
    }));
    // 250 packs of 3: ~9 s of work at 80/s, so the queue never runs dry inside the window.
    const report = await driveTaps({ webhookUrl: r.url, appSecret: TEST_SECRET, contacts: syntheticContacts(250), triggers: [triggerOf('trio')], taps: 250, ratePerSecond: 1000, phoneNumberId: r.sim.phoneNumberId });
    expect(report.undelivered).toBe(0);

    const first = await r.until(() => r.sim.sends[0]);
    const end = first.acceptedAt + WARMUP_MS + WINDOW_MS;
    await r.until(() => r.sim.sends.some((s) => s.acceptedAt >= end), 15_000);
    const inWindow = (from: number, ms: number): number => r.sim.sends.filter((s) => s.acceptedAt >= from && s.acceptedAt < from + ms).length;

    const start = first.acceptedAt + WARMUP_MS;
    const rate = (inWindow(start, WINDOW_MS) * 1000) / WINDOW_MS;
    expect(Math.abs(rate - RATE) / RATE, `measured ${rate} sends/s`).toBeLessThanOrEqual(0.04);
    for (let s = 0; s < WINDOW_MS / 1000; s++) {
      const perSecond = inWindow(start + s * 1000, 1000);
      expect(perSecond, `second ${s + 1} of the window`).toBeGreaterThanOrEqual(RATE * 0.9);
      expect(perSecond, `second ${s + 1} of the window`).toBeLessThanOrEqual(RATE * 1.1);
    }
    expect(r.db.prepare(`SELECT count(*) FROM outbox WHERE state = 'pending'`).pluck().get()).toBeGreaterThan(0); // still backlogged
  });
});
