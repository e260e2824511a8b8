/**
 * `ctu doctor [--json]`: checks a running deployment end to end over loopback and says what to
 * do about each failure. Exit code: 0 healthy, 1 degraded, 2 down (for cron, PM2 or a
 * container health check). Run it where the service runs: the database checks open
 * DATABASE_PATH directly, beside the service, and never write (BEGIN IMMEDIATE; ROLLBACK).
 *
 * A listener that refuses connections on API_PORT, WS_PORT or METRICS_PORT is reported as
 * "not served" (skipped), since a `--role webhook` process serves none of them.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import WebSocket from 'ws';

import type { Config } from './config';
import { HOUR, MINUTE, SECOND } from './duration';
import { createMaintenanceStore, quickCheck } from './store/maintenance-store';
import type { Db } from './store/database';

export type CheckStatus = 'ok' | 'skip' | 'warn' | 'fail';

export interface CheckResult {
  readonly name: string;
  /** warn: degraded; fail: down. */
  readonly status: CheckStatus;
  readonly detail: string;
  /** What to do, for warn and fail. */
  readonly action?: string;
  readonly ms: number;
}

export interface DoctorReport {
  readonly status: 'healthy' | 'degraded' | 'down';
  readonly exitCode: 0 | 1 | 2;
  readonly at: string;
  readonly checks: readonly CheckResult[];
}

export interface DoctorTargets {
  readonly webhookUrl: string;
  readonly apiUrl: string;
  readonly wsUrl: string;
  readonly metricsUrl: string;
  readonly apiKey: string | undefined;
  readonly databasePath: string;
  readonly verifyToken: string;
  readonly timeoutMs: number;
  readonly backupDir: string | undefined;
  readonly backupIntervalMs: number;
}

export const BACKLOG_WARN_MS = 5 * MINUTE;
export const FAILURES_WARN_PER_HOUR = 5;
export const SKEW_WARN_MS = 30 * SECOND;
const WRITE_PROBE_BUSY_MS = 2_000;

export function targetsFromConfig(config: Config, overrides: Partial<DoctorTargets> = {}): DoctorTargets {
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const backup = config.backup;
  return {
    webhookUrl: `http://${host}:${config.ports.webhook}/webhook`,
    apiUrl: `http://${host}:${config.ports.api}`,
    wsUrl: `ws://${host}:${config.ports.ws}/ws`,
    metricsUrl: `http://${host}:${config.ports.metrics}/metrics`,
    apiKey: process.env.CTU_API_KEY,
    databasePath: config.databasePath,
    verifyToken: config.verifyToken,
    timeoutMs: 5_000,
    backupDir: backup.dir,
    backupIntervalMs: backup.intervalMs,
    ...overrides,
  };
}

export async function runDoctor(targets: DoctorTargets, now = Date.now()): Promise<DoctorReport> {
  const checks = await Promise.all([
    timed('webhook handshake', () => checkWebhook(targets)),
    timed('API health', () => checkApi(targets)),
    timed('WebSocket feed', () => checkWebSocket(targets)),
    timed('metrics scrape', () => checkMetrics(targets)),
  ]);
  checks.push(...(await databaseChecks(targets, now)));
  if (targets.backupDir !== undefined) checks.push(await timed('backups', async () => checkBackups(targets, now)));
  const down = checks.some((c) => c.status === 'fail');
  const degraded = checks.some((c) => c.status === 'warn');
  return { status: down ? 'down' : degraded ? 'degraded' : 'healthy', exitCode: down ? 2 : degraded ? 1 : 0, at: new Date(now).toISOString(), checks };
}

type Outcome = Omit<CheckResult, 'name' | 'ms'>;

async function timed(name: string, check: () => Promise<Outcome>): Promise<CheckResult> {
  const started = performance.now();
  const outcome = await check().catch((error: unknown): Outcome => ({ status: 'fail', detail: `the check itself failed: ${String(error)}` }));
  return { name, ...outcome, ms: Math.round(performance.now() - started) };
}

function refused(error: unknown): boolean {
  const cause = (error as { cause?: { code?: unknown } }).cause;
  return cause?.code === 'ECONNREFUSED' || (error as { code?: unknown }).code === 'ECONNREFUSED';
}

async function checkWebhook(t: DoctorTargets): Promise<Outcome> {
  const challenge = `doctor-${Math.random().toString(36).slice(2)}`;
  const query = new URLSearchParams({ 'hub.mode': 'subscribe', 'hub.verify_token': t.verifyToken, 'hub.challenge': challenge });
  try {
    const answer = await fetch(`${t.webhookUrl}?${query.toString()}`, { signal: AbortSignal.timeout(t.timeoutMs) });
    const body = await answer.text();
    if (answer.status === 200 && body === challenge) return { status: 'ok', detail: `${t.webhookUrl} answered the verification challenge` };
    if (answer.status === 403) {
      return { status: 'fail', detail: 'the service refused our verify token (403)', action: 'META_VERIFY_TOKEN here differs from the running service\'s; run doctor with the service\'s environment, or restart the service with the token configured in the Meta app' };
    }
    return { status: 'fail', detail: `unexpected answer ${answer.status}`, action: 'something else answers on WEBHOOK_PORT; check the port and the reverse proxy' };
  } catch (error) {
    return {
      status: 'fail',
      detail: refused(error) ? `nothing listens at ${t.webhookUrl}` : `no answer from ${t.webhookUrl}: ${(error as Error).message}`,
      action: 'the service is down or hung: check `pm2 status` / `docker compose ps` / `systemctl status ctu` and its logs, then restart it (Meta retries for 7 days; nothing is lost yet)',
    };
  }
}

async function checkApi(t: DoctorTargets): Promise<Outcome> {
  try {
    const answer = await fetch(`${t.apiUrl}/api/health`, { signal: AbortSignal.timeout(t.timeoutMs) });
    const body = (await answer.json().catch(() => ({}))) as { status?: unknown; sender?: { queue_depth?: unknown } | null };
    if (answer.status === 200 && body.status === 'ok') return { status: 'ok', detail: `ready; sender queue depth ${String(body.sender?.queue_depth ?? '?')}` };
    return { status: 'warn', detail: `GET /api/health answered ${answer.status} (${String(body.status)})`, action: 'the feed cannot read the database: see the database checks below and the feed\'s logs' };
  } catch (error) {
    if (refused(error)) return { status: 'skip', detail: `not served: nothing listens at ${t.apiUrl} (API_PORT)` };
    return { status: 'warn', detail: `no answer from ${t.apiUrl}: ${(error as Error).message}`, action: 'the feed role is hung or overloaded: check its logs and restart `ctu start --role feed`' };
  }
}

function checkWebSocket(t: DoctorTargets): Promise<Outcome> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = t.apiKey === undefined ? {} : { Authorization: `Bearer ${t.apiKey}` };
    const socket = new WebSocket(t.wsUrl, { headers, handshakeTimeout: t.timeoutMs });
    const finish = (outcome: Outcome): void => {
      socket.removeAllListeners();
      socket.on('error', () => undefined);
      socket.terminate();
      resolve(outcome);
    };
    socket.on('open', () => finish({ status: 'ok', detail: `connected to ${t.wsUrl}` }));
    socket.on('unexpected-response', (_req, res) => {
      if (res.statusCode === 401 && t.apiKey === undefined) {
        finish({ status: 'ok', detail: 'the endpoint answers and asks for a key (set CTU_API_KEY to test a full connection)' });
      } else {
        finish({ status: 'warn', detail: `the upgrade was refused with ${res.statusCode}`, action: res.statusCode === 401 ? 'CTU_API_KEY is not a valid, unrevoked API key' : 'check the feed\'s logs' });
      }
    });
    socket.on('error', (error) => {
      if (refused(error)) finish({ status: 'skip', detail: `not served: nothing listens at ${t.wsUrl} (WS_PORT)` });
      else finish({ status: 'warn', detail: `cannot connect to ${t.wsUrl}: ${error.message}`, action: 'the feed role is hung or overloaded: check its logs and restart it' });
    });
  });
}

async function checkMetrics(t: DoctorTargets): Promise<Outcome> {
  try {
    const answer = await fetch(t.metricsUrl, { signal: AbortSignal.timeout(t.timeoutMs) });
    const body = await answer.text();
    if (answer.status === 200 && /^(unlock|process|nodejs)_/m.test(body)) return { status: 'ok', detail: `${body.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length} samples` };
    return { status: 'warn', detail: `GET /metrics answered ${answer.status} without our metrics`, action: 'Prometheus sees no data: check METRICS_PORT and the telemetry log lines' };
  } catch (error) {
    if (refused(error)) return { status: 'skip', detail: `not served: nothing listens at ${t.metricsUrl} (METRICS_PORT)` };
    return { status: 'warn', detail: `no answer from ${t.metricsUrl}: ${(error as Error).message}`, action: 'the metrics listener is hung: check the service\'s logs' };
  }
}

async function databaseChecks(t: DoctorTargets, now: number): Promise<CheckResult[]> {
  const started = performance.now();
  const result = (name: string, outcome: Outcome): CheckResult => ({ name, ...outcome, ms: Math.round(performance.now() - started) });
  if (!existsSync(t.databasePath)) {
    return [result('database integrity', { status: 'fail', detail: `no database at ${t.databasePath}`, action: 'check DATABASE_PATH and the volume mount; restore with `ctu restore FILE` if the file was lost' })];
  }
  let db: Db;
  try {
    db = new Database(t.databasePath, { fileMustExist: true, timeout: WRITE_PROBE_BUSY_MS });
  } catch (error) {
    return [result('database integrity', { status: 'fail', detail: `cannot open: ${(error as Error).message}`, action: 'check file ownership and permissions of DATABASE_PATH and its directory' })];
  }
  try {
    const checks = [result('database integrity', integrity(db))];
    if (checks[0]?.status === 'fail') return checks;
    checks.push(result('database writable', writable(db)));
    const facts = createMaintenanceStore(db).doctorFacts(now, HOUR, 24 * HOUR);
    const backlogMs = facts.oldestOpenCreatedAt === null ? 0 : now - facts.oldestOpenCreatedAt;
    checks.push(
      result(
        'sender backlog',
        backlogMs > BACKLOG_WARN_MS
          ? { status: 'warn', detail: `${facts.openOutbox} message(s) waiting, the oldest for ${formatAge(backlogMs)}`, action: 'see the SenderBacklogOld runbook: is the webhook role running, is Graph API throttling (SEND_RATE_PER_SECOND) or failing?' }
          : { status: 'ok', detail: facts.openOutbox === 0 ? 'nothing waiting' : `${facts.openOutbox} waiting, the oldest for ${formatAge(backlogMs)}` },
      ),
    );
    const failures = facts.deadLettersSince + facts.failedDeliveriesSince;
    checks.push(
      result(
        'dead letters (1 h)',
        failures > FAILURES_WARN_PER_HOUR
          ? { status: 'warn', detail: `${facts.deadLettersSince} webhook items and ${facts.failedDeliveriesSince} deliveries failed in the last hour`, action: 'see the DeadLettersRising runbook; `GET /api/events?types=delivery.failed` lists the error codes' }
          : { status: 'ok', detail: `${failures} in the last hour` },
      ),
    );
    checks.push(result('clock skew', clockSkew(facts.recentLagsMs)));
    return checks;
  } finally {
    db.close();
  }
}

function integrity(db: Db): Outcome {
  try {
    const messages = quickCheck(db);
    if (messages.length === 1 && messages[0] === 'ok') return { status: 'ok', detail: 'quick_check ok' };
    return { status: 'fail', detail: `quick_check: ${messages.slice(0, 3).join('; ')}`, action: 'stop the service, keep the damaged file, and restore the newest backup with `ctu restore FILE`' };
  } catch (error) {
    return { status: 'fail', detail: `unreadable: ${(error as Error).message}`, action: 'stop the service, keep the damaged file, and restore the newest backup with `ctu restore FILE`' };
  }
}

function writable(db: Db): Outcome {
  try {
    db.exec('BEGIN IMMEDIATE');
    db.exec('ROLLBACK');
    return { status: 'ok', detail: 'took and released the write lock' };
  } catch (error) {
    const code = String((error as { code?: unknown }).code);
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
      return { status: 'fail', detail: `the write lock is held by another process for over ${WRITE_PROBE_BUSY_MS / 1000} s; webhooks are answered 503`, action: 'find the holder (`fuser DATABASE_PATH`, a sqlite3 shell, a stuck `ctu prune`) and stop it; the service recovers by itself' };
    }
    return { status: 'fail', detail: `cannot write: ${code} ${(error as Error).message}`, action: 'disk full or read-only: free space on the volume (`df`) or fix permissions; the service recovers by itself' };
  }
}

function clockSkew(lagsMs: readonly number[]): Outcome {
  if (lagsMs.length === 0) return { status: 'skip', detail: 'no webhook timestamps in the last 24 h to compare with' };
  const sorted = [...lagsMs].sort((a, b) => a - b);
  // Meta's timestamps are whole seconds: half a second of the lag is rounding, not skew.
  const median = (sorted[Math.floor(sorted.length / 2)] ?? 0) - 500;
  const detail = `our clock is ${Math.abs(median / 1000).toFixed(1)} s ${median < 0 ? 'behind' : 'ahead of'} Meta's (median of ${sorted.length} recent webhook timestamps)`;
  if (Math.abs(median) > SKEW_WARN_MS) {
    return { status: 'warn', detail, action: 'sync the host clock (`timedatectl`, `chronyc tracking`); skew shifts the UNLOCK_MAX_TAP_AGE window and every latency figure' };
  }
  return { status: 'ok', detail };
}

function checkBackups(t: DoctorTargets, now: number): Outcome {
  const dir = t.backupDir as string;
  const names = existsSync(dir) ? readdirSync(dir).filter((n) => /^ctu-.*\.db$/.test(n)).sort() : [];
  const newest = names.at(-1);
  if (newest === undefined) return { status: 'warn', detail: `no backups in ${dir}`, action: 'the first scheduled backup runs one BACKUP_INTERVAL after start; or run `ctu backup` now' };
  const age = now - statSync(join(dir, newest)).mtimeMs;
  if (age > 2 * t.backupIntervalMs) return { status: 'warn', detail: `the newest backup, ${newest}, is ${formatAge(age)} old`, action: 'scheduled backups are failing: search the logs for "scheduled backup failed"' };
  return { status: 'ok', detail: `${names.length} kept, the newest ${formatAge(age)} old` };
}

function formatAge(ms: number): string {
  if (ms < MINUTE) return `${Math.round(ms / SECOND)} s`;
  if (ms < HOUR) return `${Math.round(ms / MINUTE)} min`;
  return `${(ms / HOUR).toFixed(1)} h`;
}

export function formatReport(report: DoctorReport): string {
  const label: Record<CheckStatus, string> = { ok: 'ok  ', skip: 'skip', warn: 'WARN', fail: 'FAIL' };
  const lines = [`ctu doctor — ${report.at}`];
  for (const check of report.checks) {
    lines.push(`  ${label[check.status]}  ${check.name.padEnd(20)} ${check.detail}`);
    if (check.action !== undefined) lines.push(`        ${''.padEnd(20)} → ${check.action}`);
  }
  lines.push(`status: ${report.status} (exit ${report.exitCode})`);
  return `${lines.join('\n')}\n`;
}

/** `ctu doctor [--json]`; URLs of each listener may be overridden (--webhook-url, --api-url, --ws-url, --metrics-url). */
export async function doctorCommand(args: readonly string[], config: Config): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: {
      json: { type: 'boolean', default: false },
      'webhook-url': { type: 'string' },
      'api-url': { type: 'string' },
      'ws-url': { type: 'string' },
      'metrics-url': { type: 'string' },
    },
  });
  const overrides: Partial<DoctorTargets> = {
    ...(values['webhook-url'] !== undefined ? { webhookUrl: values['webhook-url'] } : {}),
    ...(values['api-url'] !== undefined ? { apiUrl: values['api-url'] } : {}),
    ...(values['ws-url'] !== undefined ? { wsUrl: values['ws-url'] } : {}),
    ...(values['metrics-url'] !== undefined ? { metricsUrl: values['metrics-url'] } : {}),
  };
  let targets: DoctorTargets;
  try {
    targets = targetsFromConfig(config, overrides);
  } catch (error) {
    process.stderr.write(`ctu doctor: configuration error: ${(error as Error).message}\n`);
    return 2;
  }
  const report = await runDoctor(targets);
  process.stdout.write(values.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return report.exitCode;
}
