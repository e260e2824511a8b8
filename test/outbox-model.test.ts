/**
 * Model-based property test of the outbox state machine, against a real SQLite file.
 * fast-check generates sequences of taps, claims, send outcomes (accepted, retryable error,
 * 131056, permanent error, ambiguous timeout, crash before recording), status echoes and clock
 * jumps, with failures injected inside the tap transaction. After every step:
 *  - an unlock exists if and only if all of its outbox rows do (and the click that started it);
 *  - per contact at most one row is in flight (sending or unknown);
 *  - within an unlock, accepted positions form a prefix and were accepted in position order.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { GroupCommitter } from '../src/group-commit';
import { classifyGraphError } from '../src/graph-errors';
import { createIngest } from '../src/ingest';
import { createOutbox } from '../src/outbox';
import { parseCatalog } from '../src/packs';
import { openDatabase, type Db } from '../src/store/database';
import { createDeliveryStore, type OutboxRow } from '../src/store/delivery-store';
import { createRollupStore } from '../src/store/rollup-store';
import { createWebhookStore } from '../src/store/webhook-store';
import { createUnlockHooks } from '../src/unlock';
import { makeTempDir } from './helpers/webhook';

const catalog = parseCatalog({
  packs: [
    { id: 'a', trigger: 'unlock:a', messages: [1, 2, 3, 4].map((n) => ({ type: 'text', text: { body: `a${n}` } })) },
    { id: 'b', trigger: 'unlock:b', messages: [1, 2].map((n) => ({ type: 'text', text: { body: `b${n}` } })) },
  ],
});
const CONTACTS = ['15550000001', '15550000002', '15550000003'];

type Outcome = 'accepted' | 'retry' | 'pair' | 'permanent' | 'ambiguous' | 'crash';
type Step =
  | { kind: 'tap'; contact: number; pack: 'a' | 'b'; failInside: boolean }
  | { kind: 'claim'; limit: number }
  | { kind: 'outcome'; pick: number; outcome: Outcome }
  | { kind: 'echo'; pick: number }
  | { kind: 'advance'; ms: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('tap' as const), contact: fc.nat(CONTACTS.length - 1), pack: fc.constantFrom('a' as const, 'b' as const), failInside: fc.boolean() }),
  fc.record({ kind: fc.constant('claim' as const), limit: fc.integer({ min: 1, max: 5 }) }),
  fc.record({ kind: fc.constant('outcome' as const), pick: fc.nat(), outcome: fc.constantFrom<Outcome>('accepted', 'accepted', 'retry', 'pair', 'permanent', 'ambiguous', 'crash') }),
  fc.record({ kind: fc.constant('echo' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.constantFrom(10, 1_000, 30_000, 300_000) }),
);

const dirs: Array<{ remove(): void }> = [];
afterAll(() => dirs.forEach((d) => d.remove()));

function harness() {
  const dir = makeTempDir('ctu-outbox-model-');
  dirs.push(dir);
  const db = openDatabase(dir.dbPath);
  let now = 1_800_000_000_000;
  let failNextTap = false;
  const webhookStore = createWebhookStore(db);
  const store = createDeliveryStore(db);
  const rollup = createRollupStore(db);
  const outbox = createOutbox({ store, rollup, appendEvent: webhookStore.appendEvent, random: () => 0.5, settings: { unknownWaitMs: 60_000, maxAgeMs: 86_400_000 } });
  const hooks = createUnlockHooks({ catalog, store, rollup, outbox, appendEvent: webhookStore.appendEvent, maxTapAgeMs: 86_400_000 });
  const ingest = createIngest(db, webhookStore, {
    onStatus: hooks.onStatus,
    onInbound: (item, ctx) => {
      hooks.onInbound(item, ctx);
      if (failNextTap) throw new Error('injected failure after the unlock was written');
    },
  });
  const committer = new GroupCommitter(db);
  const inFlight: OutboxRow[] = [];
  let wamids = 0;
  let taps = 0;
  const tx = <T>(fn: () => T): T => db.transaction(fn).immediate();
  return {
    db,
    now: () => now,
    inFlight,
    async step(step: Step): Promise<void> {
      switch (step.kind) {
        case 'tap': {
          taps++;
          const body = JSON.stringify({
            object: 'whatsapp_business_account',
            entry: [{ id: '1', changes: [{ field: 'messages', value: { messages: [{ from: CONTACTS[step.contact], id: `wamid.tap${taps}`, timestamp: String(Math.floor(now / 1000)), type: 'button', button: { payload: `unlock:${step.pack}`, text: 'Unlock' } }] } }] }],
          });
          failNextTap = step.failInside;
          try {
            await committer.submit(() => ingest.record({ body: Buffer.from(body), secretIndex: 0, receivedAt: now }));
          } finally {
            failNextTap = false;
          }
          return;
        }
        case 'claim':
          inFlight.push(...tx(() => store.claimDue(now, step.limit, now + 60_000)));
          return;
        case 'outcome': {
          if (inFlight.length === 0) return;
          const [row] = inFlight.splice(step.pick % inFlight.length, 1);
          if (row === undefined) return;
          tx(() => {
            switch (step.outcome) {
              case 'accepted':
                outbox.accepted(row, `wamid.out${++wamids}`, now, null);
                return;
              case 'retry':
                outbox.failed(row, classifyGraphError(131000, 400), 'boom', 131000, undefined, now);
                return;
              case 'pair':
                outbox.failed(row, classifyGraphError(131056, 400), 'pair', 131056, undefined, now);
                return;
              case 'permanent':
                outbox.failed(row, classifyGraphError(131026, 400), 'undeliverable', 131026, undefined, now);
                return;
              case 'ambiguous':
                outbox.ambiguous(row, 'timeout', now);
                return;
              case 'crash':
                return; // the worker died before recording: the lease is left to expire
            }
          });
          return;
        }
        case 'echo': {
          // Meta's status for a message in doubt: still unknown, or already given up on as ambiguous.
          const unknown = db.prepare("SELECT * FROM outbox WHERE state = 'unknown' OR (state = 'dead' AND error_class = 'timeout' AND cancelled_by IS NULL) ORDER BY id").all() as OutboxRow[];
          const row = unknown[step.pick % Math.max(1, unknown.length)];
          if (row === undefined) return;
          tx(() => outbox.status(row, `wamid.echo${row.id}`, 'sent', 1, null, undefined, now));
          return;
        }
        case 'advance':
          now += step.ms;
          tx(() => outbox.recoverLeases(now) + outbox.resolveUnknowns(now));
          return;
      }
    },
  };
}

function checkInvariants(db: Db): void {
  const unlocks = db.prepare('SELECT id, contact, pack_id, message_count FROM unlocks').all() as Array<{ id: number; contact: string; pack_id: string; message_count: number }>;
  for (const u of unlocks) {
    const rows = db.prepare('SELECT position FROM outbox WHERE unlock_id = ? ORDER BY position').pluck().all(u.id) as number[];
    expect(rows).toEqual([...Array(u.message_count).keys()]);
    expect(db.prepare("SELECT COUNT(*) FROM clicks WHERE unlock_id = ? AND result = 'started'").pluck().get(u.id)).toBe(1);
    const accepted = db.prepare("SELECT position FROM outbox WHERE unlock_id = ? AND state = 'accepted' ORDER BY accepted_at, id").pluck().all(u.id) as number[];
    // Accepted in position order, and only a prefix of the pack.
    expect(accepted).toEqual([...Array(accepted.length).keys()]);
  }
  // No outbox row without its unlock, no started click without its unlock.
  expect(db.prepare("SELECT COUNT(*) FROM outbox o WHERE kind = 'pack' AND NOT EXISTS (SELECT 1 FROM unlocks u WHERE u.id = o.unlock_id)").pluck().get()).toBe(0);
  expect(db.prepare("SELECT COUNT(*) FROM clicks c WHERE result = 'started' AND NOT EXISTS (SELECT 1 FROM unlocks u WHERE u.id = c.unlock_id)").pluck().get()).toBe(0);
  // At most one message in flight per contact.
  expect(db.prepare("SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM outbox WHERE state IN ('sending', 'unknown') GROUP BY contact)").pluck().get() ?? 0).toBeLessThanOrEqual(1);
}

describe('outbox state machine', () => {
  it('when taps, sends, failures and crashes interleave, then unlocks are all-or-nothing and order never inverts', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: 5, maxLength: 60 }), async (steps) => {
        const h = harness();
        try {
          for (const step of steps) {
            await h.step(step);
            checkInvariants(h.db);
          }
        } finally {
          h.db.close();
        }
      }),
      {
        numRuns: 150,
        examples: [
          // Found by a CI run: a worker's verdict arriving after its lease ran out (the row was
          // recovered and accepted meanwhile) dead-lettered an accepted message.
          [
            [
              { kind: 'tap', contact: 0, pack: 'a', failInside: false },
              { kind: 'claim', limit: 1 },
              { kind: 'advance', ms: 300_000 },
              { kind: 'echo', pick: 0 },
              { kind: 'claim', limit: 1 },
              { kind: 'advance', ms: 300_000 },
              { kind: 'echo', pick: 0 },
              { kind: 'outcome', pick: 0, outcome: 'permanent' },
              { kind: 'tap', contact: 0, pack: 'a', failInside: false },
            ],
          ],
        ],
      },
    );
  });

  it('when a worker reports after its lease ran out, then its verdict counts while its attempt still holds the row and is ignored once the row was sent again', async () => {
    const row = (h: ReturnType<typeof harness>, position: number) =>
      h.db.prepare("SELECT state, attempts, resent FROM outbox WHERE kind = 'pack' AND position = ?").get(position) as { state: string; attempts: number; resent: number };

    // Recovered as unknown, then the late answer arrives: a clear failure still says this attempt did not go out.
    const late = harness();
    await late.step({ kind: 'tap', contact: 0, pack: 'b', failInside: false });
    await late.step({ kind: 'claim', limit: 1 });
    await late.step({ kind: 'advance', ms: 300_000 }); // lease gone: unknown
    expect(row(late, 0)).toMatchObject({ state: 'unknown', attempts: 1 });
    await late.step({ kind: 'outcome', pick: 0, outcome: 'retry' });
    expect(row(late, 0)).toMatchObject({ state: 'pending', attempts: 1 });
    checkInvariants(late.db);
    late.db.close();

    // Sent again meanwhile: the first attempt's verdict must not touch the second attempt.
    const stale = harness();
    await stale.step({ kind: 'tap', contact: 0, pack: 'b', failInside: false });
    await stale.step({ kind: 'claim', limit: 1 });
    await stale.step({ kind: 'advance', ms: 300_000 }); // unknown
    await stale.step({ kind: 'advance', ms: 300_000 }); // no status within the wait: sent once more
    expect(row(stale, 0)).toMatchObject({ state: 'pending', resent: 1 });
    await stale.step({ kind: 'claim', limit: 1 });
    expect(row(stale, 0)).toMatchObject({ state: 'sending', attempts: 2 });
    for (const outcome of ['permanent', 'retry', 'ambiguous'] as const) {
      stale.inFlight.unshift({ ...stale.inFlight.find((r) => r.attempts === 2)!, attempts: 1 });
      await stale.step({ kind: 'outcome', pick: 0, outcome });
      expect(row(stale, 0), outcome).toMatchObject({ state: 'sending', attempts: 2 });
    }
    stale.inFlight.splice(0, stale.inFlight.length, ...stale.inFlight.filter((r) => r.attempts === 2));
    await stale.step({ kind: 'outcome', pick: 0, outcome: 'accepted' });
    expect(row(stale, 0)).toMatchObject({ state: 'accepted', attempts: 2 });
    checkInvariants(stale.db);
    stale.db.close();
  });

  it('when a tap fails inside its transaction, then neither the click, the unlock nor any outbox row remains', async () => {
    const h = harness();
    await h.step({ kind: 'tap', contact: 0, pack: 'a', failInside: true });
    expect(h.db.prepare('SELECT COUNT(*) FROM unlocks').pluck().get()).toBe(0);
    expect(h.db.prepare('SELECT COUNT(*) FROM outbox').pluck().get()).toBe(0);
    expect(h.db.prepare('SELECT COUNT(*) FROM clicks').pluck().get()).toBe(0);
    expect(h.db.prepare('SELECT COUNT(*) FROM dead_letters').pluck().get()).toBe(1);
    await h.step({ kind: 'tap', contact: 0, pack: 'a', failInside: false });
    expect(h.db.prepare('SELECT COUNT(*) FROM outbox').pluck().get()).toBe(4);
    h.db.close();
  });

  it('when a message given up on as ambiguous turns out to have been sent, then it is accepted and its pack resumes', async () => {
    const h = harness();
    await h.step({ kind: 'tap', contact: 2, pack: 'b', failInside: false });
    // Ambiguous, resent once after the wait, ambiguous again, given up: the pack's second message is cancelled.
    await h.step({ kind: 'claim', limit: 5 });
    await h.step({ kind: 'outcome', pick: 0, outcome: 'ambiguous' });
    await h.step({ kind: 'advance', ms: 60_000 });
    await h.step({ kind: 'claim', limit: 5 });
    await h.step({ kind: 'outcome', pick: 0, outcome: 'ambiguous' });
    await h.step({ kind: 'advance', ms: 60_000 });
    expect(h.db.prepare('SELECT state FROM outbox ORDER BY position').pluck().all()).toEqual(['dead', 'dead']);
    expect(h.db.prepare('SELECT state FROM unlocks').pluck().get()).toBe('failed');
    // Then Meta's status arrives: the first message was delivered after all.
    await h.step({ kind: 'echo', pick: 0 });
    expect(h.db.prepare('SELECT state FROM outbox ORDER BY position').pluck().all()).toEqual(['accepted', 'pending']);
    expect(h.db.prepare('SELECT state FROM unlocks').pluck().get()).toBe('sending');
    await h.step({ kind: 'claim', limit: 5 });
    await h.step({ kind: 'outcome', pick: 0, outcome: 'accepted' });
    expect(h.db.prepare('SELECT state FROM unlocks').pluck().get()).toBe('completed');
    h.db.close();
  });

  it('when every send is accepted in turn, then the pack completes in order with one event per message', async () => {
    const h = harness();
    await h.step({ kind: 'tap', contact: 1, pack: 'b', failInside: false });
    for (let i = 0; i < 2; i++) {
      await h.step({ kind: 'claim', limit: 5 });
      expect(h.inFlight).toHaveLength(1); // the next message is due only after this one is accepted
      await h.step({ kind: 'outcome', pick: 0, outcome: 'accepted' });
    }
    expect(h.db.prepare('SELECT state FROM unlocks').pluck().get()).toBe('completed');
    expect(h.db.prepare("SELECT COUNT(*) FROM events WHERE type = 'message.sent'").pluck().get()).toBe(2);
    expect(h.db.prepare("SELECT COUNT(*) FROM events WHERE type = 'unlock.completed'").pluck().get()).toBe(1);
    h.db.close();
  });
});
