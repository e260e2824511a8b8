/**
 * Prometheus in tests: the real `prometheus` binary on a free loopback port with its own temp
 * config and TSDB, PromQL over its HTTP API, `promtool check metrics`, and a small parser
 * for the text exposition format. Reusable by the alert-rule end-to-end tests (pass ruleFiles).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './webhook';

export const PROMETHEUS_BIN = process.env.PROMETHEUS_BIN ?? '/usr/bin/prometheus';
export const PROMTOOL_BIN = process.env.PROMTOOL_BIN ?? (existsSync('/usr/bin/promtool') ? '/usr/bin/promtool' : 'promtool');

export function hasBinary(bin: string): boolean {
  const r = spawnSync(bin, ['--version'], { stdio: 'ignore', timeout: 10_000 });
  return r.error === undefined && r.status === 0;
}

/**
 * Whether a test needing `bin` can run. Missing locally → false (skip); missing under CI → throws,
 * so a CI run can never pass by skipping.
 */
export function toolAvailable(bin: string, installHint = 'apt-get install -y --no-install-recommends prometheus'): boolean {
  if (hasBinary(bin)) return true;
  if (process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false') {
    throw new Error(`${bin} is required under CI but was not found (${installHint})`);
  }
  return false;
}

export interface PromtoolResult {
  readonly ok: boolean;
  readonly output: string;
}

/** `promtool check metrics` on an exposition text (read from stdin). */
export function promtoolCheckMetrics(text: string): PromtoolResult {
  const r = spawnSync(PROMTOOL_BIN, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
  return { ok: r.status === 0, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error !== undefined ? String(r.error) : ''}` };
}

// ---------------------------------------------------------------------------------------------
// Exposition text

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  readonly type: string;
  readonly help: string | undefined;
  readonly samples: Sample[];
}

export interface Exposition {
  readonly families: Map<string, Family>;
  /** Family names declared by more than one # TYPE line. */
  readonly duplicates: string[];
  readonly samples: Sample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseExposition(text: string): Exposition {
  const families = new Map<string, Family>();
  const duplicates: string[] = [];
  const helps = new Map<string, string>();
  const samples: Sample[] = [];
  const familyOf = (sample: string): Family | undefined => {
    for (const suffix of ['', '_bucket', '_count', '_sum']) {
      if (suffix !== '' && !sample.endsWith(suffix)) continue;
      const f = families.get(sample.slice(0, sample.length - suffix.length));
      if (f !== undefined && (suffix === '' || f.type === 'histogram' || f.type === 'summary')) return f;
    }
    return undefined;
  };
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('# HELP ')) {
      const [name, ...rest] = line.slice(7).split(' ');
      if (name !== undefined) helps.set(name, rest.join(' '));
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ');
      if (name === undefined || type === undefined) continue;
      if (families.has(name)) duplicates.push(name);
      else families.set(name, { name, type, help: helps.get(name), samples: [] });
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    for (const lm of (m[2] ?? '').matchAll(LABEL)) labels[lm[1] as string] = (lm[2] as string).replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    const sample = { name: m[1] as string, labels, value };
    samples.push(sample);
    familyOf(sample.name)?.samples.push(sample);
  }
  return { families, duplicates, samples };
}

/** The value of the one sample named `name` whose labels include `labels`; undefined if none. */
export function sampleValue(exposition: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = exposition.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples match ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

// ---------------------------------------------------------------------------------------------
// The real Prometheus

export interface PrometheusOptions {
  /** host:port targets scraped at /metrics. */
  readonly targets: readonly string[];
  readonly scrapeIntervalSeconds?: number;
  readonly evaluationIntervalSeconds?: number;
  /** Absolute paths of rule files (recording and alerting rules). */
  readonly ruleFiles?: readonly string[];
  readonly jobName?: string;
  readonly readyTimeoutMs?: number;
}

export interface PromVectorItem {
  readonly metric: Record<string, string>;
  readonly value: [number, string];
}

export interface RunningPrometheus {
  readonly url: string;
  readonly dir: string;
  /** Instant query; the result vector (throws on an API error). */
  query(promql: string): Promise<PromVectorItem[]>;
  /** Raw GET of an API path, e.g. "/api/v1/alerts". */
  api<T = unknown>(path: string): Promise<T>;
  /** Polls `promql` until `predicate` holds, at most `timeoutMs`; returns the last result. */
  waitFor(promql: string, predicate: (result: PromVectorItem[]) => boolean, timeoutMs?: number): Promise<PromVectorItem[]>;
  stop(): Promise<void>;
}

export async function startPrometheus(options: PrometheusOptions): Promise<RunningPrometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'ctu-prometheus-'));
  const interval = options.scrapeIntervalSeconds ?? 1;
  const config = [
    'global:',
    `  scrape_interval: ${interval}s`,
    `  scrape_timeout: ${Math.max(1, interval)}s`,
    `  evaluation_interval: ${options.evaluationIntervalSeconds ?? interval}s`,
    ...(options.ruleFiles !== undefined && options.ruleFiles.length > 0 ? ['rule_files:', ...options.ruleFiles.map((f) => `  - ${JSON.stringify(f)}`)] : []),
    'scrape_configs:',
    `  - job_name: ${JSON.stringify(options.jobName ?? 'click-to-unlock')}`,
    '    metrics_path: /metrics',
    '    static_configs:',
    `      - targets: [${options.targets.map((t) => JSON.stringify(t)).join(', ')}]`,
    '',
  ].join('\n');
  writeFileSync(join(dir, 'prometheus.yml'), config);
  return startPrometheusIn(dir, options.readyTimeoutMs);
}

/**
 * Prometheus on `dir/prometheus.yml` (rule files may sit beside it), its TSDB in `dir/data`.
 * The directory is the caller's to fill and Prometheus's to keep: stop() removes it, and so does
 * a failed start.
 */
export async function startPrometheusIn(dir: string, readyTimeoutMs = 20_000): Promise<RunningPrometheus> {
  const configFile = join(dir, 'prometheus.yml');
  let lastError: unknown;
  // The free port can be taken between probing and binding; try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child = spawn(
      PROMETHEUS_BIN,
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
        '--storage.tsdb.retention.time=1h',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      if (stderr.length < 20_000) stderr += c.toString('utf8');
    });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitReady(child, url, readyTimeoutMs, () => stderr);
      return running(child, url, dir);
    } catch (error) {
      lastError = error;
      await killChild(child);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}

async function waitReady(child: ChildProcess, url: string, timeoutMs: number, stderr: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`prometheus exited (${child.exitCode ?? child.signalCode}): ${stderr().slice(-2000)}`);
    try {
      const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`prometheus not ready within ${timeoutMs} ms: ${stderr().slice(-2000)}`);
}

function running(child: ChildProcess, url: string, dir: string): RunningPrometheus {
  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(5_000) });
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`prometheus ${path}: ${body.error ?? res.status}`);
    return body.data;
  };
  const query = async (promql: string): Promise<PromVectorItem[]> => {
    const data = await api<{ resultType: string; result: PromVectorItem[] }>(`/api/v1/query?query=${encodeURIComponent(promql)}`);
    return data.resultType === 'vector' ? data.result : [];
  };
  let stopped: Promise<void> | undefined;
  return {
    url,
    dir,
    api,
    query,
    async waitFor(promql, predicate, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      let last: PromVectorItem[] = [];
      for (;;) {
        try {
          last = await query(promql);
          if (predicate(last)) return last;
        } catch {
          // transient: keep polling until the deadline
        }
        if (Date.now() > deadline) throw new Error(`"${promql}" did not satisfy the condition within ${timeoutMs} ms; last result ${JSON.stringify(last)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    stop() {
      stopped ??= (async () => {
        await killChild(child);
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** The first sample's value of an instant-query result as a number (NaN when empty). */
export function firstValue(result: readonly PromVectorItem[]): number {
  const v = result[0]?.value[1];
  return v === undefined ? Number.NaN : Number(v);
}
