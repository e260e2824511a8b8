/**
 * Helpers for the operations tests (test/ops-*.test.ts): the compiled CLI on free ports, other
 * `ctu` commands as child processes, signed webhook events and a bounded load of POSTs.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, postSigned, REPO_ROOT, startCli, TEST_SECRET, TEST_VERIFY_TOKEN, type CliProcess } from './helpers/webhook';

export function requireBuild(): void {
  if (!existsSync(join(REPO_ROOT, 'dist', 'src', 'cli.js'))) throw new Error('dist/src/cli.js is missing: run `npm run build` first (`npm test` does)');
}

/** A sandbox environment on free ports (doctor and restore need the real port numbers). */
export async function cliEnv(dbPath: string, extra: Record<string, string> = {}): Promise<Record<string, string>> {
  return {
    DATABASE_PATH: dbPath,
    META_APP_SECRET: TEST_SECRET,
    META_VERIFY_TOKEN: TEST_VERIFY_TOKEN,
    HOST: '127.0.0.1',
    WEBHOOK_PORT: String(await freePort()),
    WS_PORT: String(await freePort()),
    API_PORT: String(await freePort()),
    METRICS_PORT: String(await freePort()),
    LOG_LEVEL: 'info',
    RETENTION_DAYS: 'off',
    ...extra,
  };
}

/** Starts `ctu start`; on a port taken between probe and bind, tries again with fresh ports. */
export async function startService(dbPath: string, extra: Record<string, string> = {}, started: CliProcess[] = []): Promise<{ cli: CliProcess; env: Record<string, string> }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const env = await cliEnv(dbPath, extra);
    try {
      const cli = await startCli(env);
      started.push(cli);
      return { cli, env };
    } catch (error) {
      lastError = error;
      if (!String(error).includes('EADDRINUSE')) break;
    }
  }
  throw lastError;
}

export async function stopService(cli: CliProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
  const started = Date.now();
  if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill(signal);
  const exit = await cli.exited;
  return { ...exit, ms: Date.now() - started };
}

export function killAll(clis: readonly CliProcess[]): void {
  for (const cli of clis) if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL');
}

export interface CtuRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `node bin/ctu.cjs <args>` with exactly `env` (plus PATH/HOME); killed after `timeoutMs`. */
export function runCtu(args: readonly string[], env: Record<string, string>, timeoutMs = 30_000): Promise<CtuRun> {
  const childEnv: Record<string, string> = {};
  for (const key of ['PATH', 'HOME', 'TMPDIR', 'LANG']) {
    const value = process.env[key];
    if (value !== undefined) childEnv[key] = value;
  }
  Object.assign(childEnv, env);
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'ctu.cjs'), ...args], { cwd: REPO_ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A signed Meta callback with one inbound text message; `at` is Meta's timestamp (ms). */
export function inboundEvent(wamid: string, at = Date.now(), padding = 0): string {
  const text = { body: `event ${wamid}${padding > 0 ? ' ' + 'x'.repeat(padding) : ''}` };
  const message = { from: '16505551234', id: wamid, timestamp: String(Math.floor(at / 1000)), type: 'text', text };
  return JSON.stringify({ object: 'whatsapp_business_account', entry: [{ id: '1', changes: [{ field: 'messages', value: { messages: [message] } }] }] });
}

export interface Load {
  /** wamids answered 200 so far. */
  readonly acked: string[];
  readonly answers: Map<number, number>;
  sent(): number;
  /** Stops the posters and waits for the requests in flight. */
  stop(): Promise<void>;
}

/** `concurrency` posters sending distinct events until stopped (or `maxPosts`); every answer counted. */
export function startLoad(url: string, prefix: string, concurrency = 8, maxPosts = 200_000, padding = 0): Load {
  const acked: string[] = [];
  const answers = new Map<number, number>();
  let next = 0;
  let running = true;
  const worker = async (): Promise<void> => {
    while (running && next < maxPosts) {
      const wamid = `wamid.${prefix}.${next++}`;
      try {
        const answer = await postSigned(url, inboundEvent(wamid, Date.now(), padding), TEST_SECRET, { timeoutMs: 10_000 });
        answers.set(answer.status, (answers.get(answer.status) ?? 0) + 1);
        if (answer.status === 200) acked.push(wamid);
      } catch {
        answers.set(0, (answers.get(0) ?? 0) + 1); // connection refused or reset: not acknowledged
      }
    }
  };
  const workers = Array.from({ length: concurrency }, () => worker());
  return {
    acked,
    answers,
    sent: () => next,
    stop: async () => {
      running = false;
      await Promise.all(workers);
    },
  };
}

export function waitFor(condition: () => boolean, timeoutMs: number, stepMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (condition()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`condition not met within ${timeoutMs} ms`));
      setTimeout(poll, stepMs);
    };
    poll();
  });
}
