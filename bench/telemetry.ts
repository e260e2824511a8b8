/**
 * Telemetry overhead on ingest: the same signed ~2 KB webhooks as bench/ingest.ts, 50
 * connections, against four copies of the real service (`node dist/src/cli.js start`, each its
 * own database), which differ only in their OpenTelemetry environment:
 *   off        OTEL_SDK_DISABLED=true: no spans, no unlock_* metrics
 *   metrics    the SDK on, no OTLP endpoint: metrics only, spans are no-ops
 *   on         every trace sampled (always_on), exported over OTLP/HTTP to a live loopback sink
 *   closed     every trace sampled, OTLP endpoint on a closed port (a collector that is down)
 * Each round measures every copy twice, for half the round's seconds each, in an order and then
 * its mirror image (e.g. off metrics on closed | closed on metrics off), and the order rotates
 * from round to round: every copy's two halves are centred on the same instant, so a load on
 * the shared machine that rises or falls steadily through a round weighs on all copies alike.
 * Every ratio is taken per round. Requests/s is bound by the SQLite COMMIT on a slow disk (see the
 * ingest notes), so service CPU per request is reported as well: that is where telemetry's
 * cost shows first.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startChild, startServiceReady, waitForHttp, type Benchmark, type BenchOptions, type BenchResult, type Child, type Figure } from './harness';
import { BODY_BYTES, CONNECTIONS, Ledger, measure, reconcile, WARMUP_SECONDS, type LedgerCheck, type Run } from './ingest';

type Mode = 'off' | 'metrics' | 'on' | 'closed';
const MODES: readonly Mode[] = ['off', 'metrics', 'on', 'closed'];

/**
 * The OTLP/HTTP sink, a child process so that receiving spans costs the load generator
 * nothing: answers every POST 200 and counts requests, bytes and spans. Protobuf bodies (the
 * service's default) are walked by field number, ExportTraceServiceRequest.resource_spans (1)
 * → ResourceSpans.scope_spans (2) → ScopeSpans.spans (2); JSON bodies count "spanId" keys
 * (ingest spans carry no links). GET answers the counts as JSON.
 */
const SINK_SOURCE = `
const http = require('node:http');
const key = Buffer.from('"spanId"');
const stats = { requests: 0, bytes: 0, spans: 0, contentTypes: {} };
function varint(buf, at) {
  let value = 0;
  for (let shift = 0; ; shift += 7) {
    const byte = buf[at.pos++];
    if (byte === undefined) throw new Error('truncated');
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return value;
  }
}
/** Calls found(start, end) for each length-delimited field number n in buf[start, end). */
function each(buf, start, end, n, found) {
  const at = { pos: start };
  while (at.pos < end) {
    const tag = varint(buf, at);
    const wire = tag & 7;
    if (wire === 0) varint(buf, at);
    else if (wire === 1) at.pos += 8;
    else if (wire === 5) at.pos += 4;
    else if (wire === 2) {
      const length = varint(buf, at);
      if (tag >>> 3 === n) found(at.pos, at.pos + length);
      at.pos += length;
    } else throw new Error('wire type ' + wire);
  }
}
http.createServer((req, res) => {
  if (req.method !== 'POST') return void res.end(JSON.stringify(stats));
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const type = String(req.headers['content-type']);
    stats.requests++;
    stats.bytes += body.length;
    stats.contentTypes[type] = (stats.contentTypes[type] ?? 0) + 1;
    if (type === 'application/x-protobuf') {
      each(body, 0, body.length, 1, (rs, rsEnd) => each(body, rs, rsEnd, 2, (ss, ssEnd) => each(body, ss, ssEnd, 2, () => void stats.spans++)));
      return void res.writeHead(200, { 'content-type': type }).end();
    }
    for (let i = body.indexOf(key); i !== -1; i = body.indexOf(key, i + key.length)) stats.spans++;
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
}).listen(Number(process.env.BENCH_PORT), '127.0.0.1');
`;

interface SinkStats {
  readonly requests: number;
  readonly bytes: number;
  readonly spans: number;
  /** Requests per Content-Type. */
  readonly contentTypes: Readonly<Record<string, number>>;
}

interface Service {
  readonly mode: Mode;
  readonly child: Child;
  readonly url: string;
  readonly metricsUrl: string;
  readonly databasePath: string;
  readonly ledger: Ledger;
  readonly runs: Run[];
}

async function sinkStats(url: string): Promise<SinkStats> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return (await res.json()) as SinkStats;
}

/** The value of one sample on a service's /metrics (undefined when absent or unreachable). */
async function metric(url: string, sample: string): Promise<number | undefined> {
  try {
    const text = await (await fetch(url, { signal: AbortSignal.timeout(5_000) })).text();
    const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
    return line === undefined ? undefined : Number(line.slice(sample.length + 1));
  } catch {
    return undefined;
  }
}

/** Two equally long measurements of one copy as one: mean rates and CPU, the worse latency, summed errors. */
function combine(a: Run, b: Run): Run {
  return {
    rps: (a.rps + b.rps) / 2,
    p50: Math.max(a.p50, b.p50),
    p99: Math.max(a.p99, b.p99),
    non2xx: a.non2xx + b.non2xx,
    errors: a.errors + b.errors,
    serverCpu: (a.serverCpu + b.serverCpu) / 2,
    clientCpu: (a.clientCpu + b.clientCpu) / 2,
  };
}

async function run(options: BenchOptions): Promise<BenchResult> {
  const { log } = options;
  const dir = mkdtempSync(join(tmpdir(), 'ctu-bench-telemetry-'));
  const half = Math.max(1, options.seconds / 2);
  const base = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dir, NODE_ENV: 'production' };
  const sinkPort = await freePort();
  const closedPort = await freePort(); // nothing listens there
  const sink = startChild('OTLP sink', ['-e', SINK_SOURCE], { ...base, BENCH_PORT: String(sinkPort) });
  const sinkUrl = `http://127.0.0.1:${sinkPort}`;
  const otel: Record<Mode, Record<string, string>> = {
    off: { OTEL_SDK_DISABLED: 'true' },
    metrics: {},
    on: { OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl, OTEL_TRACES_SAMPLER: 'always_on' },
    closed: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${closedPort}`, OTEL_TRACES_SAMPLER: 'always_on' },
  };
  const services: Service[] = [];
  const checks: BenchResult['checks'][number][] = [];
  let sinkTotal: SinkStats | undefined;
  let onAcked = 0;
  const failures: Partial<Record<Mode, number | undefined>> = {};
  try {
    for (const mode of MODES) {
      const databasePath = join(dir, `${mode}.db`);
      const { child, webhookUrl, metricsUrl } = await startServiceReady(`service (${mode})`, { ...base, ...otel[mode], DATABASE_PATH: databasePath });
      services.push({
        mode,
        child,
        url: webhookUrl,
        metricsUrl,
        databasePath,
        ledger: new Ledger(),
        runs: [],
      });
    }
    await waitForHttp(sinkUrl, sink);
    log(`telemetry: warm-up ${WARMUP_SECONDS} s each (databases in ${dir})`);
    for (const s of services) await measure(s.url, s.child, s.ledger, true, WARMUP_SECONDS);

    for (let round = 1; round <= options.rounds; round++) {
      // Rotate the order so that no mode always runs first (or right after another), then mirror it.
      const order = MODES.map((_, i) => services[(i + round - 1) % services.length] as Service);
      const halves = new Map<Service, Run>();
      for (const s of [...order, ...[...order].reverse()]) {
        const run = await measure(s.url, s.child, s.ledger, true, half);
        const first = halves.get(s);
        if (first === undefined) halves.set(s, run);
        else s.runs.push(combine(first, run));
      }
      const line = order.map((s) => {
        const r = s.runs[s.runs.length - 1] as Run;
        return `${s.mode} ${r.rps.toFixed(0)}/s ${((r.serverCpu / r.rps) * 1000).toFixed(3)} ms cpu/req`;
      });
      log(`telemetry round ${round}/${options.rounds}: ${line.join(' | ')}`);
    }
    for (const s of services) failures[s.mode] = await metric(s.metricsUrl, 'unlock_telemetry_export_failures_total{signal="traces"}');
    for (const s of services) {
      const code = await s.child.stop();
      if (code !== 0) throw new Error(`service (${s.mode}) exited with ${code} at shutdown:\n${s.child.output()}`);
    }
    sinkTotal = await sinkStats(sinkUrl); // after shutdown: the services flushed what they still held
    for (const s of services) {
      const check: LedgerCheck = reconcile(s.ledger, s.databasePath);
      if (s.mode === 'on') onAcked = check.acked;
      checks.push({
        label: `${s.mode}: every 2xx is a stored inbound message (no loss)`,
        ok: check.lost === 0 && check.unknown === 0 && check.storedRejected === 0,
        detail: `${check.acked} answered 2xx, ${check.stored} stored, ${check.lost} lost, ${check.storedRejected} stored despite a non-2xx, ${check.unknown} unknown`,
      });
    }
  } finally {
    await Promise.all([...services.map((s) => s.child.stop()), sink.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }

  const runsOf = (mode: Mode): Run[] => services.find((s) => s.mode === mode)?.runs ?? [];
  const ratio = (a: Mode, b: Mode): number[] => runsOf(a).map((r, i) => r.rps / (runsOf(b)[i]?.rps ?? Number.NaN));
  const cpuPerRequest = (mode: Mode): number[] => runsOf(mode).map((r) => (r.serverCpu / r.rps) * 1000);
  const figure = (label: string, unit: string, values: number[], extra: Pick<Figure, 'target' | 'digits'> = {}): Figure => ({ label, unit, values, ...extra });
  const all = MODES.flatMap(runsOf);
  const non2xx = all.reduce((n, r) => n + r.non2xx, 0);
  const errors = all.reduce((n, r) => n + r.errors, 0);
  const exportedSpans = sinkTotal?.spans ?? 0;
  return {
    method:
      `Signed ${BODY_BYTES}-byte inbound-message webhooks as in the ingest benchmark (unique wamids, own HMAC each), ` +
      `${CONNECTIONS} connections, no pipelining, autocannon in the bench process, against four copies of ` +
      '`node dist/src/cli.js start` (sandbox, own fresh database each) that differ only in their OpenTelemetry ' +
      'environment: **off** `OTEL_SDK_DISABLED=true`; **metrics** the SDK on without an OTLP endpoint; **on** ' +
      '`OTEL_TRACES_SAMPLER=always_on` exporting OTLP/HTTP in the default protocol, http/protobuf (batch processor, default settings) to a live sink in ' +
      'its own process on loopback; **closed** the same with the endpoint on a closed port. Each POST makes 3 spans ' +
      `(POST /webhook, webhook.verify, webhook.commit). Warm-up ${WARMUP_SECONDS} s each, then ${options.rounds} rounds; ` +
      `a round measures every copy for ${2 * half} s in two halves, in a rotating order and then its mirror image ` +
      '(e.g. off metrics on closed | closed on metrics off), so that a load on the shared machine that rises or falls through ' +
      'a round weighs on every copy alike; ratios are per round. Requests/s counts 2xx answers per ' +
      'wall-clock second (the mean of the halves); CPU per request is the service process\'s user+system time over its 2xx ' +
      'answers; a round\'s p99 latency is the worse of its two halves\'.',
    figures: [
      figure('off requests/s', 'req/s', runsOf('off').map((r) => r.rps), { digits: 0 }),
      figure('metrics only requests/s', 'req/s', runsOf('metrics').map((r) => r.rps), { digits: 0 }),
      figure('on (every trace exported) requests/s', 'req/s', runsOf('on').map((r) => r.rps), { digits: 0 }),
      figure('closed endpoint requests/s', 'req/s', runsOf('closed').map((r) => r.rps), { digits: 0 }),
      figure('ratio on/off (same round)', '×', ratio('on', 'off'), { target: { op: '>=', value: 0.9 }, digits: 2 }),
      figure('ratio metrics/off (same round)', '×', ratio('metrics', 'off'), { digits: 2 }),
      figure('ratio closed/metrics (same round)', '×', ratio('closed', 'metrics'), { digits: 2 }),
      figure('ratio closed/off (same round)', '×', ratio('closed', 'off'), { digits: 2 }),
      figure('off CPU per request', 'ms', cpuPerRequest('off'), { digits: 3 }),
      figure('metrics only CPU per request', 'ms', cpuPerRequest('metrics'), { digits: 3 }),
      figure('on CPU per request', 'ms', cpuPerRequest('on'), { digits: 3 }),
      figure('closed endpoint CPU per request', 'ms', cpuPerRequest('closed'), { digits: 3 }),
      // What on/off would be if CPU, not the COMMIT, were the bottleneck.
      figure('CPU-bound projection on/off (off ÷ on CPU per request)', '×', cpuPerRequest('off').map((c, i) => c / (cpuPerRequest('on')[i] ?? Number.NaN)), { digits: 2 }),
      figure('on p99 latency', 'ms', runsOf('on').map((r) => r.p99), { digits: 1 }),
      figure('off p99 latency', 'ms', runsOf('off').map((r) => r.p99), { digits: 1 }),
    ],
    checks: [
      ...checks,
      { label: 'no non-2xx answers, errors or timeouts (every copy)', ok: non2xx === 0 && errors === 0, detail: `${non2xx} non-2xx, ${errors} errors/timeouts` },
      {
        label: 'on: every answered request\'s 3 spans reached the sink (none dropped), no export failed',
        ok: exportedSpans >= onAcked * 3 && failures.on === 0,
        detail:
          `${exportedSpans} spans received for ${onAcked} requests answered 2xx (${(exportedSpans / Math.max(1, onAcked)).toFixed(2)} per request), ` +
          `${((sinkTotal?.bytes ?? 0) / Math.max(1, exportedSpans)).toFixed(0)} bytes per span as ${Object.keys(sinkTotal?.contentTypes ?? {}).join(', ') || 'nothing'}; ` +
          `export failures ${failures.on ?? 'n/a'}`,
      },
      {
        label: 'closed: export failures were counted',
        ok: (failures.closed ?? 0) > 0,
        detail: `unlock_telemetry_export_failures_total{signal="traces"} = ${failures.closed ?? 'n/a'}`,
      },
    ],
  };
}

export const benchmark: Benchmark = { name: 'telemetry', title: 'Telemetry overhead on ingest: on vs off vs collector down', run };
