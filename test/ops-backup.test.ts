/**
 * Backups and restore, for real: `ctu backup` of a live service while POSTs flow, `ctu restore`
 * into a new path and a service started on it; restore refusing a live or a bad database; and
 * the in-service scheduled backup measured for event-loop delay under load.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { backupInWorker, paceCopy, startBackupSchedule, type CopyPace } from '../src/backup';
import { createLogger } from '../src/log';
import { openDatabase, type Db } from '../src/store/database';
import { makeTempDir, postSigned, startTestService, type CliProcess } from './helpers/webhook';
import { killAll, requireBuild, runCtu, startService, stopService } from './helpers/cli';
import { inboundEvent, startLoad, waitFor } from './ops-helpers';

const dir = makeTempDir('ctu-ops-backup-');
const clis: CliProcess[] = [];
afterAll(() => {
  killAll(clis);
  dir.remove();
});

/** Old webhook rows with 4 KiB bodies, so that a backup takes many steps. */
function prefill(db: Db, rows: number): void {
  const insert = db.prepare('INSERT INTO inbox (body_sha256, received_at, secret_index, item_count, body) VALUES (?, ?, 0, 0, ?)');
  for (let start = 0; start < rows; start += 1_000) {
    db.transaction(() => {
      for (let i = start; i < Math.min(rows, start + 1_000); i++) insert.run(randomBytes(32), Date.now() - 86_400_000, randomBytes(4096));
    })();
  }
}

function wamidsIn(path: string): Set<string> {
  const db = new Database(path, { readonly: true });
  try {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    return new Set(db.prepare('SELECT wamid FROM inbound_messages').pluck().all() as string[]);
  } finally {
    db.close();
  }
}

describe('backup and restore', () => {
  const livePath = join(dir.path, 'live.db');
  const backupPath = join(dir.path, 'backups', 'under-load.db');
  const restoredPath = join(dir.path, 'restored', 'ctu.db');
  let before: string[] = [];
  let live: { cli: CliProcess; env: Record<string, string> };

  it('when `ctu backup` runs while POSTs flow, then it writes a checked copy holding every event acknowledged before it started', async () => {
    requireBuild();
    const seed = openDatabase(livePath);
    prefill(seed, 5_000);
    seed.close();
    live = await startService(livePath, {}, clis);
    const load = startLoad(live.cli.url, 'backup', 8);
    try {
      await waitFor(() => load.acked.length >= 300, 15_000);
      before = [...load.acked];
      const run = await runCtu(['backup', '--out', backupPath], live.env, 60_000);
      expect(run.stderr).toMatch(/backup \[#+\] 100%/);
      expect(run.stdout).toContain(`backup written to ${backupPath}`);
      expect(run.stdout).toMatch(/\d+\.\d (MiB|KiB), \d+ pages, integrity ok, schema version \d+/);
      expect(run.code).toBe(0);
      await waitFor(() => load.acked.length >= before.length + 50, 15_000); // the webhook kept answering
    } finally {
      await load.stop();
    }
    expect([...load.answers.keys()]).toEqual([200]);
    const copied = wamidsIn(backupPath);
    expect(before.filter((w) => !copied.has(w))).toEqual([]);
  });

  it('when the database is live, then `ctu restore` refuses to replace it, whether the port or only the file lock gives it away', async () => {
    const byPort = await runCtu(['restore', backupPath], live.env);
    expect(byPort.code).toBe(1);
    expect(byPort.stderr).toMatch(/answers on port \d+; stop it before restoring/);
    const byLock = await runCtu(['restore', backupPath], { ...live.env, WEBHOOK_PORT: '0' });
    expect(byLock.code).toBe(1);
    expect(byLock.stderr).toMatch(/is open in another process/);
    expect((await postSigned(live.cli.url, inboundEvent('wamid.backup.still-live'))).status).toBe(200);
    expect((await stopService(live.cli)).code).toBe(0);
  });

  it('when the backup is restored into a new path, then a service started on it serves the restored data', async () => {
    const restoreEnv = { DATABASE_PATH: restoredPath, WEBHOOK_PORT: '0', META_VERIFY_TOKEN: 'x', LOG_LEVEL: 'silent' };
    const run = await runCtu(['restore', backupPath], restoreEnv);
    expect(run.stderr).toBe('');
    expect(run.stdout).toContain(`to ${restoredPath} (integrity ok`);
    expect(run.code).toBe(0);

    const { cli } = await startService(restoredPath, {}, clis);
    // A byte-identical redelivery of an event from before the backup is recognised as a duplicate...
    const old = before[0] as string;
    expect((await postSigned(cli.url, inboundEvent(old, Date.now()))).status).toBe(200);
    expect((await postSigned(cli.url, inboundEvent('wamid.backup.after-restore'))).status).toBe(200);
    expect((await stopService(cli)).code).toBe(0);
    const restored = wamidsIn(restoredPath);
    expect(before.filter((w) => !restored.has(w))).toEqual([]);
    expect(restored.has('wamid.backup.after-restore')).toBe(true);
    const db = new Database(restoredPath, { readonly: true });
    try {
      // ...and it did not create a second row: dedupe keys came back with the data.
      expect(db.prepare('SELECT COUNT(*) FROM inbound_messages WHERE wamid = ?').pluck().get(old)).toBe(1);
    } finally {
      db.close();
    }
  });

  it('when the file is corrupted or not ours, then `ctu restore` refuses it and leaves the database as it was', async () => {
    const target = { DATABASE_PATH: restoredPath, WEBHOOK_PORT: '0', LOG_LEVEL: 'silent' };
    const original = readFileSync(restoredPath);
    const corrupt = join(dir.path, 'corrupt-backup.db');
    const bytes = Buffer.from(readFileSync(backupPath));
    for (let offset = 2 * 4096; offset < bytes.length; offset += 3 * 4096) bytes.fill(0xab, offset, offset + 512);
    writeFileSync(corrupt, bytes);
    const foreign = join(dir.path, 'foreign.db');
    const other = new Database(foreign);
    other.exec('CREATE TABLE notes (body TEXT)');
    other.close();
    const text = join(dir.path, 'notes.txt');
    writeFileSync(text, 'this is not a database\n'.repeat(100));

    for (const [file, reason] of [
      [corrupt, /not fit to restore: integrity_check|cannot read/],
      [foreign, /no schema_migrations table/],
      [text, /cannot read .* as a SQLite database|not a database/],
    ] as const) {
      const run = await runCtu(['restore', file], target);
      expect(run.stderr).toMatch(reason);
      expect(run.code).toBe(1);
    }
    expect(readFileSync(restoredPath).equals(original)).toBe(true);
    expect(readdirSync(join(dir.path, 'restored')).filter((n) => n.includes('restoring'))).toEqual([]);
  });
});

describe('the copy under a writer that never pauses', () => {
  it('when steps keep landing on the same count, then each is counted as a restart and the copy switches to one step', () => {
    // Counts seen from a copy of 3,300 pages beside a thread that commits without pause: after
    // the first step every step started over, except one that got to 2,048.
    const pace: CopyPace = { pages: 1024, asked: 0, copied: 0, restarts: 0 };
    const asked: number[] = [];
    for (const copied of [0, 1024, 1024, 2048, 1024, 1024]) {
      paceCopy(pace, copied, 3, 0x7fffffff);
      asked.push(pace.pages);
    }
    expect(pace.restarts).toBe(3); // 1024 after 1024, 1024 after 2048, 1024 after 1024; 2048 after 1024 was a step
    expect(asked).toEqual([1024, 1024, 1024, 1024, 1024, 0x7fffffff]);
    // Without restarts the count climbs by what was asked and nothing is counted.
    const quiet: CopyPace = { pages: 100, asked: 0, copied: 0, restarts: 0 };
    for (const copied of [0, 100, 200, 300]) paceCopy(quiet, copied, 3, 0x7fffffff);
    expect(quiet).toEqual({ pages: 100, asked: 100, copied: 300, restarts: 0 });
  });

  it('when another connection commits between every step, then the restarts are counted and the copy still finishes, complete, in one last step', async () => {
    const path = join(dir.path, 'restarts.db');
    const db = openDatabase(path);
    prefill(db, 3_000); // about 3,500 pages: several steps of 1,024
    db.close();
    // A thread that commits without pause restarts most steps the copy takes from its own
    // connection. (Not all: counts like 1024, 1024, 2048, 1024 show steps that got through, so
    // the old check saw enough restarts here too; the paceCopy test above is the one that tells
    // the two checks apart. This one checks the worker end to end under a live writer.)
    const stop = new Int32Array(new SharedArrayBuffer(8));
    const writer = new Worker(
      `const { workerData } = require('node:worker_threads');
      const db = new (require(workerData.driver))(workerData.path);
      const insert = db.prepare('INSERT INTO inbox (body_sha256, received_at, secret_index, item_count, body) VALUES (randomblob(32), 0, 0, 0, randomblob(64))');
      while (Atomics.load(workerData.stop, 0) === 0) { insert.run(); Atomics.add(workerData.stop, 1, 1); }
      db.close();`,
      { eval: true, workerData: { driver: createRequire(__filename).resolve('better-sqlite3'), path, stop } },
    );
    const exited = new Promise((resolve) => writer.once('exit', resolve));
    const progress: Array<[number, number]> = [];
    try {
      await waitFor(() => Atomics.load(stop, 1) > 10, 5_000);
      const result = await backupInWorker(path, join(dir.path, 'restarts-copy.db'), {
        onProgress: (copied, total) => progress.push([copied, total]),
      });
      expect(result.restarts).toBe(3); // RESTARTS_BEFORE_ONE_STEP, then one step takes the rest
      expect(result.check.integrity).toEqual(['ok']);
      // The worker reported its steps (counts short of the total) before the final 100 %.
      expect(progress.some(([copied, total]) => copied > 0 && copied < total)).toBe(true);
      expect(progress.at(-1)).toEqual([result.pages, result.pages]);
    } finally {
      Atomics.store(stop, 0, 1);
      await exited;
    }
  });

  it('when the source cannot be copied or a caller callback throws, then the backup fails with the reason, leaves no partial file, and the process carries on', async () => {
    const junk = join(dir.path, 'junk.db');
    writeFileSync(junk, randomBytes(64 * 1024));
    await expect(backupInWorker(junk, join(dir.path, 'junk-copy.db'))).rejects.toThrow(/^backup of .*junk\.db failed: file is not a database$/);
    await expect(backupInWorker(join(dir.path, 'absent.db'), join(dir.path, 'absent-copy.db'))).rejects.toThrow(/failed: unable to open database file/);

    const path = join(dir.path, 'throwing.db');
    const db = openDatabase(path);
    prefill(db, 3_000);
    db.close();
    const thrown = backupInWorker(path, join(dir.path, 'throwing-copy.db'), {
      onProgress: () => {
        throw new Error('the progress bar broke');
      },
    });
    await expect(thrown).rejects.toThrow('backup abandoned: the progress bar broke');
    expect(readdirSync(dir.path).filter((n) => n.startsWith('junk-copy') || n.startsWith('absent-copy') || n.startsWith('throwing-copy'))).toEqual([]);
  });

  it('when the backup is asked to stop, then it is abandoned at its next step, leaves no partial file, and the process carries on', async () => {
    const path = join(dir.path, 'stopped.db');
    const db = openDatabase(path);
    prefill(db, 3_000);
    db.close();
    let steps = 0;
    // Asked to stop before its first step, it must not finish: the flag is read at every step.
    const attempt = backupInWorker(path, join(dir.path, 'stopped-copy.db'), { onProgress: () => steps++, shouldStop: () => true });
    await expect(attempt).rejects.toThrow('backup abandoned: shutting down');
    expect(steps).toBe(0);
    expect(readdirSync(dir.path).filter((n) => n.startsWith('stopped-copy'))).toEqual([]);
  });
});

describe('scheduled backups in the service', () => {
  it('when backups run under load, then the event loop is never stalled by them, each copy is complete, and only BACKUP_KEEP are kept', async () => {
    const service = await startTestService();
    const backupDir = join(service.dir.path, 'backups');
    const histogram = monitorEventLoopDelay({ resolution: 5 });
    try {
      prefill(service.service.db, 12_000); // about 50 MB
      histogram.enable();
      const load = startLoad(service.url, 'sched', 8);
      let p99Baseline = 0;
      let p99Backup = 0;
      let maxBackup = 0;
      const results = [];
      try {
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        p99Baseline = histogram.percentile(99) / 1e6;
        histogram.reset();
        const ackedBefore = load.acked.length;
        const schedule = startBackupSchedule({ db: service.service.db, dir: backupDir, intervalMs: 3_600_000, keep: 2, log: createLogger('silent') });
        for (let i = 0; i < 3; i++) {
          const ackedAtStart = [...load.acked];
          const result = await schedule.runNow();
          expect(result).toBeDefined();
          results.push({ result, ackedAtStart });
          await new Promise((resolve) => setTimeout(resolve, 20)); // distinct file names (ms resolution)
        }
        await schedule.stop();
        p99Backup = histogram.percentile(99) / 1e6;
        maxBackup = histogram.max / 1e6;
        expect(load.acked.length).toBeGreaterThan(ackedBefore); // the webhook kept answering during backups
      } finally {
        await load.stop();
        histogram.disable();
      }
      const seconds = results.reduce((s, r) => s + (r.result?.durationMs ?? 0), 0) / 1000;
      console.info(
        `backup under load: ${results.length} backups of ${((results[0]?.result?.bytes ?? 0) / 1024 / 1024).toFixed(1)} MiB in ${seconds.toFixed(1)} s; ` +
          `event-loop delay p99 ${p99Baseline.toFixed(1)} ms without, ${p99Backup.toFixed(1)} ms during (max ${maxBackup.toFixed(1)} ms); ${load.acked.length} POSTs acknowledged`,
      );
      expect([...load.answers.keys()]).toEqual([200]);
      // The 50 ms target is a benchmark figure on a quiet machine (see the closing notes and
      // docs/operations.md); here only a gross stall fails: copying 50 MB on the event loop
      // blocks it for far longer than this.
      expect(p99Backup).toBeLessThan(Math.max(250, 5 * p99Baseline));
      const kept = readdirSync(backupDir).sort();
      expect(kept).toHaveLength(2);
      const last = results.at(-1);
      expect(kept.at(-1)).toBe(last?.result?.file.split('/').at(-1));
      const inCopy = wamidsIn(last?.result?.file as string);
      expect((last?.ackedAtStart ?? []).filter((w) => !inCopy.has(w))).toEqual([]);
    } finally {
      await service.stop();
    }
  });
});
