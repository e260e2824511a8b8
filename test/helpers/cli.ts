/**
 * The compiled CLI as child processes (run `npm run build` first; `npm test` does):
 * `ctu start` on free ports, retried when a port is taken between probe and bind, and other
 * `ctu` commands run to completion. Loopback only; every wait is bounded.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cliChildEnv, freePort, REPO_ROOT, startCli, TEST_SECRET, TEST_VERIFY_TOKEN, type CliProcess } from './webhook';

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
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'ctu.cjs'), ...args], { cwd: REPO_ROOT, env: cliChildEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
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
