/**
 * Backups and restore, for real: `ctu backup` of a live service while POSTs flow, `ctu restore`
 * into a new path and a service started on it; restore refusing a live or a bad database; and
 * the in-service scheduled backup measured for event-loop delay under load.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, describe, expect, it } from 'vitest';
import { startBackupSchedule } from '../src/backup';
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
