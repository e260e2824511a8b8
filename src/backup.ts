/**
 * Online backups and restore.
 *
 * A backup is made with SQLite's backup API (never a file copy: the WAL holds committed pages
 * a copy of the main file would miss), in steps, by a worker thread on its own read-only
 * connection; `ctu backup` and the scheduled backups share that one path, the command drawing
 * a progress bar from it. A write by the service makes SQLite restart such a copy, so after a
 * few restarts the rest is taken in one step: one WAL read transaction, which never blocks the
 * webhook's writer. Each copy is made self-contained (rollback journal mode), checked with
 * integrity_check in a worker thread, and only then renamed into place.
 *
 * A restore refuses to replace a database that any process has open (see `databaseInUse`),
 * copies and checks the file beside the target, moves the old file aside, then renames.
 */
import { mkdirSync, readdirSync, renameSync, rmSync, statSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { Config } from './config';
import { HOUR } from './duration';
import type { Logger } from './log';
import { progressBar } from './progress';
import { startPeriodic } from './periodic';
import { readMigrations, type Db } from './store/database';
import { CHECK_COPY_WORKER_SOURCE } from './store/maintenance-store';

export const DEFAULT_BACKUP_INTERVAL_MS = 24 * HOUR;
const BACKUP_NAME = /^ctu-\d{8}T\d{6}(\d{3})?Z\.db$/;
const RESTARTS_BEFORE_ONE_STEP = 3;
const ALL_PAGES = 0x7fffffff;

export interface CopyCheck {
  readonly integrity: readonly string[];
  readonly hasMigrations: boolean;
  readonly schemaVersion: number | null;
}

export interface BackupResult {
  readonly file: string;
  readonly bytes: number;
  readonly pages: number;
  readonly restarts: number;
  readonly durationMs: number;
  readonly check: CopyCheck;
}

export interface BackupOptions {
  readonly onProgress?: (copiedPages: number, totalPages: number) => void;
  /** Polled while copying; true abandons the backup (shutdown). */
  readonly shouldStop?: () => boolean;
}

export class BackupError extends Error {
  override readonly name = 'BackupError';
}

/** Where a stepped copy stands; `pages` is what the next step asks for. */
export interface CopyPace {
  pages: number;
  asked: number;
  copied: number;
  restarts: number;
}

/**
 * Reads one step's result into `pace`. A step copies exactly the pages it asked for unless the
 * copy started over, so a step that ends short of `copied before + pages asked` was a restart,
 * however big the steps are. The copy worker runs this function's own source text: it must stay
 * self-contained (no imports, no helpers, nothing a build tool would wrap it in).
 */
export function paceCopy(pace: CopyPace, copied: number, restartsBeforeOneStep: number, allPages: number): void {
  if (copied < pace.copied + pace.asked) {
    pace.restarts += 1;
    if (pace.restarts >= restartsBeforeOneStep) pace.pages = allPages;
  }
  pace.copied = copied;
  pace.asked = pace.pages;
}

/**
 * The copy, made by a worker thread on its own read-only connection, so no step of it ever
 * runs on an event loop that serves anything (the destination's final commit alone takes tens
 * of milliseconds on a 50 MB file).
 *
 * Any write by another connection makes SQLite start the copy over at its next step, and the
 * service writes every millisecond or so under load, so most steps restart. `paceCopy` counts
 * the restarts (comparing with the previous count alone missed them: a restarted step of the
 * same size lands on the same count, and `ctu backup` once livelocked that way under load).
 * After a few restarts the rest is taken in one step: one WAL read transaction, which never
 * blocks the writer and cannot be restarted.
 *
 * Failures are posted as their message: an error thrown out of a worker reaches the parent
 * without the message of SQLite's own error class.
 */
const COPY_WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const paceCopy = ${paceCopy.toString()};
const failed = (error) => parentPort.postMessage({ failed: error instanceof Error ? error.message : String(error) });
let source;
try {
  source = new (require(workerData.driver))(workerData.source, { readonly: true, fileMustExist: true });
} catch (error) {
  failed(error);
}
const pace = { pages: workerData.pagesPerStep, asked: 0, copied: 0, restarts: 0 };
if (source !== undefined) source.backup(workerData.target, {
  progress: ({ totalPages, remainingPages }) => {
    if (Atomics.load(workerData.stop, 0) === 1) throw new Error('stopped');
    paceCopy(pace, totalPages - remainingPages, ${RESTARTS_BEFORE_ONE_STEP}, ${ALL_PAGES});
    parentPort.postMessage({ copied: totalPages - remainingPages, totalPages });
    return pace.pages;
  },
}).then(
  (done) => { source.close(); parentPort.postMessage({ pages: done.totalPages, restarts: pace.restarts }); },
  (error) => { source.close(); failed(error); },
);`;

type CopyMessage = { copied: number; totalPages: number } | { pages: number; restarts: number } | { failed: string };

/** Backs the database at `source` up to `file` (via `file.partial`), checks the copy, and returns what was written. */
export async function backupInWorker(source: string, file: string, options: BackupOptions = {}): Promise<BackupResult> {
  const started = performance.now();
  const target = resolve(file);
  const partial = `${target}.partial`;
  mkdirSync(dirname(target), { recursive: true });
  rmSync(partial, { force: true });
  const driver = createRequire(__filename).resolve('better-sqlite3');
  // Stopping is asked for through shared memory and honoured between steps: terminating a
  // thread inside a SQLite call aborts the whole process.
  const stop = new Int32Array(new SharedArrayBuffer(4));
  let callerFailure: unknown;
  /** Runs a caller's callback; one that throws stops the copy, and its error is the reason. */
  const guarded = (callback: () => void): void => {
    try {
      callback();
    } catch (error) {
      callerFailure ??= error;
      Atomics.store(stop, 0, 1);
    }
  };
  const checkStop = (): void =>
    guarded(() => {
      if (options.shouldStop?.() === true) Atomics.store(stop, 0, 1);
    });
  const abandoned = (): BackupError | undefined => {
    if (callerFailure !== undefined) return new BackupError(`backup abandoned: ${callerFailure instanceof Error ? callerFailure.message : String(callerFailure)}`);
    return Atomics.load(stop, 0) === 1 ? new BackupError('backup abandoned: shutting down') : undefined;
  };
  try {
    const copied = await new Promise<{ pages: number; restarts: number }>((resolvePromise, reject) => {
      const worker = new Worker(COPY_WORKER_SOURCE, { eval: true, workerData: { driver, source, target: partial, pagesPerStep: 1024, stop } });
      checkStop();
      const poll = setInterval(checkStop, 100);
      let answer: { pages: number; restarts: number } | undefined;
      let failure: string | undefined;
      worker.on('message', (message: CopyMessage) => {
        if ('failed' in message) failure = message.failed;
        else if ('pages' in message) answer = message;
        else {
          guarded(() => options.onProgress?.(message.copied, message.totalPages));
          checkStop();
        }
      });
      worker.once('error', (error: Error & { code?: unknown }) => (failure ??= error.message ?? String(error.code)));
      worker.once('exit', () => {
        clearInterval(poll);
        const stopped = abandoned();
        if (answer !== undefined) resolvePromise(answer);
        else if (stopped !== undefined) reject(stopped);
        else reject(new BackupError(`backup of ${source} failed: ${failure ?? 'the backup worker stopped'}`));
      });
    });
    options.onProgress?.(copied.pages, copied.pages);
    checkStop();
    const stopped = abandoned();
    if (stopped !== undefined) throw stopped; // asked during the last step: no check, no rename
    const check = await checkCopy(partial, true);
    const problem = copyProblem(check);
    if (problem !== undefined) throw new BackupError(`the copy failed its check: ${problem}`);
    renameSync(partial, target);
    return { file: target, bytes: statSync(target).size, pages: copied.pages, restarts: copied.restarts, durationMs: performance.now() - started, check };
  } catch (error) {
    for (const suffix of ['', '-journal', '-wal', '-shm']) rmSync(`${partial}${suffix}`, { force: true });
    throw error;
  }
}

/** Runs integrity_check (and reads schema_migrations) on a copy, in a worker thread. */
export function checkCopy(file: string, standalone: boolean): Promise<CopyCheck> {
  const driver = createRequire(__filename).resolve('better-sqlite3');
  return new Promise((resolvePromise, reject) => {
    const worker = new Worker(CHECK_COPY_WORKER_SOURCE, { eval: true, workerData: { driver, file, standalone } });
    let answered = false;
    worker.once('message', (check: CopyCheck) => {
      answered = true;
      resolvePromise(check);
    });
    worker.once('error', (error) => reject(new BackupError(`cannot read ${file} as a SQLite database: ${error.message}`)));
    worker.once('exit', (code) => {
      if (!answered) reject(new BackupError(`the check of ${file} stopped (exit ${code})`));
    });
  });
}

/** Why a copy is not fit to serve, or undefined. */
export function copyProblem(check: CopyCheck, knownVersion = Math.max(0, ...readMigrations().map((m) => m.version))): string | undefined {
  if (check.integrity.length !== 1 || check.integrity[0] !== 'ok') return `integrity_check: ${check.integrity.join('; ')}`;
  if (!check.hasMigrations) return 'no schema_migrations table: not a Click-to-Unlock database';
  if (check.schemaVersion !== null && check.schemaVersion > knownVersion) {
    return `schema version ${check.schemaVersion} is newer than this program's ${knownVersion}; use a newer ctu`;
  }
  return undefined;
}

export function backupFileName(now: number): string {
  return `ctu-${new Date(now).toISOString().replace(/[-:.]/g, '')}.db`;
}

/** Deletes all but the newest `keep` backups (by name, which sorts by time) in `dir`; returns the deleted names. */
export function rotateBackups(dir: string, keep: number): string[] {
  const names = readdirSync(dir).filter((name) => BACKUP_NAME.test(name)).sort();
  const doomed = names.slice(0, Math.max(0, names.length - keep));
  for (const name of doomed) rmSync(join(dir, name), { force: true });
  return doomed;
}

export interface BackupSettings {
  /** undefined: scheduled backups are off. */
  readonly dir: string | undefined;
  readonly intervalMs: number;
  readonly keep: number;
}

export interface BackupScheduleOptions {
  readonly db: Db;
  readonly dir: string;
  readonly intervalMs: number;
  readonly keep: number;
  readonly log: Logger;
  readonly clock?: () => number;
}

export interface BackupSchedule {
  runNow(): Promise<BackupResult | undefined>;
  /** Abandons a running backup between steps and waits for it. Call before closing the database. */
  stop(): Promise<void>;
}

/** Backs the service's database up every `intervalMs` into `dir` (off the event loop), keeping the newest `keep`. */
export function startBackupSchedule(options: BackupScheduleOptions): BackupSchedule {
  const { db, dir, log } = options;
  const clock = options.clock ?? Date.now;
  return startPeriodic({
    firstDelayMs: options.intervalMs,
    intervalMs: options.intervalMs,
    run: (stopping) =>
      backupInWorker(db.name, join(dir, backupFileName(clock())), { shouldStop: stopping }).then(
        (result) => {
          const removed = rotateBackups(dir, options.keep);
          log.info({ file: result.file, bytes: result.bytes, ms: Math.round(result.durationMs), removed }, 'backup written and verified');
          return result;
        },
        (error: unknown) => {
          log.error({ err: error instanceof Error ? error.message : String(error) }, 'scheduled backup failed');
          return undefined;
        },
      ),
  });
}

export type DatabaseUse = 'free' | 'in-use' | 'missing' | 'unreadable';

/**
 * Whether any process has the database open. In WAL mode every open connection keeps a shared
 * lock on the file (that is how the last one out knows it may delete the WAL), so an exclusive
 * lock is granted only when nobody else has it open: a running service, an idle feed, a
 * sqlite3 shell. The probe takes no time to wait and changes nothing.
 */
export function databaseInUse(path: string): DatabaseUse {
  if (!existsSync(path)) return 'missing';
  let probe: Db | undefined;
  try {
    probe = new Database(path, { fileMustExist: true, timeout: 0 });
    probe.pragma('locking_mode = EXCLUSIVE');
    probe.exec('BEGIN EXCLUSIVE');
    probe.exec('COMMIT');
    return 'free';
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' ? 'in-use' : 'unreadable';
  } finally {
    probe?.close();
  }
}

export interface RestoreResult {
  readonly restored: string;
  readonly previous: string | undefined;
  readonly check: CopyCheck;
}

/** Restores `from` over `to`, which must not be open anywhere; the old file is kept beside it. */
export async function restoreDatabase(from: string, to: string, now = Date.now()): Promise<RestoreResult> {
  const source = resolve(from);
  const target = resolve(to);
  if (!existsSync(source)) throw new BackupError(`no such file: ${source}`);
  if (source === target) throw new BackupError('the backup and DATABASE_PATH are the same file');
  if (databaseInUse(target) === 'in-use') {
    throw new BackupError(`${target} is open in another process (a running service, feed or shell): stop it before restoring`);
  }
  mkdirSync(dirname(target), { recursive: true });
  const staging = `${target}.restoring`;
  for (const suffix of ['', '-journal', '-wal', '-shm']) rmSync(`${staging}${suffix}`, { force: true });
  try {
    // Copy through SQLite, read-only on the source: a backup that is itself in WAL mode with a
    // -wal beside it is read whole, and the source file is never modified.
    let reader: Db;
    try {
      reader = new Database(source, { readonly: true, fileMustExist: true });
    } catch (error) {
      throw new BackupError(`cannot open ${source}: ${(error as Error).message}`);
    }
    try {
      await reader.backup(staging);
    } catch (error) {
      throw new BackupError(`cannot read ${source} as a SQLite database: ${(error as Error).message}`);
    } finally {
      reader.close();
    }
    const check = await checkCopy(staging, true);
    const problem = copyProblem(check);
    if (problem !== undefined) throw new BackupError(`${basename(source)} is not fit to restore: ${problem}`);
    if (databaseInUse(target) === 'in-use') throw new BackupError(`${target} was opened while restoring: stop that process and try again`);
    let previous: string | undefined;
    if (existsSync(target)) {
      previous = `${target}.before-restore-${new Date(now).toISOString().replace(/[-:.]/g, '')}`;
      for (const suffix of ['', '-wal', '-shm', '-journal']) {
        if (existsSync(`${target}${suffix}`)) renameSync(`${target}${suffix}`, `${previous}${suffix}`);
      }
    }
    renameSync(staging, target);
    return { restored: target, previous, check };
  } finally {
    for (const suffix of ['', '-journal', '-wal', '-shm']) rmSync(`${staging}${suffix}`, { force: true });
  }
}

/** `ctu backup [--out FILE]`: an online backup of DATABASE_PATH, beside a running service or not. */
export async function backupCommand(args: readonly string[], config: Pick<Config, 'databasePath' | 'backup'>): Promise<number> {
  const { values } = parseArgs({ args: [...args], options: { out: { type: 'string' } } });
  if (!existsSync(config.databasePath)) {
    process.stderr.write(`ctu backup: no database at ${config.databasePath} (DATABASE_PATH)\n`);
    return 1;
  }
  let out: string;
  try {
    out = resolve(values.out ?? join(config.backup.dir ?? join(dirname(config.databasePath), 'backups'), backupFileName(Date.now())));
  } catch (error) {
    process.stderr.write(`ctu backup: configuration error: ${(error as Error).message}\n`);
    return 78;
  }
  if (existsSync(out)) {
    process.stderr.write(`ctu backup: ${out} exists; choose another --out\n`);
    return 2;
  }
  const bar = progressBar(process.stderr);
  try {
    const result = await backupInWorker(config.databasePath, out, { onProgress: (copied, total) => bar('backup', copied, total, 'pages') });
    bar.done();
    process.stdout.write(
      `backup written to ${result.file}\n  ${formatBytes(result.bytes)}, ${result.pages} pages, integrity ok, schema version ${String(result.check.schemaVersion)}, ` +
        `${(result.durationMs / 1000).toFixed(1)} s${result.restarts > 0 ? ` (${result.restarts} restarts: the service wrote meanwhile)` : ''}\n`,
    );
    return 0;
  } catch (error) {
    bar.done();
    process.stderr.write(`ctu backup: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

/** `ctu restore FILE`: replaces DATABASE_PATH with a checked copy of FILE, only when no service has it open. */
export async function restoreCommand(args: readonly string[], config: Pick<Config, 'databasePath' | 'host' | 'ports' | 'verifyToken'>): Promise<number> {
  const { positionals } = parseArgs({ args: [...args], allowPositionals: true, options: {} });
  const [file] = positionals;
  if (file === undefined || positionals.length !== 1) {
    process.stderr.write('ctu restore: give exactly one backup file: ctu restore FILE\n');
    return 2;
  }
  // The lock probe in restoreDatabase is what counts; a service that answers on WEBHOOK_PORT is
  // refused too, in case it runs on the same data through another path (a bind mount, a symlink).
  if (config.ports.webhook !== 0 && (await webhookAnswers(config))) {
    process.stderr.write(`ctu restore: a Click-to-Unlock service answers on port ${config.ports.webhook}; stop it before restoring\n`);
    return 1;
  }
  try {
    const result = await restoreDatabase(file, config.databasePath);
    process.stdout.write(
      `restored ${resolve(file)} to ${result.restored} (integrity ok, schema version ${String(result.check.schemaVersion)})\n` +
        (result.previous !== undefined ? `  the previous database was kept as ${result.previous}\n` : '') +
        '  start the service again; newer migrations, if any, are applied at start\n',
    );
    return 0;
  } catch (error) {
    process.stderr.write(`ctu restore: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

async function webhookAnswers(config: Pick<Config, 'host' | 'ports' | 'verifyToken'>): Promise<boolean> {
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const query = new URLSearchParams({ 'hub.mode': 'subscribe', 'hub.verify_token': config.verifyToken, 'hub.challenge': 'ctu-restore-probe' });
  try {
    const answer = await fetch(`http://${host}:${config.ports.webhook}/webhook?${query.toString()}`, { signal: AbortSignal.timeout(2_000) });
    return (await answer.text()) === 'ctu-restore-probe';
  } catch {
    return false;
  }
}

function formatBytes(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}
