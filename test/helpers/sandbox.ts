/**
 * The sandbox as an operator runs it: the compiled CLI (`node bin/ctu.cjs start` without
 * META_ACCESS_TOKEN, so the built-in Meta simulator plays Graph API) on ephemeral loopback
 * ports, with its URLs read from the "click-to-unlock started" log line. The test process
 * drives it like Meta would: continuous signed taps at a bounded rate, taps with a wrong
 * signature, fault modes switched over the simulator's /_sim/faults, and a dashboard
 * WebSocket client. Every wait is bounded.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { SANDBOX_APP_SECRET } from '../../src/config';
import { driveTaps, syntheticContacts, type FaultSettings, type TapReport } from '../../src/simulator';
import { SANDBOX_KEY } from '../../src/store/key-store';
import { triggerOf, writeCatalogFile, type PackSpec } from './delivery';
import { makeTempDir, REPO_ROOT, startCli, testEnv, type CliProcess } from './webhook';

/** Two small packs, so each tap causes one or two sends and the box is not flooded with statuses. */
export const SANDBOX_PACKS: readonly PackSpec[] = [
  { id: 'solo', size: 1 },
  { id: 'duo', size: 2 },
];

export interface SandboxUrls {
  readonly webhook: string;
  readonly api: string;
  readonly ws: string;
  readonly metrics: string;
  readonly simulator: string;
}

export interface TapStream {
  /** Stops launching taps, waits for those in flight, and reports. */
  stop(): Promise<TapReport>;
}

export interface TapStreamOptions {
  readonly ratePerSecond: number;
  /** The stream ends by itself after this long, whether or not stop() is called. */
  readonly maxDurationMs: number;
  /** Sign with this secret instead of the sandbox's (a forged or misconfigured caller). */
  readonly appSecret?: string;
  /** Where the synthetic contact numbers start, so two streams never share a contact. */
  readonly firstContact?: number;
  readonly duplicateRate?: number;
}

/** Fault modes to change (see src/simulator/faults.ts); null clears one. */
export type FaultPatch = { [K in keyof FaultSettings]?: FaultSettings[K] | null };

export interface Sandbox {
  readonly urls: SandboxUrls;
  /** host:port of /metrics, as a Prometheus scrape target. */
  readonly metricsTarget: string;
  readonly triggers: readonly string[];
  readonly cli: CliProcess;
  /** Taps through the webhook at a steady rate until stopped or maxDurationMs. */
  tap(options: TapStreamOptions): TapStream;
  /** PATCH /_sim/faults: changes only the modes named; null clears one. */
  patchFaults(patch: FaultPatch): Promise<void>;
  /** POST /_sim/faults {}: every fault off. */
  clearFaults(): Promise<void>;
  /** A dashboard client on the feed's WebSocket, authenticated with the sandbox key. */
  connectWebSocket(): Promise<WebSocket>;
  /** Throws, with the end of its output, if the CLI has exited before stop(). */
  assertRunning(): void;
  stop(): Promise<void>;
}

const CLI_JS = join(REPO_ROOT, 'dist', 'src', 'cli.js');

/** Whether the compiled CLI exists. Missing under CI is an error, so CI cannot pass by skipping. */
export function sandboxBuilt(): boolean {
  if (existsSync(CLI_JS)) return true;
  if (process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false') {
    throw new Error('dist/src/cli.js is missing: run `npm run build` first (`npm test` does)');
  }
  return false;
}

/** Starts `ctu start` in sandbox mode on a fresh database with every port ephemeral. */
export async function startSandbox(extraEnv: Record<string, string | undefined> = {}): Promise<Sandbox> {
  const dir = makeTempDir('ctu-sandbox-');
  const env = testEnv(dir.dbPath, {
    // Sandbox defaults: no access token, the sandbox's own secret and verify token.
    META_ACCESS_TOKEN: undefined,
    META_APP_SECRET: undefined,
    META_VERIFY_TOKEN: undefined,
    HOST: '127.0.0.1',
    // The started line carries the URLs; per-request logging stays off at info.
    LOG_LEVEL: 'info',
    PACKS_FILE: writeCatalogFile(dir.path, SANDBOX_PACKS),
    RETENTION_DAYS: '0',
    ...extraEnv,
  });
  let cli: CliProcess;
  try {
    cli = await startCli(env, 20_000);
  } catch (error) {
    dir.remove();
    throw error;
  }
  const urls = startedUrls(cli.output());
  const sockets = new Set<WebSocket>();
  const streams = new Set<TapStream>();
  const triggers = SANDBOX_PACKS.map((p) => triggerOf(p.id));

  const faults = async (method: 'PATCH' | 'POST', body: unknown): Promise<void> => {
    const res = await fetch(`${urls.simulator}/_sim/faults`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(5_000),
    });
    if (!res.ok) throw new Error(`${method} /_sim/faults answered ${res.status}: ${await res.text()}`);
  };

  let stopped: Promise<void> | undefined;
  let exit: string | undefined;
  void cli.exited.then(({ code, signal }) => {
    if (stopped === undefined) exit = `code ${String(code)}, signal ${String(signal)}`;
  });
  return {
    urls,
    metricsTarget: new URL(urls.metrics).host,
    triggers,
    cli,
    tap(options) {
      const stream = startTapStream(urls.webhook, triggers, options);
      streams.add(stream);
      return {
        stop: () => {
          streams.delete(stream);
          return stream.stop();
        },
      };
    },
    patchFaults: (patch) => faults('PATCH', patch),
    clearFaults: () => faults('POST', {}),
    async connectWebSocket() {
      const ws = await openSocket(urls.ws, SANDBOX_KEY);
      sockets.add(ws);
      ws.once('close', () => sockets.delete(ws));
      return ws;
    },
    assertRunning() {
      if (exit !== undefined) throw new Error(`ctu start exited unexpectedly (${exit}):\n${cli.output().slice(-4_000)}`);
    },
    stop() {
      stopped ??= (async () => {
        await Promise.all([...streams].map((s) => s.stop()));
        for (const ws of sockets) ws.terminate();
        await stopChild(cli);
        dir.remove();
      })();
      return stopped;
    },
  };
}

function startTapStream(webhookUrl: string, triggers: readonly string[], o: TapStreamOptions): TapStream {
  const abort = new AbortController();
  const total = Math.ceil((o.ratePerSecond * o.maxDurationMs) / 1000);
  const report = driveTaps({
    webhookUrl,
    appSecret: o.appSecret ?? SANDBOX_APP_SECRET,
    // One contact per tap: every good tap starts a new unlock, so sends keep flowing.
    contacts: syntheticContacts(total, o.firstContact ?? 0),
    triggers,
    ratePerSecond: o.ratePerSecond,
    taps: total,
    duplicateRate: o.duplicateRate ?? 0,
    // A forged tap is answered 401 for good; retrying it would only multiply the rate.
    retries: o.appSecret === undefined ? 3 : 0,
    concurrency: 32,
    timeoutMs: 5_000,
    signal: abort.signal,
  });
  return {
    stop() {
      abort.abort();
      return report;
    },
  };
}

/** The URLs from the "click-to-unlock started" JSON log line. */
export function startedUrls(output: string): SandboxUrls {
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (parsed.msg !== 'click-to-unlock started') continue;
    const url = (name: keyof SandboxUrls): string => {
      const value = parsed[name];
      if (typeof value !== 'string') throw new Error(`the started line has no ${name} URL: ${line}`);
      return value;
    };
    return { webhook: url('webhook'), api: url('api'), ws: url('ws'), metrics: url('metrics'), simulator: url('simulator') };
  }
  throw new Error(`no "click-to-unlock started" line in the output:\n${output.slice(-4_000)}`);
}

function openSocket(url: string, key: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${key}` }, handshakeTimeout: 5_000 });
    ws.once('open', () => {
      ws.off('error', reject);
      // The feed pushes updates; nobody reads them here, and an error after open must not throw.
      ws.on('error', () => undefined);
      resolve(ws);
    });
    ws.once('error', reject);
  });
}

/** SIGTERM (graceful shutdown), SIGKILL after 10 s. */
async function stopChild(cli: CliProcess): Promise<void> {
  const { child } = cli;
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await cli.exited;
  clearTimeout(kill);
}
