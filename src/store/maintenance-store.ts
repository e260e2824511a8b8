/**
 * SQL for operations: retention (batched deletes by primary-key range), the doctor's probes
 * and the checks run on a backup file. One prepared statement per purpose, plain rows out.
 *
 * Retention walks each table in primary-key order, one chunk of ids at a time, because ids
 * follow arrival time: old rows sit at the low end and a chunk whose rows are all younger
 * than the cutoff ends the walk. That keeps every statement a short range scan; no index on
 * the time columns is needed and nothing ever scans a whole table in one go.
 */
import type { Db } from './database';

/** A table that retention walks: its key, its time column, and what it may delete in a chunk. */
export type PrunedTable =
  | 'events'
  | 'webhook_changes'
  | 'dead_letters'
  | 'statuses'
  | 'inbound_messages'
  | 'clicks'
  | 'outbox'
  | 'inbox_bodies'
  | 'inbox';

interface TableSpec {
  readonly table: string;
  readonly key: string;
  readonly time: string;
  /** The statement(s) applied to the rows of (after, last] older than the cutoff. */
  readonly apply: readonly string[];
}

/** Rows an unfinished unlock still needs: its clicks and every outbox row of it. */
const NOT_IN_SENDING_UNLOCK = (table: string): string =>
  `NOT EXISTS (SELECT 1 FROM unlocks u WHERE u.id = ${table}.unlock_id AND u.state = 'sending')`;

const SPECS: Readonly<Record<PrunedTable, TableSpec>> = {
  events: { table: 'events', key: 'seq', time: 'at', apply: ['DELETE FROM events WHERE seq > @after AND seq <= @last AND at < @cutoff'] },
  webhook_changes: {
    table: 'webhook_changes',
    key: 'id',
    time: 'received_at',
    apply: ['DELETE FROM webhook_changes WHERE id > @after AND id <= @last AND received_at < @cutoff'],
  },
  dead_letters: {
    table: 'dead_letters',
    key: 'id',
    time: 'created_at',
    apply: ['DELETE FROM dead_letters WHERE id > @after AND id <= @last AND created_at < @cutoff'],
  },
  statuses: {
    table: 'statuses',
    key: 'id',
    time: 'received_at',
    apply: [
      // The current status of a wamid goes with its history, and only when it too is old.
      `DELETE FROM message_status WHERE updated_at < @cutoff AND wamid IN
         (SELECT wamid FROM statuses WHERE id > @after AND id <= @last AND received_at < @cutoff)`,
      'DELETE FROM statuses WHERE id > @after AND id <= @last AND received_at < @cutoff',
    ],
  },
  inbound_messages: {
    table: 'inbound_messages',
    key: 'id',
    time: 'received_at',
    apply: ['DELETE FROM inbound_messages WHERE id > @after AND id <= @last AND received_at < @cutoff'],
  },
  clicks: {
    table: 'clicks',
    key: 'id',
    time: 'received_at',
    apply: [`DELETE FROM clicks WHERE id > @after AND id <= @last AND received_at < @cutoff AND ${NOT_IN_SENDING_UNLOCK('clicks')}`],
  },
  outbox: {
    table: 'outbox',
    key: 'id',
    time: 'created_at',
    apply: [
      `DELETE FROM outbox WHERE id > @after AND id <= @last AND created_at < @cutoff
         AND state IN ('accepted', 'dead') AND ${NOT_IN_SENDING_UNLOCK('outbox')}`,
    ],
  },
  // The raw body goes at the retention cutoff; the row (its sha256 dedupe key, and the target
  // of the rows above) stays until nothing references it.
  inbox_bodies: {
    table: 'inbox',
    key: 'id',
    time: 'received_at',
    apply: ["UPDATE inbox SET body = x'' WHERE id > @after AND id <= @last AND received_at < @cutoff AND length(body) > 0"],
  },
  inbox: {
    table: 'inbox',
    key: 'id',
    time: 'received_at',
    apply: [
      `DELETE FROM inbox WHERE id > @after AND id <= @last AND received_at < @cutoff
         AND NOT EXISTS (SELECT 1 FROM inbound_messages c WHERE c.inbox_id = inbox.id)
         AND NOT EXISTS (SELECT 1 FROM statuses c WHERE c.inbox_id = inbox.id)
         AND NOT EXISTS (SELECT 1 FROM webhook_changes c WHERE c.inbox_id = inbox.id)
         AND NOT EXISTS (SELECT 1 FROM dead_letters c WHERE c.inbox_id = inbox.id)`,
    ],
  },
};

export interface Chunk {
  /** The largest key in the chunk (the next chunk starts after it), or null when there are no rows left. */
  readonly last: number | null;
  /** The oldest time in the chunk. */
  readonly oldest: number | null;
}

export interface PruneStep {
  /** Reads the next chunk of at most `limit` keys after `after`. */
  chunk(after: number, limit: number): Chunk;
  /** Applies the table's deletes to (after, last] for rows older than `cutoff`; returns rows changed. */
  apply(after: number, last: number, cutoff: number): number;
}

export interface DoctorFacts {
  readonly openOutbox: number;
  readonly oldestOpenCreatedAt: number | null;
  readonly deadLettersSince: number;
  readonly failedDeliveriesSince: number;
  /** received_at − Meta's timestamp of recent inbound messages and statuses, in ms. */
  readonly recentLagsMs: number[];
}

export type MaintenanceStore = ReturnType<typeof createMaintenanceStore>;

export function createMaintenanceStore(db: Db) {
  const steps = new Map<PrunedTable, PruneStep>();
  const stepFor = (name: PrunedTable): PruneStep => {
    let step = steps.get(name);
    if (step === undefined) {
      const spec = SPECS[name];
      const chunk = db.prepare<[number, number], { last: number | null; oldest: number | null }>(
        `SELECT max(k) AS last, min(t) AS oldest FROM
           (SELECT ${spec.key} AS k, ${spec.time} AS t FROM ${spec.table} WHERE ${spec.key} > ? ORDER BY ${spec.key} LIMIT ?)`,
      );
      const apply = spec.apply.map((sql) => db.prepare<[{ after: number; last: number; cutoff: number }]>(sql));
      step = {
        chunk: (after, limit) => chunk.get(after, limit) ?? { last: null, oldest: null },
        // The count is the last statement's: the table's own rows (earlier ones tidy dependants).
        apply: (after, last, cutoff) => {
          let changed = 0;
          for (const statement of apply) changed = statement.run({ after, last, cutoff }).changes;
          return changed;
        },
      };
      steps.set(name, step);
    }
    return step;
  };

  const openOutbox = db.prepare<[], { n: number; oldest: number | null }>(
    "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox WHERE state IN ('pending', 'sending', 'unknown')",
  );
  // dead_letters has no time index; its newest rows are at the high end of the id range.
  const deadLettersSince = db.prepare<[number], { n: number }>(
    'SELECT COUNT(*) AS n FROM (SELECT created_at FROM dead_letters ORDER BY id DESC LIMIT 100000) WHERE created_at >= ?',
  );
  const failedSince = db.prepare<[number], { n: number }>("SELECT COUNT(*) AS n FROM events WHERE type = 'delivery.failed' AND at >= ?");
  const inboundLags = db.prepare<[number], { lag: number }>(
    'SELECT received_at - sent_at AS lag FROM (SELECT received_at, sent_at FROM inbound_messages ORDER BY id DESC LIMIT 200) WHERE received_at >= ?',
  );
  const statusLags = db.prepare<[number], { lag: number }>(
    'SELECT received_at - status_at AS lag FROM (SELECT received_at, status_at FROM statuses ORDER BY id DESC LIMIT 200) WHERE received_at >= ?',
  );

  return {
    prune: stepFor,
    /** The facts the doctor judges: sender backlog, recent failures and webhook timestamp lags. */
    doctorFacts(now: number, failureWindowMs: number, lagWindowMs: number): DoctorFacts {
      const open = openOutbox.get();
      const since = now - failureWindowMs;
      return {
        openOutbox: open?.n ?? 0,
        oldestOpenCreatedAt: open?.oldest ?? null,
        deadLettersSince: deadLettersSince.get(since)?.n ?? 0,
        failedDeliveriesSince: failedSince.get(since)?.n ?? 0,
        recentLagsMs: [...inboundLags.all(now - lagWindowMs), ...statusLags.all(now - lagWindowMs)].map((row) => row.lag),
      };
    },
  };
}

/** `quick_check` messages (just "ok" when the file is sound). */
export function quickCheck(db: Db): string[] {
  return (db.prepare('PRAGMA quick_check').pluck().all() as string[]).slice(0, 20);
}

/**
 * The checks run on a fresh copy (a backup, or a file about to be restored), as the source of
 * a worker thread: integrity_check reads every page, which on a large file takes seconds that
 * the webhook's event loop must not wait for. `standalone` first switches the copy out of WAL
 * mode so that it is one self-contained file.
 */
export const CHECK_COPY_WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
try {
  if (workerData.standalone) db.pragma('journal_mode = DELETE');
  const integrity = db.prepare('PRAGMA integrity_check').pluck().all().slice(0, 20);
  const hasMigrations = db.prepare("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'").pluck().get() === 1;
  const schemaVersion = hasMigrations ? db.prepare('SELECT MAX(version) FROM schema_migrations').pluck().get() : null;
  parentPort.postMessage({ integrity, hasMigrations, schemaVersion });
} finally {
  db.close();
}`;
