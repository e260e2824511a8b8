/**
 * Group commit: concurrent work shares one transaction (and its fsync), each piece is
 * isolated in a savepoint, and a transaction that cannot begin or commit rejects every
 * piece with StorageUnavailableError, which the webhook answers with 503 + Retry-After.
 */
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GroupCommitter, StorageUnavailableError } from '../src/group-commit';
import { openDatabase, type Db } from '../src/store/database';
import { fixtureBytes, makeTempDir, postSigned, runConcurrently, startTestService, tableCounts, type TempDir, type TestService } from './helpers/webhook';

interface Batch {
  readonly size: number;
  readonly failed: number;
  readonly committed: boolean;
}

describe('GroupCommitter on a real SQLite file', () => {
  let dir: TempDir;
  let db: Db;
  let reader: Database.Database;
  let batches: Batch[];

  beforeEach(() => {
    dir = makeTempDir('ctu-group-');
    db = openDatabase(dir.dbPath, { migrate: false });
    db.exec('CREATE TABLE pieces (name TEXT PRIMARY KEY)');
    reader = new Database(dir.dbPath, { readonly: true });
    batches = [];
  });
  afterEach(() => {
    reader.close();
    db.close();
    dir.remove();
  });

  const committer = (maxBatch?: number): GroupCommitter => {
    const c = new GroupCommitter(db, maxBatch);
    c.onBatch((b) => batches.push({ size: b.size, failed: b.failed, committed: b.committed }));
    return c;
  };
  const insert =
    (handle: Db) =>
    (name: string) =>
    (): number =>
      handle.prepare('INSERT INTO pieces (name) VALUES (?)').run(name).changes;
  const committedNames = (): string[] => reader.prepare('SELECT name FROM pieces ORDER BY name').pluck().all() as string[];

  it('when pieces are submitted in the same turn, then they share one transaction and each resolves after the COMMIT', async () => {
    const c = committer();
    const put = insert(db);
    const seenInTransaction: boolean[] = [];
    const results = Array.from({ length: 10 }, (_, i) =>
      c.submit(() => {
        seenInTransaction.push(db.inTransaction);
        return put(`p${i}`)();
      }),
    );
    // What a resolved promise promises: another connection already sees the row.
    const visibleAtResolve = results.map((p, i) => p.then(() => committedNames().includes(`p${i}`)));
    expect(await Promise.all(results)).toEqual(Array.from({ length: 10 }, () => 1));
    expect(await Promise.all(visibleAtResolve)).toEqual(Array.from({ length: 10 }, () => true));
    expect(seenInTransaction).toEqual(Array.from({ length: 10 }, () => true));
    expect(batches).toEqual([{ size: 10, failed: 0, committed: true }]);
  });

  it('when more pieces are pending than maxBatch, then they are committed in batches of at most maxBatch', async () => {
    const c = committer(4);
    const put = insert(db);
    await Promise.all(Array.from({ length: 10 }, (_, i) => c.submit(put(`q${i}`))));
    expect(batches.map((b) => b.size)).toEqual([4, 4, 2]);
    expect(committedNames()).toHaveLength(10);
  });

  it('when one piece throws after writing, then only its writes are undone and its neighbours commit', async () => {
    const c = committer();
    const put = insert(db);
    const boom = new Error('bad item');
    const outcomes = await Promise.allSettled([
      c.submit(put('left')),
      c.submit(() => {
        put('middle')();
        throw boom;
      }),
      c.submit(put('right')),
    ]);
    expect(outcomes).toEqual([
      { status: 'fulfilled', value: 1 },
      { status: 'rejected', reason: boom },
      { status: 'fulfilled', value: 1 },
    ]);
    expect(committedNames()).toEqual(['left', 'right']);
    expect(batches).toEqual([{ size: 3, failed: 1, committed: true }]);
  });

  it('when a piece hits a storage error (disk full), then the whole transaction rolls back and every piece gets StorageUnavailableError', async () => {
    const c = committer();
    const put = insert(db);
    const outcomes = await Promise.allSettled([
      c.submit(put('a')),
      c.submit(() => {
        throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
      }),
      c.submit(put('b')),
    ]);
    for (const outcome of outcomes) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(StorageUnavailableError);
    }
    expect(committedNames()).toEqual([]);
    expect(db.inTransaction).toBe(false);
    expect(batches).toEqual([{ size: 3, failed: 3, committed: false }]);
    // The committer is usable again afterwards.
    await c.submit(put('c'));
    expect(committedNames()).toEqual(['c']);
  });

  it('when another connection holds the write lock, then every piece is rejected with StorageUnavailableError, and after release it works', async () => {
    const c = committer();
    const put = insert(db);
    const locker = new Database(dir.dbPath, { timeout: 0 });
    try {
      locker.exec('BEGIN IMMEDIATE');
      const outcomes = await Promise.allSettled([c.submit(put('x')), c.submit(put('y'))]);
      expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
      const reason = (outcomes[0] as PromiseRejectedResult).reason as StorageUnavailableError;
      expect(reason).toBeInstanceOf(StorageUnavailableError);
      expect((reason.cause as { code?: string }).code).toBe('SQLITE_BUSY');
      expect(batches).toEqual([{ size: 2, failed: 2, committed: false }]);
      locker.exec('ROLLBACK');
      await Promise.all([c.submit(put('x')), c.submit(put('y'))]);
      expect(committedNames()).toEqual(['x', 'y']);
    } finally {
      locker.close();
    }
  });

  it('when drain() is called, then pending pieces commit synchronously', async () => {
    const c = committer();
    const pending = c.submit(insert(db)('drained'));
    expect(c.queued).toBe(1);
    c.drain();
    expect(c.queued).toBe(0);
    expect(committedNames()).toEqual(['drained']);
    await expect(pending).resolves.toBe(1);
  });

  it('when a commit succeeds, then onCommit listeners run; when it fails, they do not', async () => {
    const c = committer();
    let commits = 0;
    c.onCommit(() => commits++);
    await c.submit(insert(db)('one'));
    expect(commits).toBe(1);
    const locker = new Database(dir.dbPath, { timeout: 0 });
    try {
      locker.exec('BEGIN IMMEDIATE');
      await expect(c.submit(insert(db)('two'))).rejects.toBeInstanceOf(StorageUnavailableError);
      expect(commits).toBe(1);
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
  });
});

describe('group commit behind the webhook', () => {
  let svc: TestService;
  const sizes: number[] = [];
  beforeAll(async () => {
    svc = await startTestService();
    svc.service.committer?.onBatch((b) => sizes.push(b.size));
  });
  afterAll(async () => {
    await svc.stop();
  });

  const textBody = (i: number): string =>
    JSON.stringify({
      object: 'whatsapp_business_account',
      entry: [{ id: '1', changes: [{ field: 'messages', value: { messages: [{ from: '16505551234', id: `wamid.gc.${i}`, timestamp: '1750000000', type: 'text', text: { body: `m${i}` } }] } }] }],
    });

  it('when 200 signed POSTs arrive 50 at a time, then all get 200 and transactions hold more than one request', async () => {
    sizes.length = 0;
    const answers = await runConcurrently(
      Array.from({ length: 200 }, (_, i) => () => postSigned(svc.url, textBody(i))),
      50,
    );
    expect(answers.every((a) => a.status === 200)).toBe(true);
    // The sender's housekeeping shares the committer too, so batches may hold a piece or two more.
    expect(sizes.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(200);
    expect(Math.max(...sizes)).toBeGreaterThan(1);
    expect(sizes.length).toBeLessThan(200);
    expect(svc.service.db.prepare("SELECT count(*) FROM inbound_messages WHERE wamid LIKE 'wamid.gc.%'").pluck().get()).toBe(200);
  });

  it('when the database is write-locked by another connection, then POSTs get 503 with Retry-After and nothing is written; after release, 200', async () => {
    const locker = new Database(svc.dir.dbPath, { timeout: 0 });
    const body = fixtureBytes('text');
    try {
      const before = tableCounts(svc.service.db);
      locker.exec('BEGIN IMMEDIATE');
      const answers = await Promise.all([postSigned(svc.url, body), postSigned(svc.url, textBody(1000))]);
      for (const answer of answers) {
        expect(answer.status).toBe(503);
        expect(answer.headers['retry-after']).toBe('5');
      }
      locker.exec('ROLLBACK');
      expect(tableCounts(svc.service.db)).toEqual(before);
      // Meta retries the same bytes; now they commit.
      expect((await postSigned(svc.url, body)).status).toBe(200);
      expect((await postSigned(svc.url, textBody(1000))).status).toBe(200);
      const after = tableCounts(svc.service.db);
      expect(after.inbox - before.inbox).toBe(2);
      expect(after.inbound_messages - before.inbound_messages).toBe(2);
    } finally {
      if (locker.inTransaction) locker.exec('ROLLBACK');
      locker.close();
    }
  });
});
