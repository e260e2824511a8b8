/**
 * What every benchmark shares: the shape a benchmark module exports, the figures it reports
 * (every run's value, summarised as median with min–max), and the plumbing to run servers as
 * child processes on free loopback ports and stop them cleanly.
 *
 * A benchmark module `bench/<name>.ts` exports `benchmark: Benchmark` and is listed in run.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, totalmem } from 'node:os';
import { resolve } from 'node:path';

export interface BenchOptions {
  /** Measured rounds per figure (at least 3). */
  readonly rounds: number;
  /** Seconds per measured run, where a benchmark has timed runs. */
  readonly seconds: number;
  /** Progress lines for the terminal; never part of the results. */
  readonly log: (line: string) => void;
}

export interface Target {
  readonly op: '>=' | '<=' | '==';
  readonly value: number;
}

export interface Figure {
  readonly label: string;
  readonly unit: string;
  /** One value per measured run, in run order. */
  readonly values: readonly number[];
  readonly target?: Target;
  /** Decimals to print. */
  readonly digits?: number;
}

export interface BenchResult {
  /** Markdown paragraph on what was measured and how. */
  readonly method: string;
  readonly figures: readonly Figure[];
  /** Checks that must hold for the figures to count (e.g. "no 200 without a stored row"). */
  readonly checks: ReadonlyArray<{ readonly label: string; readonly ok: boolean; readonly detail: string }>;
}

export interface Benchmark {
  readonly name: string;
  readonly title: string;
  run(options: BenchOptions): Promise<BenchResult>;
}

export interface Summary {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

export function summarise(values: readonly number[]): Summary {
  if (values.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN };
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return { median, min: sorted[0] as number, max: sorted[sorted.length - 1] as number };
}

export function meets(value: number, target: Target): boolean {
  if (target.op === '>=') return value >= target.value;
  if (target.op === '<=') return value <= target.value;
  return value === target.value;
}

export interface Machine {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly node: string;
  readonly os: string;
}

export function machine(): Machine {
  const list = cpus();
  let os = `${process.platform} ${process.arch}`;
  try {
    const release = readFileSync('/etc/os-release', 'utf8').match(/^PRETTY_NAME="?([^"\n]+)"?/m);
    if (release?.[1] !== undefined) os = `${release[1]} (${process.arch})`;
  } catch {
    // not Linux, or no os-release: platform and arch are enough
  }
  return { cpu: list[0]?.model.trim() ?? 'unknown', cores: list.length, memoryGiB: totalmem() / 2 ** 30, node: process.version, os };
}

/** A port that was free a moment ago (bind to 0, read it, release it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface Child {
  readonly process: ChildProcess;
  readonly name: string;
  /** The last few KB of its stdout and stderr, for error messages. */
  output(): string;
  /** CPU seconds (user + system) the process has used so far, or NaN where /proc is missing. */
  cpuSeconds(): number;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

const OUTPUT_KEEP = 8192;
const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

export function startChild(name: string, args: readonly string[], env: NodeJS.ProcessEnv): Child {
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_KEEP);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    process: child,
    name,
    output: () => output,
    cpuSeconds: () => {
      try {
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
      } catch {
        return Number.NaN;
      }
    },
    stop: async (graceMs = 15_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export interface ServiceChild {
  readonly child: Child;
  readonly webhookUrl: string;
  readonly metricsUrl: string;
}

/**
 * The compiled service (`node dist/src/cli.js start`) on free loopback ports, with `env` as its
 * whole environment beside the ports. BENCH_SERVICE_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"
 * profiles it under load (one file per process). Wait for it with waitForHttp(webhookUrl, child).
 */
export async function startServiceChild(name: string, env: NodeJS.ProcessEnv): Promise<ServiceChild> {
  const cli = resolve(__dirname, '..', '..', 'dist', 'src', 'cli.js');
  const nodeArgs = (process.env.BENCH_SERVICE_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');
  const [webhookPort, wsPort, apiPort, metricsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const child = startChild(name, [...nodeArgs, cli, 'start'], {
    ...env,
    HOST: '127.0.0.1',
    WEBHOOK_PORT: String(webhookPort),
    WS_PORT: String(wsPort),
    API_PORT: String(apiPort),
    METRICS_PORT: String(metricsPort),
  });
  return { child, webhookUrl: `http://127.0.0.1:${webhookPort}/webhook`, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` };
}

/**
 * startServiceChild, then waitForHttp on its metrics port (bound last, so every port is bound
 * once it answers) and its webhook; started again on fresh ports (up to `attempts` times) when
 * it exited because a probed port was taken before it could bind it.
 */
export async function startServiceReady(name: string, env: NodeJS.ProcessEnv, attempts = 3): Promise<ServiceChild> {
  for (let attempt = 1; ; attempt++) {
    const service = await startServiceChild(name, env);
    try {
      await waitForHttp(service.metricsUrl, service.child);
      await waitForHttp(service.webhookUrl, service.child);
      return service;
    } catch (error) {
      await service.child.stop();
      if (attempt >= attempts || !service.child.output().includes('EADDRINUSE')) throw error;
    }
  }
}

/** Resolves once `url` answers any HTTP status; rejects after `timeoutMs` or if the child exits. */
export async function waitForHttp(url: string, child: Child, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.process.exitCode !== null) throw new Error(`${child.name} exited with ${child.process.exitCode}:\n${child.output()}`);
    const answered = await new Promise<boolean>((resolve) => {
      const req = request(url, { method: 'GET', timeout: 1000 }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
    if (answered) return;
    await sleep(100);
  }
  throw new Error(`${child.name} did not answer ${url} within ${timeoutMs} ms:\n${child.output()}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
