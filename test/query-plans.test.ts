/**
 * Every statement the stores prepare is planned on an index (or a rowid range), never as a
 * full table scan: a scan's cost grows with every message ever handled, and a 30-minute soak
 * showed what that does to the webhook's p99 once housekeeping scanned the outbox every second.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase, type Db } from '../src/store/database';
import { createDeliveryStore } from '../src/store/delivery-store';
import { createFeedStore } from '../src/store/feed-store';
import { createRollupStore } from '../src/store/rollup-store';
import { createWebhookStore } from '../src/store/webhook-store';
import { makeTempDir } from './helpers/webhook';

const dir = makeTempDir('ctu-plans-');
afterAll(() => dir.remove());

/** The statements each store prepares, captured as they are prepared. */
function preparedBy(db: Db, build: (db: Db) => unknown): string[] {
  const statements: string[] = [];
  const capture = new Proxy(db, {
    get(target, key, receiver) {
      if (key === 'prepare') {
        return (sql: string) => {
          statements.push(sql);
          return target.prepare(sql);
        };
      }
      const value: unknown = Reflect.get(target, key, receiver);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  build(capture);
  return statements;
}

/**
 * Plan lines that read a whole table: "SCAN t" without an index. Scanning a constant row, a
 * subquery's own (bounded) result or a table-valued function such as json_each is fine.
 * Parameters become the literal 1, which SQLite plans the same way as a bound value.
 */
function fullScans(db: Db, sql: string): string[] {
  const literal = sql.replace(/\?|[@:$][A-Za-z_][A-Za-z0-9_]*/g, '1');
  const plan = db.prepare(`EXPLAIN QUERY PLAN ${literal}`).all() as Array<{ detail: string }>;
  return plan.map((row) => row.detail).filter((detail) => /^SCAN /.test(detail) && !/USING (COVERING )?INDEX|CONSTANT ROW|^SCAN \(subquery|VIRTUAL TABLE/.test(detail));
}

describe('query plans', () => {
  const db = openDatabase(dir.dbPath);
  afterAll(() => db.close());

  it.each([
    ['webhook store', createWebhookStore],
    ['delivery store', createDeliveryStore],
    ['rollup store', createRollupStore],
    ['feed store', createFeedStore],
  ] as const)('when the %s prepares its statements, then none of them scans a whole table', (_name, create) => {
    const statements = preparedBy(db, (d) => (create as (d: Db) => unknown)(d));
    expect(statements.length).toBeGreaterThan(0);
    // Reading the newest inbox row walks the rowid backwards and stops at one row.
    const allowed = (sql: string): boolean => /ORDER BY id DESC LIMIT 1/.test(sql);
    const offenders = statements.filter((sql) => !allowed(sql)).flatMap((sql) => fullScans(db, sql).map((scan) => `${scan} :: ${sql.replace(/\s+/g, ' ').trim()}`));
    expect(offenders).toEqual([]);
  });

  it('when housekeeping looks for expired leases and due unknowns, then it searches their partial indexes (the forms that scanned are caught)', () => {
    const plan = (sql: string): string => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>).map((r) => r.detail).join(' | ');
    expect(plan("SELECT * FROM outbox WHERE state IN ('sending', 'unknown') AND state = 'sending' AND locked_until < 1")).toContain('outbox_leased');
    expect(plan("SELECT * FROM outbox WHERE state = 'unknown' AND run_at <= 1")).toContain('outbox_unknown_due');
    // The earlier form of the lease query did scan: the check above would have caught it.
    expect(fullScans(db, "SELECT * FROM outbox WHERE state = 'sending' AND locked_until < ?")).toEqual(['SCAN outbox']);
  });
});
