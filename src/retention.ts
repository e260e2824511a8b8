/**
 * Retention: raw payloads and events older than RETENTION_DAYS are deleted in small batches,
 * in the background (`startRetention`) or on demand (`ctu prune --older-than 30d`).
 *
 * What goes, and when (`window` = the retention window, `keys` = max(window, 30 days)):
 *   events, webhook_changes, dead_letters          older than window
 *   inbox bodies (set to a zero-length blob)       older than window
 *   statuses (+ message_status), inbound_messages  older than keys: they hold the dedupe keys
 *   clicks, accepted/dead outbox rows               older than keys, unless their unlock is still sending
 *   inbox rows                                      older than keys, once no row references them
 * What stays: rollups (rollup_*), unlocks (the "one pack per contact and pack" record), API
 * keys, open outbox rows and everything of an unlock that is still sending.
 *
 * Each batch is one short transaction of at most `batchRows` rows; between batches the event
 * loop runs (the webhook's group commits interleave), and the WAL is checkpointed (PASSIVE,
 * never waiting) every few batches and truncated at the end, so it stays bounded.
 */
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { DAY, HOUR, MINUTE, parseDuration } from './duration';
import type { Logger } from './log';
import { startPeriodic } from './periodic';
import { openDatabase, type Db } from './store/database';
import { createMaintenanceStore, type PrunedTable } from './store/maintenance-store';

/** Dedupe keys (inbound wamids, (wamid, status), tap wamids) are kept at least this long. */
export const DEDUPE_KEY_MIN_MS = 30 * DAY;
export const DEFAULT_BATCH_ROWS = 1_000;
const CHECKPOINT_EVERY_BATCHES = 20;

export interface PruneOptions {
  /** Raw payloads and events older than this are deleted. */
  readonly olderThanMs: number;
  readonly now?: number;
  readonly batchRows?: number;
  /** Pause between batches (0: just yield to the event loop). */
  readonly pauseMs?: number;
  /** Checked between batches; true stops the run early (shutdown). */
  readonly shouldStop?: () => boolean;
}

export interface PruneReport {
  readonly rows: Readonly<Record<PrunedTable, number>>;
  readonly batches: number;
  readonly durationMs: number;
  readonly stopped: boolean;
  readonly rawCutoff: number;
  readonly keyCutoff: number;
}

const ORDER: ReadonlyArray<readonly [PrunedTable, 'raw' | 'keys']> = [
  ['events', 'raw'],
  ['webhook_changes', 'raw'],
  ['dead_letters', 'raw'],
  ['statuses', 'keys'],
  ['inbound_messages', 'keys'],
  ['clicks', 'keys'],
  ['outbox', 'keys'],
  ['inbox_bodies', 'raw'],
  ['inbox', 'keys'],
];

export async function prune(db: Db, options: PruneOptions): Promise<PruneReport> {
  const started = performance.now();
  const now = options.now ?? Date.now();
  const batchRows = options.batchRows ?? DEFAULT_BATCH_ROWS;
  const rawCutoff = now - options.olderThanMs;
  const keyCutoff = now - Math.max(options.olderThanMs, DEDUPE_KEY_MIN_MS);
  const store = createMaintenanceStore(db);
  const rows = Object.fromEntries(ORDER.map(([name]) => [name, 0])) as Record<PrunedTable, number>;
  let batches = 0;
  let stopped = false;
  outer: for (const [name, which] of ORDER) {
    const step = store.prune(name);
    const cutoff = which === 'raw' ? rawCutoff : keyCutoff;
    let after = 0;
    for (;;) {
      if (options.shouldStop?.() === true) {
        stopped = true;
        break outer;
      }
      const chunk = step.chunk(after, batchRows);
      if (chunk.last === null || chunk.oldest === null || chunk.oldest >= cutoff) break;
      const last = chunk.last;
      rows[name] += db.transaction(() => step.apply(after, last, cutoff)).immediate();
      after = last;
      batches++;
      if (batches % CHECKPOINT_EVERY_BATCHES === 0) db.pragma('wal_checkpoint(PASSIVE)');
      await sleep(options.pauseMs ?? 0);
    }
  }
  checkpoint(db);
  return { rows, batches, durationMs: performance.now() - started, stopped, rawCutoff, keyCutoff };
}

/** Truncates the WAL when no reader is in the way; otherwise a PASSIVE pass is all we ask. */
function checkpoint(db: Db): void {
  try {
    const [result] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
    if (result?.busy === 1) db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // A reader or writer holds the WAL right now; the next run (or SQLite's autocheckpoint) gets it.
  }
}

export interface RetentionSettings {
  /** undefined: retention is off. */
  readonly retentionDays: number | undefined;
}

export interface RetentionOptions {
  readonly db: Db;
  readonly retentionDays: number;
  readonly log: Logger;
  readonly intervalMs?: number;
  readonly firstRunDelayMs?: number;
  readonly batchRows?: number;
  readonly pauseMs?: number;
  readonly clock?: () => number;
}

export interface RetentionLoop {
  /** Runs one pass now (waits for a pass already running). */
  runNow(): Promise<PruneReport | undefined>;
  /** Stops between batches and waits for the current pass to end. Call before closing the database. */
  stop(): Promise<void>;
}

/** Prunes every `intervalMs` (default 1 h) on the service's own connection, so it never waits for the webhook's lock. */
export function startRetention(options: RetentionOptions): RetentionLoop {
  const { db, log } = options;
  return startPeriodic({
    firstDelayMs: options.firstRunDelayMs ?? MINUTE,
    intervalMs: options.intervalMs ?? HOUR,
    run: (stopping) =>
      prune(db, {
        olderThanMs: options.retentionDays * DAY,
        now: (options.clock ?? Date.now)(),
        batchRows: options.batchRows ?? DEFAULT_BATCH_ROWS,
        pauseMs: options.pauseMs ?? 5,
        shouldStop: stopping,
      }).then(
        (report) => {
          const total = Object.values(report.rows).reduce((a, b) => a + b, 0);
          log.info({ rows: report.rows, total, batches: report.batches, ms: Math.round(report.durationMs) }, 'retention pass done');
          return report;
        },
        (error: unknown) => {
          // Locked or full: the webhook answers 503 meanwhile; the next pass tries again.
          log.warn({ err: error instanceof Error ? error.message : String(error) }, 'retention pass failed; retrying at the next interval');
          return undefined;
        },
      ),
  });
}

/** `ctu prune --older-than 30d [--batch N]`: one pass against DATABASE_PATH, safe beside a running service. */
export async function pruneCommand(args: readonly string[], databasePath: string): Promise<number> {
  const { values } = parseArgs({ args: [...args], options: { 'older-than': { type: 'string' }, batch: { type: 'string' } } });
  const olderThanMs = values['older-than'] === undefined ? undefined : parseDuration(values['older-than']);
  if (olderThanMs === undefined || olderThanMs <= 0) {
    process.stderr.write('ctu prune: --older-than needs a duration such as 30d, 72h or 90m\n');
    return 2;
  }
  const batchRows = values.batch === undefined ? DEFAULT_BATCH_ROWS : Number(values.batch);
  if (!Number.isInteger(batchRows) || batchRows < 1 || batchRows > 100_000) {
    process.stderr.write('ctu prune: --batch must be a whole number of rows, 1-100000\n');
    return 2;
  }
  if (!existsSync(databasePath)) {
    process.stderr.write(`ctu prune: no database at ${databasePath} (DATABASE_PATH)\n`);
    return 1;
  }
  // A longer busy timeout than the service's: here waiting for the webhook's commits is fine.
  const db = openDatabase(databasePath, { busyTimeoutMs: 5_000 });
  try {
    const report = await prune(db, { olderThanMs, batchRows, pauseMs: 2 });
    const lines = [
      `pruned ${databasePath} in ${(report.durationMs / 1000).toFixed(1)} s (${report.batches} batches of at most ${batchRows} rows)`,
      `  raw payloads and events before ${new Date(report.rawCutoff).toISOString()}`,
      `  dedupe keys, clicks and finished sends before ${new Date(report.keyCutoff).toISOString()}`,
      ...Object.entries(report.rows).map(([table, n]) => `  ${table.padEnd(18)} ${n}${table === 'inbox_bodies' ? ' (bodies emptied)' : ' deleted'}`),
      'Rollups, unlocks and the rows of unlocks still sending are kept. The file does not shrink: freed pages are reused.',
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`ctu prune: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    db.close();
  }
}
