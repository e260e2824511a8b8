/**
 * End to end, as issue 6 checks it: the sandbox (`ctu start`, with its built-in Meta simulator)
 * takes continuous signed taps from this process and serves /metrics; the real `prometheus`
 * binary on loopback runs the shipped prometheus/prometheus.yml, rewritten only for the scrape
 * and Alertmanager addresses and a 1 s scrape/evaluation interval, with the shipped recording
 * rules and a copy of the alerting rules whose `for:` is shortened to 1 s (expressions and
 * thresholds untouched). Then each fault the sandbox can produce brings its alerts to pending or
 * firing, Prometheus posts firing alerts to the configured Alertmanager address, and every
 * dashboard panel's query returns data.
 *
 * Not here, because the sandbox cannot produce them within a test's minutes: a read-only
 * database (DatabaseNotWritable, WebhookErrorRatioHigh), a backlog older than 5 minutes
 * (SenderBacklogOld) and an hour without traffic (WebhookTrafficAbsent). The promtool unit
 * tests in prometheus/tests/ (run by prometheus-rules.test.ts) cover those alerts.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { closeServer, listen } from '../src/http-listen';
import { PROMETHEUS_BIN, startPrometheusIn, toolAvailable, type RunningPrometheus } from './helpers/prometheus';
import { sandboxBuilt, startSandbox, type Sandbox, type TapStream } from './helpers/sandbox';
import { dashboardQueries, REPO } from './prometheus-names';

const INTERVAL_SECONDS = 1;
const ALERT_TIMEOUT_MS = 40_000;
/** Good taps per second for the whole file; each starts an unlock of one or two messages. */
const TAP_RATE = 20;
/** Forged taps per second while that fault is on: > 1/s over 5 minutes needs about 300. */
const BAD_SIGNATURE_RATE = 40;
/** Bounds the background traffic even if afterAll never runs. */
const TRAFFIC_MAX_MS = 180_000;

const runnable = toolAvailable(PROMETHEUS_BIN) && sandboxBuilt();

/** A fault the sandbox can produce, and the alerts it must raise. `start` returns how to end it. */
interface FaultCase {
  readonly name: string;
  readonly expected: readonly string[];
  start(sandbox: Sandbox): Promise<() => Promise<void>>;
}

const FAULTS: readonly FaultCase[] = [
  {
    name: 'webhook POSTs arrive with bad signatures',
    expected: ['WebhookSignatureFailureSpike'],
    start(sandbox) {
      const forged: TapStream = sandbox.tap({ ratePerSecond: BAD_SIGNATURE_RATE, maxDurationMs: ALERT_TIMEOUT_MS, appSecret: 'not-the-app-secret', firstContact: 1_000_000 });
      return Promise.resolve(async () => {
        const report = await forged.stop();
        // Refused (401), never accepted: no forged POST got a 200.
        expect(report.non200).toBeGreaterThan(0);
        expect(report.posts - report.non200 - report.errors, JSON.stringify(report)).toBe(0);
      });
    },
  },
  {
    name: 'the simulator fails every send permanently (131026)',
    expected: ['DeliverySuccessBelowObjective', 'DeadLettersRising'],
    async start(sandbox) {
      await sandbox.patchFaults({ error: { probability: 1, code: 131026 } });
      return () => sandbox.clearFaults();
    },
  },
  {
    name: 'the simulator rejects the access token (190)',
    expected: ['GraphApiAuthFailures'],
    async start(sandbox) {
      await sandbox.patchFaults({ error: { probability: 1, code: 190 } });
      return () => sandbox.clearFaults();
    },
  },
];

interface PromConfig {
  global: Record<string, unknown>;
  rule_files: string[];
  alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
  scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
}

/** The shipped config with only the scrape and Alertmanager addresses and the intervals changed. */
function rewriteConfig(shipped: PromConfig, target: string, alertmanager: string): PromConfig {
  const copy = structuredClone(shipped);
  copy.global.scrape_interval = `${INTERVAL_SECONDS}s`;
  copy.global.scrape_timeout = `${INTERVAL_SECONDS}s`;
  copy.global.evaluation_interval = `${INTERVAL_SECONDS}s`;
  for (const job of copy.scrape_configs) for (const sc of job.static_configs) sc.targets = sc.targets.map(() => target);
  for (const am of copy.alerting.alertmanagers) for (const sc of am.static_configs) sc.targets = sc.targets.map(() => alertmanager);
  return copy;
}

/** Alerting rules with every `for:` shortened, so alerts show within seconds; expressions untouched. */
function shortenFor(text: string): string {
  const doc = parse(text) as { groups: { rules: { for?: string }[] }[] };
  for (const group of doc.groups) for (const rule of group.rules) if (rule.for !== undefined) rule.for = `${INTERVAL_SECONDS}s`;
  return stringify(doc);
}

interface ActiveAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
}

async function startShippedPrometheus(target: string, alertmanager: string): Promise<RunningPrometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'ctu-prom-e2e-'));
  mkdirSync(join(dir, 'rules'));
  const shipped = parse(readFileSync(join(REPO, 'prometheus', 'prometheus.yml'), 'utf8')) as PromConfig;
  writeFileSync(join(dir, 'prometheus.yml'), stringify(rewriteConfig(shipped, target, alertmanager)));
  writeFileSync(join(dir, 'rules', 'recording.yml'), readFileSync(join(REPO, 'prometheus', 'rules', 'recording.yml')));
  writeFileSync(join(dir, 'rules', 'alerts.yml'), shortenFor(readFileSync(join(REPO, 'prometheus', 'rules', 'alerts.yml'), 'utf8')));

  return startPrometheusIn(dir);
}

/** Stands in for Alertmanager: records what Prometheus posts to /api/v2/alerts. */
async function startAlertReceiver(): Promise<{ target: string; received: ActiveAlert[]; close(): Promise<void> }> {
  const received: ActiveAlert[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/api/v2/alerts') {
        for (const a of JSON.parse(Buffer.concat(chunks).toString('utf8')) as ActiveAlert[]) if (received.length < 1_000) received.push(a);
      }
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    });
  });
  const port = await listen(server, 0, '127.0.0.1');
  return {
    target: `127.0.0.1:${port}`,
    received,
    close: () => closeServer(server, 0),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `probe` every 250 ms until it returns a value that is not undefined, at most `timeoutMs`. */
async function eventually<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await sleep(250);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError !== undefined ? `: ${String(lastError)}` : ''}`);
}

/** Grafana's macros and the dashboards' template variables, as Grafana would expand them here. */
function expandMacros(expr: string, rangeSeconds: number): string {
  const expanded = expr
    .replaceAll('$__rate_interval', `${4 * INTERVAL_SECONDS * 2}s`)
    .replaceAll('$__range', `${rangeSeconds}s`)
    .replaceAll('$__interval', `${2 * INTERVAL_SECONDS}s`)
    .replace(/\$\{?pack\}?/g, '.*');
  if (/\$/.test(expanded)) throw new Error(`unexpanded variable in ${expr}`);
  return expanded;
}

describe.skipIf(!runnable)('Prometheus end to end: the sandbox under simulated traffic, the shipped config, rules and dashboards', () => {
  let sandbox: Sandbox;
  let taps: TapStream | undefined;
  let receiver: Awaited<ReturnType<typeof startAlertReceiver>>;
  let prometheus: RunningPrometheus;
  let startedAt = 0;

  const activeAlerts = async (): Promise<ActiveAlert[]> => (await prometheus.api<{ alerts: ActiveAlert[] }>('/api/v1/alerts')).alerts;
  const instant = (promql: string): Promise<{ result: { value: [number, string] }[] }> => prometheus.api(`/api/v1/query?query=${encodeURIComponent(promql)}`);

  beforeAll(async () => {
    sandbox = await startSandbox();
    startedAt = Date.now();
    taps = sandbox.tap({ ratePerSecond: TAP_RATE, maxDurationMs: TRAFFIC_MAX_MS, duplicateRate: 0.05 });
    // The WebSocket clients panel needs a dashboard connected.
    await sandbox.connectWebSocket();
    receiver = await startAlertReceiver();
    prometheus = await startShippedPrometheus(sandbox.metricsTarget, receiver.target);
  }, 60_000);

  // A sandbox that died mid-file would fail every later test with "fetch failed"; say why once.
  afterEach(() => sandbox?.assertRunning());

  afterAll(async () => {
    await prometheus?.stop();
    await receiver?.close();
    const report = await taps?.stop();
    await sandbox?.stop();
    // Meta-like retries hide a flaky webhook; the good traffic must all have been taken.
    if (report !== undefined) expect(report.undelivered, JSON.stringify(report)).toBe(0);
  }, 30_000);

  it('when the shipped config is rewritten for the test, then only addresses and intervals change', () => {
    const shipped = parse(readFileSync(join(REPO, 'prometheus', 'prometheus.yml'), 'utf8')) as PromConfig;
    const rewritten = rewriteConfig(shipped, '127.0.0.1:1', '127.0.0.1:2');
    const mask = (c: PromConfig): PromConfig => rewriteConfig(c, 'T', 'A');
    expect(mask(rewritten)).toEqual(mask(shipped));
    expect(rewritten.scrape_configs[0]?.static_configs[0]?.targets).toEqual(['127.0.0.1:1']);
    expect(rewritten.rule_files).toEqual(shipped.rule_files);
  });

  it('when the sandbox takes healthy traffic, then the target is up, rules evaluate, a WebSocket client counts and no alert is pending or firing', async () => {
    await eventually('target up', 20_000, async () => ((await instant('up{job="click-to-unlock"}')).result[0]?.value[1] === '1' ? true : undefined));
    await eventually('messages sent and delivered by the simulator', 20_000, async () => {
      const r = await instant('sum(unlock_message_statuses_total{status="delivered"})');
      return Number(r.result[0]?.value[1] ?? 0) > 0 ? true : undefined;
    });
    await eventually('recording rules to produce the webhook error ratio', 20_000, async () => ((await instant('unlock:webhook_error_ratio:rate5m')).result.length > 0 ? true : undefined));
    expect(Number((await instant('sum(unlock_websocket_clients)')).result[0]?.value[1])).toBeGreaterThanOrEqual(1);
    // Right after start, "no traffic" holds until two scrapes exist; it must clear by itself.
    const quiet = await eventually('no active alerts under healthy traffic', 20_000, async () => {
      const alerts = await activeAlerts();
      return alerts.length === 0 ? alerts : undefined;
    });
    expect(quiet).toEqual([]);
  }, 70_000);

  for (const fault of FAULTS) {
    it(`when ${fault.name}, then ${fault.expected.join(' and ')} ${fault.expected.length === 1 ? 'reaches' : 'reach'} pending or firing, and nothing unrelated does`, async () => {
      const before = new Set((await activeAlerts()).map((a) => a.labels.alertname));
      // Otherwise the test would prove nothing about this fault.
      for (const name of fault.expected) expect(before.has(name), `${name} was already active`).toBe(false);
      const end = await fault.start(sandbox);
      try {
        const seen = await eventually(`${fault.expected.join(', ')} after: ${fault.name}`, ALERT_TIMEOUT_MS, async () => {
          const alerts = await activeAlerts();
          const names = new Set(alerts.map((a) => a.labels.alertname));
          return fault.expected.every((name) => names.has(name)) ? alerts : undefined;
        });
        for (const alert of seen) {
          expect(['pending', 'firing']).toContain(alert.state);
          const name = alert.labels.alertname as string;
          expect([...fault.expected, ...before], `${name} is unrelated to: ${fault.name}`).toContain(name);
        }
      } finally {
        await end();
      }
    }, ALERT_TIMEOUT_MS + 10_000);
  }

  it('when alerts fire, then Prometheus delivers them to the configured Alertmanager with their runbook links', async () => {
    // Prometheus sends notifications on its own schedule; on a busy machine that takes a while.
    const expected = ['WebhookSignatureFailureSpike', 'DeadLettersRising', 'GraphApiAuthFailures'];
    const names = await eventually('alerts posted to the Alertmanager address', 50_000, () => {
      const posted = new Set(receiver.received.map((a) => a.labels.alertname));
      return Promise.resolve(expected.every((n) => posted.has(n)) ? posted : undefined);
    });
    expect(names.size).toBeGreaterThanOrEqual(expected.length);
    for (const alert of receiver.received) expect(alert.annotations.runbook_url).toMatch(/^docs\/operations\.md#[a-z]+$/);
  }, 60_000);

  it('when every dashboard panel query runs against Prometheus, then each returns data', async () => {
    const end = Math.floor(Date.now() / 1000);
    const start = Math.floor(startedAt / 1000);
    const queries = dashboardQueries();
    expect(queries.length).toBeGreaterThan(30);
    const empty: string[] = [];
    for (const q of queries) {
      const expr = expandMacros(q.expr, end - start);
      const params = new URLSearchParams({ query: expr, start: String(start), end: String(end), step: '1' });
      const data = await prometheus.api<{ result: { values: [number, string][] }[] }>(`/api/v1/query_range?${params.toString()}`);
      const hasData = data.result.some((series) => series.values.some(([, v]) => Number.isFinite(Number(v))));
      if (!hasData) empty.push(`${q.dashboard} / ${q.panel} [${q.refId}]: ${expr}`);
    }
    expect(empty).toEqual([]);
    // The business dashboard's pack variable lists the sandbox's packs (and "unknown", which the
    // exporter keeps for taps on a pack outside the catalog).
    const packs = await prometheus.api<string[]>(`/api/v1/label/pack/values?${new URLSearchParams({ 'match[]': 'unlock_button_clicks_total' }).toString()}`);
    expect(packs).toEqual(expect.arrayContaining(['duo', 'solo']));
  }, 60_000);
});
