/**
 * Delivery under chaos, against the simulator over real HTTP:
 *  - 1,000 packs while 20% of sends fail at random (10% 5xx, 10% accepted but never answered)
 *    and some statuses are dropped → after the drain nothing is lost, nothing is out of order,
 *    and every duplicate Meta saw comes from an ambiguous attempt the outbox counted (resent = 1);
 *  - 1,000 taps, each POSTed 1–5 times concurrently (Meta's at-least-once delivery) → one
 *    unlock per (contact, pack) and no message sent twice.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { driveTaps, syntheticContacts } from '../src/simulator';
import { TEST_SECRET } from './helpers/webhook';
import { historyOf, orderProblems, outboxIdOf, positionsByContact, SMALL_PACKS, startDeliveryRig, triggerOf, type DeliveryRig } from './helpers/delivery';

let rig: DeliveryRig | undefined;

afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

const count = (r: DeliveryRig, sql: string): number => r.db.prepare(sql).pluck().get() as number;

describe('delivery under random faults', () => {
  it('when 20% of sends fail with 5xx or time out over 1,000 packs, then after the drain 0 messages are lost, 0 are out of order, and every duplicate is a counted resend', async () => {
    const r = (rig = await startDeliveryRig({
      // The simulator and the service share this process's event loop on a shared machine: a rate
      // it can serve and timeouts well above its stalls keep it from making ambiguous sends of its
      // own (an attempt ambiguous twice without a status is a dead letter by design).
      env: { SEND_TIMEOUT: '4s', SEND_UNKNOWN_WAIT: '4s', SEND_RATE_PER_SECOND: '300' },
      sender: { idlePollMs: 20 },
      sim: {
        seed: 20,
        statuses: { readProbability: 0, deliveredDelayMs: 20 },
        faults: {
          http5xx: { probability: 0.1 },
          timeout: { probability: 0.1 },
          dropStatus: { probability: 0.1 }, // both statuses of ~1% of sends: some ambiguous sends stay unresolved
        },
      },
    }));
    const contacts = syntheticContacts(1000);
    const report = await driveTaps({ webhookUrl: r.url, appSecret: TEST_SECRET, contacts, triggers: [triggerOf('trio')], taps: 1000, ratePerSecond: 500, phoneNumberId: r.sim.phoneNumberId, seed: 1 });
    expect(report.undelivered).toBe(0);

    try {
      await r.until(() => count(r, `SELECT count(*) FROM unlocks WHERE state <> 'sending'`) === 1000, 45_000);
    } catch (error) {
      const open = r.db.prepare(`SELECT state, attempts, resent, substr(last_error, 1, 40) AS error, count(*) AS n FROM outbox WHERE state <> 'accepted' GROUP BY 1, 2, 3, 4`).all();
      throw new Error(`${(error as Error).message}; rows not accepted: ${JSON.stringify(open)}`);
    }

    const lost = r.db.prepare(`SELECT id FROM outbox WHERE state <> 'accepted' AND attempts > 0 LIMIT 3`).pluck().all() as number[];
    expect(count(r, `SELECT count(*) FROM unlocks WHERE state = 'completed'`), JSON.stringify(lost.map((id) => historyOf(r, id)))).toBe(1000);
    expect(count(r, `SELECT count(*) FROM outbox`)).toBe(3000);
    expect(count(r, `SELECT count(*) FROM outbox WHERE state = 'accepted'`)).toBe(3000);

    // Order: per contact, Meta saw trio#0, trio#1, trio#2 (a counted resend may repeat the one just sent).
    const byContact = positionsByContact(r.sim.sends);
    expect(byContact.size).toBe(1000);
    const inversions = [...byContact].flatMap(([contact, list]) => orderProblems(list).map((p) => `${contact}: ${p}`));
    expect(inversions).toEqual([]);
    for (const list of byContact.values()) expect(new Set(list.map((x) => x.position))).toEqual(new Set([0, 1, 2]));

    // Duplicates: each one is a second copy of a row the outbox marked as resent.
    const duplicates = r.sim.sends.filter((s) => s.attempt > 1);
    expect(duplicates).toHaveLength(r.sim.duplicateSends);
    const resent = new Set(r.db.prepare('SELECT id FROM outbox WHERE resent = 1').pluck().all() as number[]);
    for (const dup of duplicates) expect(resent.has(outboxIdOf(dup) ?? -1)).toBe(true);
    expect(duplicates.filter((d) => d.attempt > 2)).toEqual([]);
    expect(r.sim.duplicateSends).toBeLessThanOrEqual(resent.size);

    // The faults really happened.
    const stats = r.sim.stats();
    expect(r.sim.rejections.filter((x) => x.fault === 'http5xx').length).toBeGreaterThan(150);
    expect(stats.unanswered).toBeGreaterThan(150);
    expect(count(r, `SELECT count(*) FROM outbox WHERE attempts > 1`)).toBeGreaterThan(150);
  });
});

describe('redelivered taps', () => {
  it('when 1,000 taps are each POSTed 1-5 times concurrently, then each (contact, pack) has exactly one unlock and no message is sent twice', async () => {
    const r = (rig = await startDeliveryRig({ env: { SEND_TIMEOUT: '10s' }, sim: { statuses: { readProbability: 0 } } }));
    // 500 contacts tap twice each over two packs: repeats by the contact as well as by Meta.
    const report = await driveTaps({
      webhookUrl: r.url,
      appSecret: TEST_SECRET,
      contacts: 500,
      triggers: SMALL_PACKS.map((p) => triggerOf(p.id)),
      taps: 1000,
      ratePerSecond: 2000,
      duplicateRate: 0.8,
      maxDeliveries: 5,
      concurrency: 256,
      phoneNumberId: r.sim.phoneNumberId,
      seed: 5,
    });
    expect(report.undelivered).toBe(0);
    expect(report.duplicatePosts).toBeGreaterThan(1000);

    const pairs = r.db.prepare('SELECT DISTINCT contact, pack_id AS pack FROM clicks').all() as Array<{ contact: string; pack: string }>;
    expect(count(r, 'SELECT count(*) FROM clicks')).toBe(1000);
    const expectedSends = pairs.reduce((n, p) => n + (SMALL_PACKS.find((s) => s.id === p.pack)?.size ?? 0), 0);
    await r.until(() => r.sim.sends.length >= expectedSends && count(r, `SELECT count(*) FROM unlocks WHERE state <> 'completed'`) === 0, 30_000);
    await r.sim.idle(10_000);

    expect(count(r, 'SELECT count(*) FROM unlocks')).toBe(pairs.length);
    expect(count(r, 'SELECT count(*) FROM (SELECT 1 FROM unlocks GROUP BY contact, pack_id HAVING count(*) > 1)')).toBe(0);
    expect(count(r, `SELECT count(*) FROM clicks WHERE result = 'started'`)).toBe(pairs.length);
    expect(count(r, `SELECT count(*) FROM clicks WHERE result = 'repeated'`)).toBe(1000 - pairs.length);

    expect(r.sim.sends).toHaveLength(expectedSends);
    expect(r.sim.duplicateSends).toBe(0);
    for (const [contact, list] of positionsByContact(r.sim.sends)) {
      const seen = list.map((x) => `${x.pack}#${x.position}`);
      expect(new Set(seen).size, `${contact} got a message twice: ${seen.join(', ')}`).toBe(seen.length);
      expect(orderProblems(list)).toEqual([]);
    }
  });
});
