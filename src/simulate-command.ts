/**
 * `ctu simulate --contacts N --rate R --duration D`: synthetic contacts tap Unlock through
 * the running service's signed webhook (with some duplicate deliveries, as Meta does), then
 * the report reads what the service made of them from its database: taps, unlocks, messages
 * sent/delivered/read/failed, and possible duplicate sends (expected 0).
 */
import { randomInt } from 'node:crypto';
import type { Config } from './config';
import { parseDuration } from './duration';
import type { Catalog } from './packs';
import { progressBar } from './progress';
import { driveTaps, type TapProgress } from './simulator';
import { openDatabase } from './store/database';

export interface SimulateOptions {
  readonly contacts: number;
  readonly ratePerSecond: number;
  readonly durationMs: number;
  readonly duplicateRate: number;
  readonly settleMs: number;
  readonly pack?: string;
}

export function parseSimulateArgs(values: Record<string, string | boolean | undefined>): SimulateOptions | string {
  const contacts = Number(values.contacts ?? 100);
  const rate = Number(values.rate ?? 20);
  const duration = parseDuration(String(values.duration ?? '10s'));
  const settle = parseDuration(String(values.settle ?? '30s'));
  const duplicateRate = Number(values['duplicate-rate'] ?? 0.1);
  if (!Number.isInteger(contacts) || contacts < 1 || contacts > 1_000_000) return '--contacts must be a whole number from 1 to 1000000';
  if (!(rate > 0 && rate <= 10_000)) return '--rate must be taps per second, above 0 and up to 10000';
  if (duration === undefined || duration <= 0 || duration > 3_600_000) return '--duration must be a duration up to 1h, like 30s or 5m';
  if (settle === undefined) return '--settle must be a duration, like 30s';
  if (!(duplicateRate >= 0 && duplicateRate <= 1)) return '--duplicate-rate must be between 0 and 1';
  return { contacts, ratePerSecond: rate, durationMs: duration, duplicateRate, settleMs: settle, ...(typeof values.pack === 'string' ? { pack: values.pack } : {}) };
}

interface Tally {
  taps: number;
  unlocks: number;
  sent: number;
  delivered: number;
  read: number;
  failed: number;
  open: number;
  possibleDuplicates: number;
}

export async function runSimulate(config: Config, catalog: Catalog, options: SimulateOptions, out: NodeJS.WriteStream = process.stderr): Promise<Tally> {
  const packs = options.pack === undefined ? catalog.packs : catalog.packs.filter((p) => p.id === options.pack);
  if (packs.length === 0) throw new Error(`no pack "${options.pack ?? ''}" in the catalog`);
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const webhookUrl = `http://${host}:${config.ports.webhook}/webhook`;
  // A fresh block of synthetic numbers per run, so earlier runs' unlocks do not turn these taps into repeats.
  const base = 15_550_000_000_000 + randomInt(0, 9_000_000) * 100;
  const contacts = Array.from({ length: options.contacts }, (_, i) => String(base + i));
  const startedAt = Date.now();
  const bar = progressBar(out);

  const report = await driveTaps({
    webhookUrl,
    appSecret: config.appSecrets[0] as string,
    contacts,
    triggers: packs.map((p) => p.trigger),
    ratePerSecond: options.ratePerSecond,
    durationMs: options.durationMs,
    duplicateRate: options.duplicateRate,
    phoneNumberId: config.phoneNumberId,
    onProgress: (p: TapProgress) => bar(`tapping  `, p.completed, p.total, `${p.posts} POSTs, ${p.non200} non-200`),
  });
  bar.done();
  if (report.undelivered > 0 && report.posts === report.undelivered) {
    throw new Error(`no tap reached ${webhookUrl}: is the service running (npm start)?`);
  }

  const db = openDatabase(config.databasePath, { readonly: true });
  try {
    const tally = (): Tally => {
      const q = (sql: string): number => Number(db.prepare(sql).pluck().get(startedAt) ?? 0);
      const contactFilter = `contact BETWEEN '${base}' AND '${base + options.contacts}'`;
      return {
        taps: q(`SELECT COUNT(*) FROM clicks WHERE received_at >= ? AND ${contactFilter}`),
        unlocks: q(`SELECT COUNT(*) FROM unlocks WHERE created_at >= ? AND ${contactFilter}`),
        sent: q(`SELECT COUNT(*) FROM outbox WHERE created_at >= ? AND kind = 'pack' AND state = 'accepted' AND ${contactFilter}`),
        delivered: q(`SELECT COUNT(*) FROM outbox WHERE created_at >= ? AND kind = 'pack' AND status_rank >= 3 AND ${contactFilter}`),
        read: q(`SELECT COUNT(*) FROM outbox WHERE created_at >= ? AND kind = 'pack' AND status = 'read' AND ${contactFilter}`),
        failed: q(`SELECT COUNT(*) FROM outbox WHERE created_at >= ? AND kind = 'pack' AND state = 'dead' AND ${contactFilter}`),
        open: q(`SELECT COUNT(*) FROM outbox WHERE created_at >= ? AND kind = 'pack' AND state IN ('pending', 'sending', 'unknown') AND ${contactFilter}`),
        possibleDuplicates: q(`SELECT COUNT(*) FROM outbox WHERE created_at >= ? AND resent = 1 AND ${contactFilter}`),
      };
    };
    // Let the sender drain and the statuses come back, up to --settle.
    const settleUntil = Date.now() + options.settleMs;
    let t = tally();
    while (Date.now() < settleUntil) {
      const expected = t.unlocks > 0 ? db.prepare(`SELECT COALESCE(SUM(message_count), 0) FROM unlocks WHERE created_at >= ? AND contact BETWEEN '${base}' AND '${base + options.contacts}'`).pluck().get(startedAt) : 0;
      bar('delivering', t.delivered + t.failed, Number(expected), `${t.sent} sent, ${t.open} queued`);
      if (t.open === 0 && t.delivered + t.failed >= Number(expected)) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
      t = tally();
    }
    bar.done();
    const lines = [
      '',
      `taps             ${report.taps} (${report.posts} webhook POSTs, ${report.duplicatePosts} duplicate deliveries, ${report.non200} non-200 answers)`,
      `clicks recorded  ${t.taps}`,
      `unlocks          ${t.unlocks}`,
      `messages sent    ${t.sent}`,
      `delivered        ${t.delivered}`,
      `read             ${t.read}`,
      `failed           ${t.failed}`,
      `still queued     ${t.open}`,
      `duplicate sends  ${t.possibleDuplicates} (expected 0)`,
      `webhook latency  p50 ${report.latencyMs.p50.toFixed(1)} ms, p99 ${report.latencyMs.p99.toFixed(1)} ms`,
      '',
    ];
    process.stdout.write(lines.join('\n'));
    return t;
  } finally {
    db.close();
  }
}
