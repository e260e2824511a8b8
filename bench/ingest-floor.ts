/**
 * `npm run bench -- ingest-floor`: where the floor of the ingest ratio is on this machine. The
 * same load as the ingest benchmark against four servers in rotating order:
 *   bare       bench/bare-webhook.ts: HMAC + JSON.parse, nothing stored (the ingest baseline)
 *   key        bench/durable-webhook.ts: + a synchronous=FULL group commit of each wamid
 *   key+body   the same, also storing the raw 2 KB body, as the service's inbox must
 *   service    `node dist/src/cli.js start`, as in the ingest benchmark
 * Each ratio is to the bare server in the same round. The durable baselines do far less than
 * the service (no items, dedupe of one key, no telemetry, no thread), so their ratios bound what
 * any design that stores the raw body before its 200 can reach here.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { freePort, startChild, startServiceReady, waitForHttp, type Benchmark, type BenchOptions, type BenchResult, type Child, type Figure } from './harness';
import { BODY_BYTES, CONNECTIONS, Ledger, measure, SECRET, WARMUP_SECONDS, type Run } from './ingest';

interface Server {
  readonly name: string;
  readonly child: Child;
  readonly url: string;
  readonly database?: string;
  readonly runs: Run[];
}

async function run(options: BenchOptions): Promise<BenchResult> {
  const { log } = options;
  const root = resolve(__dirname, '..', '..');
  const dir = mkdtempSync(join(tmpdir(), 'ctu-bench-floor-'));
  const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dir, NODE_ENV: 'production' };
  const baseline = async (name: string, script: string, extra: NodeJS.ProcessEnv, database?: string): Promise<Server> => {
    const port = await freePort();
    const child = startChild(name, [join(root, 'dist', 'bench', script)], { ...env, ...extra, BENCH_PORT: String(port), BENCH_SECRET: SECRET });
    return { name, child, url: `http://127.0.0.1:${port}/webhook`, database, runs: [] };
  };
  const servers: Server[] = [];
  try {
    servers.push(await baseline('bare', 'bare-webhook.js', {}));
    for (const [name, storeBody] of [['key', '0'], ['key+body', '1']] as const) {
      const database = join(dir, `${storeBody === '1' ? 'body' : 'key'}.db`);
      servers.push(await baseline(name, 'durable-webhook.js', { BENCH_DATABASE: database, BENCH_STORE_BODY: storeBody }, database));
    }
    const service = await startServiceReady('service', { ...env, DATABASE_PATH: join(dir, 'service.db') });
    servers.push({ name: 'service', child: service.child, url: service.webhookUrl, runs: [] });
    await Promise.all(servers.map((s) => waitForHttp(s.url, s.child)));

    const ledger = new Ledger();
    log(`ingest-floor: warm-up ${WARMUP_SECONDS} s each`);
    for (const s of servers) await measure(s.url, s.child, ledger, false, WARMUP_SECONDS);
    for (let round = 1; round <= options.rounds; round++) {
      const line: string[] = [];
      for (let k = 0; k < servers.length; k++) {
        const s = servers[(k + round - 1) % servers.length] as Server;
        const r = await measure(s.url, s.child, ledger, false, options.seconds);
        s.runs.push(r);
        line.push(`${s.name} ${r.rps.toFixed(0)}/s p99 ${r.p99} ms`);
      }
      log(`ingest-floor round ${round}/${options.rounds}: ${line.join(' | ')}`);
    }
  } finally {
    await Promise.all(servers.map((s) => s.child.stop()));
  }

  const rows = servers.map((s) => (s.database === undefined ? undefined : storedRows(s.database)));
  rmSync(dir, { recursive: true, force: true });
  const [bare] = servers as [Server, ...Server[]];
  const figures: Figure[] = [];
  for (const s of servers) figures.push({ label: `${s.name} requests/s`, unit: 'req/s', values: s.runs.map((r) => r.rps), digits: 0 });
  for (const s of servers.slice(1)) {
    figures.push({ label: `ratio ${s.name}/bare (same round)`, unit: '×', values: s.runs.map((r, i) => r.rps / (bare.runs[i]?.rps ?? Number.NaN)), digits: 2 });
  }
  for (const s of servers) figures.push({ label: `${s.name} p99 latency`, unit: 'ms', values: s.runs.map((r) => r.p99), digits: 1 });
  for (const s of servers) figures.push({ label: `${s.name} CPU per request`, unit: 'ms', values: s.runs.map((r) => (r.serverCpu / r.rps) * 1000), digits: 3 });
  const non2xx = servers.reduce((n, s) => n + s.runs.reduce((m, r) => m + r.non2xx + r.errors, 0), 0);
  const answered = servers.map((s) => s.runs.reduce((n, r) => n + r.rps, 0));
  return {
    method:
      `Signed ${BODY_BYTES}-byte inbound-message webhooks as in the ingest benchmark, ${CONNECTIONS} connections, no ` +
      `pipelining, against four child processes measured in rotating order, ${options.rounds} rounds of ${options.seconds} s ` +
      `after ${WARMUP_SECONDS} s of warm-up each: **bare** \`dist/bench/bare-webhook.js\` (HMAC + JSON.parse, the ingest ` +
      `baseline); **key** \`dist/bench/durable-webhook.js\`, which adds a synchronous=FULL group commit of each wamid ` +
      `(UNIQUE) per event-loop turn before answering; **key+body** the same storing the raw body too; **service** ` +
      '`node dist/src/cli.js start` as in the ingest benchmark. Ratios are to bare in the same round.',
    figures,
    checks: [
      { label: 'no non-2xx answers, errors or timeouts', ok: non2xx === 0, detail: `${non2xx}` },
      {
        label: 'the durable baselines stored at least as many rows as the 2xx answers of the measured rounds (less 1 % for timing)',
        ok: servers.every((_, i) => rows[i] === undefined || (rows[i] as number) >= Math.floor(answered[i] as number * options.seconds * 0.99)),
        detail: servers.map((s, i) => (rows[i] === undefined ? undefined : `${s.name}: ${rows[i]} rows`)).filter(Boolean).join(', '),
      },
    ],
  };
}

function storedRows(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare('SELECT COUNT(*) FROM inbox').pluck().get() as number;
  } finally {
    db.close();
  }
}

export const benchmark: Benchmark = { name: 'ingest-floor', title: 'Ingest floor: durable baselines between the bare server and the service', run };
