/**
 * The compiled CLI (`node bin/ctu.cjs start`, sandbox with its built-in Meta simulator) as a
 * child process for the end-to-end telemetry tests: fresh database, ephemeral ports, the
 * /metrics URL read from its "started" log line, and bounded waits on its database.
 */
import Database from 'better-sqlite3';
import { startCli, makeTempDir, testEnv, type CliProcess, type TempDir } from './webhook';

export interface TelemetryCli {
  readonly cli: CliProcess;
  readonly webhookUrl: string;
  readonly metricsUrl: string;
  /** The REST API's base, ending in /api. */
  readonly apiUrl: string;
  /** host:port of METRICS_PORT, for a Prometheus scrape target. */
  readonly metricsTarget: string;
  /** The built-in simulator's base URL (its control surface is under /_sim/). */
  readonly simulatorUrl: string;
  readonly dir: TempDir;
  /** A read-only handle on the service's database (WAL: reads see every commit). */
  readonly db: Database.Database;
  /** The child's stdout and stderr so far. */
  output(): string;
  /**
   * SIGTERM (SIGKILL after 10 s), close the handle, remove the directory. Safe to call twice.
   * Rejects, with its output, when the child had already exited on its own: a crash mid-test.
   */
  stop(): Promise<void>;
}

/** Starts `ctu start` with the test secrets, LOG_LEVEL=info and `extra` on top. */
export async function startTelemetryCli(extra: Record<string, string | undefined>): Promise<TelemetryCli> {
  const dir = makeTempDir('ctu-telemetry-e2e-');
  let cli: CliProcess;
  try {
    cli = await startCli(testEnv(dir.dbPath, { LOG_LEVEL: 'info', ...extra }), 20_000);
  } catch (error) {
    dir.remove();
    throw error;
  }
  const metricsUrl = startedField(cli.output(), 'metrics');
  const db = new Database(dir.dbPath, { readonly: true, fileMustExist: true });
  let stopped: Promise<void> | undefined;
  return {
    cli,
    webhookUrl: cli.url,
    metricsUrl,
    apiUrl: startedField(cli.output(), 'api'),
    metricsTarget: new URL(metricsUrl).host,
    simulatorUrl: startedField(cli.output(), 'simulator'),
    dir,
    db,
    output: () => cli.output(),
    stop() {
      stopped ??= (async () => {
        db.close();
        const crashed = cli.child.exitCode !== null || cli.child.signalCode !== null;
        if (!crashed) {
          cli.child.kill('SIGTERM');
          const timer = setTimeout(() => cli.child.kill('SIGKILL'), 10_000);
          await cli.exited;
          clearTimeout(timer);
        }
        dir.remove();
        if (crashed) throw new Error(`ctu start exited (${cli.child.exitCode ?? cli.child.signalCode}) before the tests ended:\n${cli.output().slice(-4000)}`);
      })();
      return stopped;
    },
  };
}

function startedField(output: string, field: string): string {
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      if (parsed.msg === 'click-to-unlock started' && typeof parsed[field] === 'string') return parsed[field];
    } catch {
      // not a log line
    }
  }
  throw new Error(`no "${field}" in the started line:\n${output.slice(0, 4000)}`);
}

/** Replaces the simulator's fault settings (see src/simulator/faults.ts); `{}` clears them. */
export async function setFaults(simulatorUrl: string, faults: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${simulatorUrl}/_sim/faults`, { method: 'POST', body: JSON.stringify(faults), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(5_000) });
  if (res.status !== 200) throw new Error(`POST /_sim/faults: ${res.status} ${await res.text()}`);
}

export async function scrape(metricsUrl: string): Promise<string> {
  const res = await fetch(metricsUrl, { signal: AbortSignal.timeout(5_000) });
  if (res.status !== 200) throw new Error(`GET ${metricsUrl}: ${res.status}`);
  return res.text();
}

/** Polls `check` every 50 ms until it returns something other than undefined/false, at most `timeoutMs`. */
export async function waitUntil<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The # HELP/# TYPE lines and samples of the families whose names start with `prefix`. */
export function familiesText(exposition: string, prefix = 'unlock_'): string {
  const kept = exposition.split('\n').filter((line) => {
    if (line.startsWith('# HELP ') || line.startsWith('# TYPE ')) return line.slice(7).startsWith(prefix);
    return line !== '' && !line.startsWith('#') && line.startsWith(prefix);
  });
  return `${kept.join('\n')}\n`;
}

/** Every run of 7 or more digits in `text`: where a phone number would show up, whatever surrounds it. */
export function digitRuns(text: string): Set<string> {
  return new Set(text.match(/\d{7,}/g) ?? []);
}
