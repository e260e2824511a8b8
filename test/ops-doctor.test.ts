/**
 * `ctu doctor` against real deployments (the compiled CLI; run `npm run build` first): healthy,
 * then each failure it claims to detect, produced for real: a stopped service, a write lock
 * held by another process, a corrupted file, an old sender backlog, dead letters and a skewed clock.
 */
import Database from 'better-sqlite3';
import { copyFileSync, openSync, statSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DoctorReport } from '../src/doctor';
import { makeTempDir, postSigned, type CliProcess } from './helpers/webhook';
import { killAll, requireBuild, runCtu, startService, stopService } from './helpers/cli';
import { inboundEvent } from './ops-helpers';

const dir = makeTempDir('ctu-ops-doctor-');
const clis: CliProcess[] = [];
let cli: CliProcess;
let env: Record<string, string>;

beforeAll(async () => {
  requireBuild();
  ({ cli, env } = await startService(dir.dbPath, {}, clis));
  for (let i = 0; i < 5; i++) expect((await postSigned(cli.url, inboundEvent(`wamid.doctor.ok.${i}`))).status).toBe(200);
});
afterAll(() => {
  killAll(clis);
  dir.remove();
});

async function doctor(overrides: Record<string, string> = {}): Promise<{ code: number | null; report: DoctorReport; text: string }> {
  const run = await runCtu(['doctor', '--json'], { ...env, ...overrides });
  let report: DoctorReport;
  try {
    report = JSON.parse(run.stdout) as DoctorReport;
  } catch {
    throw new Error(`doctor printed no JSON (exit ${String(run.code)}):\n${run.stdout}\n${run.stderr}`);
  }
  return { code: run.code, report, text: run.stdout };
}

function check(report: DoctorReport, name: string): { status: string; detail: string; action?: string } {
  const found = report.checks.find((c) => c.name === name);
  if (found === undefined) throw new Error(`no check named "${name}" in ${report.checks.map((c) => c.name).join(', ')}`);
  return found;
}

describe('ctu doctor', () => {
  it('when the deployment is healthy, then every check passes or is skipped as not served, and it exits 0', async () => {
    const { code, report } = await doctor();
    expect(report.checks.filter((c) => c.status === 'warn' || c.status === 'fail')).toEqual([]);
    expect(code).toBe(0);
    expect(report.status).toBe('healthy');
    expect(check(report, 'webhook handshake').status).toBe('ok');
    expect(check(report, 'database integrity').status).toBe('ok');
    expect(check(report, 'database writable').status).toBe('ok');
    expect(check(report, 'clock skew').status).toBe('ok');
    // Listeners this version may not serve are reported as such, never as a failure.
    for (const name of ['API health', 'WebSocket feed', 'metrics scrape']) expect(['ok', 'skip']).toContain(check(report, name).status);
    const human = await runCtu(['doctor'], env);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/status: healthy \(exit 0\)/);
  });

  it('when another process holds the write lock, then "database writable" fails with what to do, and it exits 2', async () => {
    const holder = new Database(dir.dbPath, { timeout: 1_000 });
    try {
      holder.exec('BEGIN IMMEDIATE');
      const { code, report } = await doctor();
      const writable = check(report, 'database writable');
      expect(writable.status).toBe('fail');
      expect(writable.detail).toMatch(/write lock/);
      expect(writable.action).toMatch(/holder/);
      expect(code).toBe(2);
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
    expect((await doctor()).code).toBe(0);
  });

  it('when the sender backlog is old, dead letters pile up and our clock is behind Meta, then each is a warning and it exits 1', async () => {
    const db = new Database(dir.dbPath, { timeout: 2_000 });
    try {
      // An ambiguous send waiting for its status webhook: the sender leaves it until run_at.
      const hourAgo = Date.now() - 60 * 60_000;
      db.prepare(
        `INSERT INTO outbox (kind, contact, position, payload, state, run_at, created_at, unknown_since)
         VALUES ('teaser', '16505550000', 0, '{"type":"text","text":{"body":"hi"}}', 'unknown', ?, ?, ?)`,
      ).run(Date.now() + 60 * 60_000, hourAgo, hourAgo);
    } finally {
      db.close();
    }
    for (let i = 0; i < 7; i++) expect((await postSigned(cli.url, `not json ${i}`)).status).toBe(200); // each one a dead letter
    // Meta's timestamps ten minutes ahead of ours, for more than half of the recent webhooks.
    for (let i = 0; i < 12; i++) expect((await postSigned(cli.url, inboundEvent(`wamid.doctor.skew.${i}`, Date.now() + 10 * 60_000))).status).toBe(200);

    const { code, report } = await doctor();
    expect(check(report, 'sender backlog')).toMatchObject({ status: 'warn' });
    expect(check(report, 'sender backlog').detail).toMatch(/oldest for 1\.0 h/);
    expect(check(report, 'dead letters (1 h)')).toMatchObject({ status: 'warn' });
    expect(check(report, 'clock skew').status).toBe('warn');
    expect(check(report, 'clock skew').detail).toMatch(/behind/);
    expect(report.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(code).toBe(1);
    expect(report.status).toBe('degraded');
  });

  it('when the database file is corrupted, then "database integrity" fails and it exits 2', async () => {
    const copy = join(dir.path, 'corrupt.db');
    const db = new Database(dir.dbPath, { timeout: 2_000 });
    try {
      db.pragma('wal_checkpoint(FULL)');
    } finally {
      db.close();
    }
    copyFileSync(dir.dbPath, copy);
    const pages = statSync(copy).size / 4096;
    const fd = openSync(copy, 'r+');
    try {
      for (let page = 2; page < pages; page += 3) writeSync(fd, Buffer.alloc(512, 0xab), 0, 512, page * 4096);
    } finally {
      closeSync(fd);
    }
    const { code, report } = await doctor({ DATABASE_PATH: copy });
    const integrity = check(report, 'database integrity');
    expect(integrity.status).toBe('fail');
    expect(integrity.action).toMatch(/ctu restore/);
    expect(code).toBe(2);
  });

  it('when the service is stopped, then the webhook check fails with what to do, and it exits 2', async () => {
    expect((await stopService(cli)).code).toBe(0);
    const { code, report, text } = await doctor();
    const webhook = check(report, 'webhook handshake');
    expect(webhook.status).toBe('fail');
    expect(webhook.detail).toMatch(/nothing listens/);
    expect(webhook.action).toMatch(/restart/);
    expect(code).toBe(2);
    expect(report.status).toBe('down');
    expect(text).toContain('"exitCode": 2');
  });
});
