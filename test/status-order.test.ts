/**
 * Statuses never move backwards (invariant 7), whatever order and however often Meta
 * delivers them: a property test over random sequences POSTed to the real webhook.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metaCallback, postSigned, runConcurrently, startTestService, type TestService } from './helpers/webhook';

const RANK: Readonly<Record<string, number>> = { sent: 1, failed: 2, delivered: 3, read: 4 };
const FAILED_CODE = 131026;

interface Step {
  readonly status: 'sent' | 'delivered' | 'read' | 'failed' | 'deleted';
  readonly ts: number;
}

function statusBody(wamid: string, step: Step): string {
  const status = {
    id: wamid,
    status: step.status,
    timestamp: String(step.ts),
    recipient_id: '16505551234',
    ...(step.status === 'failed' ? { errors: [{ code: FAILED_CODE, title: 'Message undeliverable' }] } : {}),
  };
  return JSON.stringify(metaCallback({ statuses: [status] }));
}

// `deleted` is a status name we do not rank: stored, never moving the current status.
const stepArb = fc.record({
  status: fc.constantFrom<Step['status']>('sent', 'delivered', 'read', 'failed', 'sent', 'delivered', 'read', 'failed', 'deleted'),
  ts: fc.integer({ min: 1_750_000_000, max: 1_750_000_050 }),
});
const stepsArb = fc.array(stepArb, { minLength: 1, maxLength: 8 });

let svc: TestService;
let nextWamid = 0;
beforeAll(async () => {
  svc = await startTestService();
});
afterAll(async () => {
  await svc.stop();
});

interface Current {
  status: string;
  rank: number;
  status_at: number;
  error_code: number | null;
}

const current = (wamid: string): Current | undefined =>
  svc.service.db.prepare('SELECT status, rank, status_at, error_code FROM message_status WHERE wamid = ?').get(wamid) as Current | undefined;

/** What message_status must hold after `steps`: the first arrival of the highest rank seen. */
function expected(steps: readonly Step[]): Current | undefined {
  let best: Current | undefined;
  for (const step of steps) {
    const rank = RANK[step.status];
    if (rank === undefined || (best !== undefined && rank <= best.rank)) continue;
    best = { status: step.status, rank, status_at: step.ts * 1000, error_code: step.status === 'failed' ? FAILED_CODE : null };
  }
  return best;
}

describe('status order', () => {
  it('when statuses for a wamid arrive one by one in any order with duplicates, then the current status is the highest rank so far and never regresses', async () => {
    await fc.assert(
      fc.asyncProperty(stepsArb, async (steps) => {
        const wamid = `wamid.order.seq.${nextWamid++}`;
        let previousRank = 0;
        for (let i = 0; i < steps.length; i++) {
          const answer = await postSigned(svc.url, statusBody(wamid, steps[i] as Step));
          expect(answer.status).toBe(200);
          const now = current(wamid);
          expect(now).toEqual(expected(steps.slice(0, i + 1)));
          expect(now?.rank ?? 0).toBeGreaterThanOrEqual(previousRank);
          previousRank = now?.rank ?? 0;
        }
        // Every distinct (wamid, status) is kept, unknown wamid or not, each with exactly one event.
        const distinct = [...new Set(steps.map((s) => s.status))].sort();
        const db = svc.service.db;
        expect(db.prepare('SELECT status FROM statuses WHERE wamid = ? ORDER BY status').pluck().all(wamid)).toEqual(distinct);
        const events = db.prepare("SELECT count(*) FROM events WHERE type = 'message.status' AND json_extract(data, '$.wamid') = ?").pluck().get(wamid);
        expect(events).toBe(distinct.length);
      }),
      { numRuns: 60 },
    );
  });

  it('when all statuses of a wamid are POSTed at once (concurrently), then the final status is still the highest rank', async () => {
    await fc.assert(
      fc.asyncProperty(stepsArb, async (steps) => {
        const wamid = `wamid.order.par.${nextWamid++}`;
        const answers = await runConcurrently(
          steps.map((step) => () => postSigned(svc.url, statusBody(wamid, step))),
          steps.length,
        );
        expect(answers.map((a) => a.status)).toEqual(steps.map(() => 200));
        const top = expected(steps);
        const now = current(wamid);
        // Concurrent arrivals may commit in any order, so only status and rank are determined.
        expect(now === undefined ? undefined : { status: now.status, rank: now.rank }).toEqual(top === undefined ? undefined : { status: top.status, rank: top.rank });
      }),
      { numRuns: 40 },
    );
  });

  it('when read arrives for a wamid we never sent and without delivered, then it is kept as read and a later sent does not downgrade it', async () => {
    const wamid = 'wamid.order.unknown.1';
    expect((await postSigned(svc.url, statusBody(wamid, { status: 'read', ts: 1_750_000_010 }))).status).toBe(200);
    expect((await postSigned(svc.url, statusBody(wamid, { status: 'sent', ts: 1_750_000_001 }))).status).toBe(200);
    expect((await postSigned(svc.url, statusBody(wamid, { status: 'failed', ts: 1_750_000_020 }))).status).toBe(200);
    expect(current(wamid)).toEqual({ status: 'read', rank: 4, status_at: 1_750_000_010_000, error_code: null });
    expect(svc.service.db.prepare('SELECT count(*) FROM statuses WHERE wamid = ?').pluck().get(wamid)).toBe(3);
  });
});
