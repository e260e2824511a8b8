/**
 * The writer thread, for real: the compiled worker (dist/src/writer-thread.js; run
 * `npm run build` first) on a real SQLite file, driven through `Writer` as the service does.
 * A second connection on the same file reads what was committed, or holds the write lock.
 * A thread is made to die by a malformed message posted to it through Writer's private
 * field: no hook in src/.
 */
import type { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StorageUnavailableError } from '../src/group-commit';
import type { ItemResult } from '../src/ingest';
import { createLogger } from '../src/log';
import { loadCatalog } from '../src/packs';
import { openDatabase, type Db } from '../src/store/database';
import type { OutboxRow } from '../src/store/delivery-store';
import { Writer, type EffectTargets, type WriterOptions } from '../src/writer';
import type { WriteOp, WriterSettings } from '../src/writer-ops';
import { makeTempDir, metaCallback, type TempDir } from './helpers/webhook';

const CONTACT = '16505551234';
const HOUR = 3_600_000;

let dir: TempDir;
let db: Db;
let settings: WriterSettings;

beforeAll(() => {
  dir = makeTempDir('ctu-writer-');
  db = openDatabase(dir.dbPath); // creates and migrates the file; reads what the thread committed
  settings = { packs: loadCatalog().packs, maxTapAgeMs: 24 * HOUR, outbox: { unknownWaitMs: 120_000, maxAgeMs: 24 * HOUR } };
  // A way to make one operation throw after it has observed things: accepting the last message
  // of an unlock of the pack "poison" completes the unlock, and its event is refused.
  db.exec(`CREATE TRIGGER test_refuse_poison BEFORE INSERT ON events
    WHEN NEW.type = 'unlock.completed' AND NEW.data LIKE '%"pack":"poison"%'
    BEGIN SELECT RAISE(ABORT, 'test trigger refuses the poison unlock'); END`);
});

afterAll(() => {
  db.close();
  dir.remove();
});

function start(extra: Partial<WriterOptions> = {}): Promise<Writer> {
  return Writer.start({ databasePath: dir.dbPath, settings, log: createLogger('silent'), ...extra });
}

/** One text message from CONTACT, as a signed-and-verified webhook body would carry it. */
function ingestOp(wamid: string): Extract<WriteOp, { op: 'ingest' }> {
  const json = metaCallback({ messages: [{ from: CONTACT, id: wamid, timestamp: '1750000000', type: 'text', text: { body: `hello ${wamid}` } }] });
  return { op: 'ingest', body: new Uint8Array(Buffer.from(JSON.stringify(json))), secretIndex: 0, receivedAt: Date.now(), trace: null, jitter: [] };
}

function inboundCount(wamids: readonly string[]): number {
  const marks = wamids.map(() => '?').join(', ');
  return db.prepare(`SELECT count(*) FROM inbound_messages WHERE wamid IN (${marks})`).pluck().get(...wamids) as number;
}

/** An outbox row in flight (claimed, `sending`), as the sender hands it to sendOutcome. */
function sendingRow(packId: string, unlockId: number | null): OutboxRow {
  const now = Date.now();
  const id = db
    .prepare(`INSERT INTO outbox (kind, unlock_id, contact, pack_id, position, payload, state, run_at, locked_until, created_at)
      VALUES (?, ?, ?, ?, 0, '{"type":"text","text":{"body":"x"}}', 'sending', ?, ?, ?)`)
    .run(unlockId === null ? 'teaser' : 'pack', unlockId, CONTACT, packId, now, now + 60_000, now).lastInsertRowid;
  return db.prepare('SELECT * FROM outbox WHERE id = ?').get(id) as OutboxRow;
}

function acceptedOp(row: OutboxRow, wamid: string): Extract<WriteOp, { op: 'sendOutcome' }> {
  return { op: 'sendOutcome', row, result: { kind: 'accepted', wamid, httpStatus: 200 }, now: Date.now(), sendTrace: null, pullForward: false, jitter: [] };
}

/** Writer's private handle on its thread. */
function threadOf(writer: Writer): Worker | undefined {
  return (writer as unknown as { worker: Worker | undefined }).worker;
}

/**
 * Makes the writer thread die of an uncaught exception: an `ops` entry that is not a pair
 * throws in its flush, before BEGIN. (Not Worker.terminate(): terminating a thread inside a
 * better-sqlite3 call aborts the whole process with "v8::ToLocalChecked Empty MaybeLocal".)
 * Posted now, it reaches the thread before any op the writer posts later in this turn.
 */
function crash(writer: Writer): { thread: Worker; exited: Promise<number> } {
  const thread = threadOf(writer);
  if (thread === undefined) throw new Error('the writer has no thread to crash');
  const exited = new Promise<number>((resolve) => thread.once('exit', resolve));
  thread.postMessage({ type: 'ops', ops: [null] });
  return { thread, exited };
}

/** Polls `check` every 10 ms until it is true; fails after `timeoutMs`. */
async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('when operations are submitted in the same turn', () => {
  it('then they share one batch, and each promise resolves only once its row is visible to another connection', async () => {
    const writer = await start();
    try {
      const batches: Array<{ size: number; failed: number; committed: boolean }> = [];
      writer.onBatch(({ size, failed, committed }) => batches.push({ size, failed, committed }));
      const wamids = Array.from({ length: 6 }, (_, i) => `wamid.batch.${i}`);
      const visibleAtResolve: number[] = [];
      const outcomes = await Promise.all(
        wamids.map((wamid) =>
          writer.submit(ingestOp(wamid)).then((outcome) => {
            // Synchronously at settlement: the other connection sees the commit already.
            visibleAtResolve.push(inboundCount([wamid]));
            return outcome;
          }),
        ),
      );
      expect(batches).toEqual([{ size: 6, failed: 0, committed: true }]);
      expect(visibleAtResolve).toEqual([1, 1, 1, 1, 1, 1]);
      expect(outcomes.every((o) => o.newMessages === 1 && o.items === 1 && !o.duplicateBody)).toBe(true);
    } finally {
      await writer.close();
    }
  });
});

describe('when a batch holds one operation that throws', () => {
  it('then only that one is rejected, its neighbours commit, and only committed pieces have their observations replayed', async () => {
    const items: Array<[string, ItemResult, number]> = [];
    const sent: string[] = [];
    const clickToSent: number[] = [];
    const effects: EffectTargets = {
      // Each replayed item notes whether the message is committed at that moment.
      ingest: { item: (kind, result) => items.push([kind, result, inboundCount(['wamid.effects.in'])]) },
      delivery: { messageSent: (pack) => sent.push(pack), clickToSent: (seconds) => clickToSent.push(seconds) },
    };
    const writer = await start({ effects });
    try {
      const batches: Array<{ size: number; failed: number; committed: boolean }> = [];
      writer.onBatch(({ size, failed, committed }) => batches.push({ size, failed, committed }));
      const good = sendingRow('starter', null);
      const unlockId = Number(
        db.prepare(`INSERT INTO unlocks (contact, pack_id, state, message_count, created_at) VALUES (?, 'poison', 'sending', 1, ?)`).run(CONTACT, Date.now() - 500).lastInsertRowid,
      );
      const poisoned = sendingRow('poison', unlockId);
      const eventsBefore = db.prepare('SELECT count(*) FROM events').pluck().get() as number;

      const results = await Promise.allSettled([
        writer.submit(ingestOp('wamid.effects.in')),
        writer.submit(acceptedOp(good, 'wamid.effects.out.good')),
        // Accepted, announced (messageSent, clickToSent observed), then its unlock.completed event throws.
        writer.submit(acceptedOp(poisoned, 'wamid.effects.out.poison')),
      ]);

      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
      const reason = (results[2] as PromiseRejectedResult).reason as Error;
      expect(reason).not.toBeInstanceOf(StorageUnavailableError);
      expect(reason.message).toContain('test trigger refuses the poison unlock');
      expect(batches).toEqual([{ size: 3, failed: 1, committed: true }]);

      // The neighbours are committed; the failed piece left nothing (its savepoint rolled back).
      expect(inboundCount(['wamid.effects.in'])).toBe(1);
      const state = db.prepare('SELECT id, state, wamid FROM outbox WHERE id IN (?, ?) ORDER BY id');
      expect(state.all(good.id, poisoned.id)).toEqual([
        { id: good.id, state: 'accepted', wamid: 'wamid.effects.out.good' },
        { id: poisoned.id, state: 'sending', wamid: null },
      ]);
      expect(db.prepare('SELECT state FROM unlocks WHERE id = ?').pluck().get(unlockId)).toBe('sending');
      const newEvents = db.prepare('SELECT type FROM events WHERE seq > ? ORDER BY seq').pluck().all(eventsBefore);
      expect(newEvents).toEqual(['message.inbound', 'message.sent']);

      // Observations: the ingest's item, after its commit; the good send's; none of the poisoned one's.
      expect(items).toEqual([['message', 'new', 1]]);
      expect(sent).toEqual(['starter']);
      expect(clickToSent).toEqual([]);
    } finally {
      await writer.close();
    }
  });
});

describe('when another connection holds the write lock', () => {
  it('then a submit rejects as storage-unavailable with nothing written or observed, and once the lock is gone the next one commits', async () => {
    const items: string[] = [];
    const writer = await start({ busyTimeoutMs: 50, effects: { ingest: { item: (kind, result) => items.push(`${kind}/${result}`) } } });
    const locker = openDatabase(dir.dbPath, { migrate: false });
    try {
      const batches: Array<{ size: number; failed: number; committed: boolean }> = [];
      writer.onBatch(({ size, failed, committed }) => batches.push({ size, failed, committed }));
      const inboxBefore = db.prepare('SELECT count(*) FROM inbox').pluck().get() as number;
      locker.exec('BEGIN IMMEDIATE');
      const blocked = await Promise.allSettled([writer.submit(ingestOp('wamid.locked.1')), writer.submit(ingestOp('wamid.locked.2'))]);
      expect(blocked.map((r) => r.status)).toEqual(['rejected', 'rejected']);
      for (const r of blocked) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(StorageUnavailableError);
      expect(batches).toEqual([{ size: 2, failed: 2, committed: false }]);
      expect(items).toEqual([]);
      locker.exec('ROLLBACK');
      expect(inboundCount(['wamid.locked.1', 'wamid.locked.2'])).toBe(0);
      expect(db.prepare('SELECT count(*) FROM inbox').pluck().get()).toBe(inboxBefore);

      const outcome = await writer.submit(ingestOp('wamid.locked.1'));
      expect(outcome.newMessages).toBe(1);
      expect(inboundCount(['wamid.locked.1'])).toBe(1);
      expect(items).toEqual(['message/new']);
      expect(batches.at(-1)).toEqual({ size: 1, failed: 0, committed: true });
    } finally {
      if (locker.inTransaction) locker.exec('ROLLBACK');
      locker.close();
      await writer.close();
    }
  });
});

describe('when the writer thread dies', () => {
  it('then what it held is rejected as storage-unavailable (never resolved, never written) and a new thread takes later submits', async () => {
    const writer = await start();
    try {
      const inFlight = ['wamid.killed.1', 'wamid.killed.2', 'wamid.killed.3'];
      const settled = Promise.allSettled(inFlight.map((wamid) => writer.submit(ingestOp(wamid))));
      const first = crash(writer);
      expect(await first.exited).toBe(1);
      const results = await settled;
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
      for (const r of results) {
        const reason = (r as PromiseRejectedResult).reason as Error;
        expect(reason).toBeInstanceOf(StorageUnavailableError);
        expect(reason.message).toContain('writer thread exited (1)');
      }
      expect(writer.queued).toBe(0);

      await until('a restarted thread', () => threadOf(writer) !== undefined && threadOf(writer) !== first.thread);
      const after = await writer.submit(ingestOp('wamid.killed.after'));
      expect(after.newMessages).toBe(1);
      expect(inboundCount(['wamid.killed.after'])).toBe(1);
      // The rejected ops were not run later, on the new thread, behind their callers' backs.
      await writer.submit(ingestOp('wamid.killed.flush'));
      expect(inboundCount(inFlight)).toBe(0);
    } finally {
      await writer.close();
    }
  });

  it('then after the sixth death within a minute it stays down and every submit is storage-unavailable', async () => {
    const writer = await start();
    try {
      for (let death = 1; death <= 6; death++) {
        // Each thread proves itself ready with a commit before it dies.
        await writer.submit(ingestOp(`wamid.deaths.${death}`));
        const { thread, exited } = crash(writer);
        expect(await exited).toBe(1);
        if (death < 6) await until(`the restart after death ${death}`, () => threadOf(writer) !== undefined && threadOf(writer) !== thread);
      }
      expect(inboundCount(Array.from({ length: 6 }, (_, i) => `wamid.deaths.${i + 1}`))).toBe(6);
      expect(threadOf(writer)).toBeUndefined();
      const refused = writer.submit(ingestOp('wamid.deaths.after'));
      await expect(refused).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(refused).rejects.toThrow(/6 times within a minute/);
      expect(inboundCount(['wamid.deaths.after'])).toBe(0);
    } finally {
      await writer.close();
    }
  });
});

describe('when the writer is closed', () => {
  it('then everything queued is committed before the thread exits, and a submit after close is refused', async () => {
    const writer = await start();
    const thread = threadOf(writer);
    const exited = new Promise<number>((resolve) => thread?.once('exit', resolve));
    const early = Array.from({ length: 5 }, (_, i) => `wamid.close.early.${i}`);
    const late = Array.from({ length: 5 }, (_, i) => `wamid.close.late.${i}`);
    const earlyDone = Promise.all(early.map((wamid) => writer.submit(ingestOp(wamid))));
    await nextTurn(); // these are in the thread already
    const lateDone = Promise.all(late.map((wamid) => writer.submit(ingestOp(wamid))));
    // Closed in the same turn as the late submits, before they were posted.
    const closed = writer.close();
    const outcomes = [...(await earlyDone), ...(await lateDone)];
    await closed;
    expect(outcomes.map((o) => o.newMessages)).toEqual(Array(10).fill(1));
    expect(inboundCount([...early, ...late])).toBe(10);
    expect(await exited).toBe(0);
    await expect(writer.submit(ingestOp('wamid.close.after'))).rejects.toBeInstanceOf(StorageUnavailableError);
    expect(inboundCount(['wamid.close.after'])).toBe(0);
  });
});
