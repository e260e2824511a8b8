/**
 * The fault suite's rig: the compiled CLI (`ctu start`) as a child process that can be
 * SIGKILLed, a Meta simulator in THIS process (so its send log survives every kill), and a
 * Meta stand-in that POSTs signed taps and redelivers each one until it gets a 200, as Meta
 * does. Plus /proc readers for the soak. Loopback only; every wait is bounded.
 */
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { buildTapPayload, startSimulator, type Simulator, type SimulatorOptions } from '../../src/simulator';
import { simEnv, sleep, writeCatalogFile, type PackSpec } from '../helpers/delivery';
import { makeTempDir, startCli, TEST_SECRET, testEnv, type CliProcess, type TempDir } from '../helpers/webhook';

/** FAULTS_LONG=1 (what `npm run test:faults` sets) selects the long parameters. */
export const LONG = process.env.FAULTS_LONG === '1';

/** A positive number from the environment (to shorten or stretch a long run), else `fallback`. */
export function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!(value > 0)) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return value;
}

export interface FaultRig {
  readonly sim: Simulator;
  readonly dir: TempDir;
  readonly env: Record<string, string | undefined>;
  /** The CLI started last (alive or not). */
  readonly cli: CliProcess | undefined;
  /** Starts the CLI and points the simulator's status webhooks at it. */
  start(): Promise<CliProcess>;
  /** SIGKILLs the running CLI and waits until it is gone. */
  kill(): Promise<void>;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** Kills whatever still runs, closes the simulator, removes the directory. */
  dispose(): Promise<void>;
}

export interface RigOptions {
  readonly packs: readonly PackSpec[];
  readonly sim?: SimulatorOptions;
  readonly env?: Record<string, string | undefined>;
}

export async function startRig(options: RigOptions): Promise<FaultRig> {
  // A long run sends far more than the default log keeps; the checker needs every send.
  const sim = await startSimulator({ appSecret: TEST_SECRET, logLimit: 5_000_000, ...options.sim });
  const dir = makeTempDir('ctu-faults-');
  const env = testEnv(dir.dbPath, simEnv(sim, { LOG_LEVEL: 'info', PACKS_FILE: writeCatalogFile(dir.path, options.packs), ...options.env }));
  const all: CliProcess[] = [];
  let cli: CliProcess | undefined;
  const alive = (c: CliProcess): boolean => c.child.exitCode === null && c.child.signalCode === null;
  return {
    sim,
    dir,
    env,
    get cli() {
      return cli;
    },
    start: async () => {
      cli = await startCli(env, 30_000);
      all.push(cli);
      sim.setWebhook(cli.url, TEST_SECRET);
      return cli;
    },
    kill: async () => {
      if (cli === undefined || !alive(cli)) return;
      cli.child.kill('SIGKILL');
      await cli.exited;
    },
    stop: async () => {
      if (cli === undefined) return null;
      if (alive(cli)) cli.child.kill('SIGTERM');
      return (await cli.exited).code;
    },
    dispose: async () => {
      for (const c of all) if (alive(c)) c.child.kill('SIGKILL');
      await Promise.all(all.map((c) => c.exited));
      await sim.close();
      dir.remove();
    },
  };
}

/** The URL of one listener from the CLI's "started" log line (`api`, `ws`, `metrics`, …). */
export function listenerUrl(cli: CliProcess, name: string): string {
  for (const line of cli.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      if (parsed.msg === 'click-to-unlock started' && typeof parsed[name] === 'string') return parsed[name];
    } catch {
      // not a log line
    }
  }
  throw new Error(`no ${name} URL in the CLI's output:\n${cli.output().slice(-2000)}`);
}

export interface Latency {
  readonly at: number; // Date.now() when the answer came
  readonly ms: number;
  readonly status: number; // 0: no answer (connection refused, reset, timeout)
}

export interface Tap {
  readonly contact: string;
  readonly wamid: string;
  readonly body: Buffer;
  readonly signature: string;
}

/**
 * Meta's side of the webhook: every tap is POSTed until the webhook answers 200, with the
 * same bytes and signature each time (at-least-once), backing off between tries. While the
 * service is down (`target` undefined or refusing), taps wait and are retried.
 */
export class MetaRedelivery {
  target: string | undefined;
  readonly acked = new Map<string, number>(); // contact → when the 200 came
  readonly latencies: Latency[] = [];
  posts = 0;
  redeliveries = 0;
  private readonly waiting = new Set<Tap>();
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 256 });
  private closed = false;

  constructor(private readonly timeoutMs = 5_000) {}

  /** Taps not yet acknowledged. */
  get unacknowledged(): number {
    return this.waiting.size;
  }

  deliver(tap: Tap): void {
    this.waiting.add(tap);
    void this.attempt(tap, 0);
  }

  /** Resolves once every tap got its 200; rejects after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.waiting.size > 0) {
      if (Date.now() > deadline) throw new Error(`${this.waiting.size} taps still unacknowledged after ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  close(): void {
    this.closed = true;
    this.agent.destroy();
  }

  private async attempt(tap: Tap, tries: number): Promise<void> {
    if (this.closed) return;
    const url = this.target;
    const status = url === undefined ? 0 : await this.post(url, tap);
    if (status === 200) {
      this.acked.set(tap.contact, Date.now());
      this.waiting.delete(tap);
      return;
    }
    this.redeliveries += 1;
    await sleep(Math.min(1_000, 25 * 2 ** Math.min(tries, 6)));
    return this.attempt(tap, tries + 1);
  }

  private post(url: string, tap: Tap): Promise<number> {
    this.posts += 1;
    const started = performance.now();
    return new Promise((resolve) => {
      let settled = false;
      const done = (status: number): void => {
        if (settled) return;
        settled = true;
        this.latencies.push({ at: Date.now(), ms: performance.now() - started, status });
        resolve(status);
      };
      const req = request(url, {
        method: 'POST',
        agent: this.agent,
        headers: { 'content-type': 'application/json', 'content-length': tap.body.length, 'x-hub-signature-256': tap.signature },
      });
      req.setTimeout(this.timeoutMs, () => req.destroy(new Error('timed out')));
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => done(res.statusCode ?? 0));
        res.on('error', () => done(0));
      });
      req.on('error', () => done(0));
      req.end(tap.body);
    });
  }
}

/**
 * Calls `launch(i)` `ratePerSecond` times a second until `signal` aborts (or `limit` taps),
 * catching up after a slow turn of the event loop rather than drifting.
 */
export async function pace(ratePerSecond: number, signal: AbortSignal, launch: (i: number) => void, limit = Number.MAX_SAFE_INTEGER): Promise<number> {
  const started = performance.now();
  let launched = 0;
  while (!signal.aborted && launched < limit) {
    const due = Math.min(limit, Math.floor(((performance.now() - started) * ratePerSecond) / 1000) + 1);
    while (launched < due) launch(launched++);
    await sleep(Math.max(1, Math.min(20, 1000 / ratePerSecond)));
  }
  return launched;
}

/** Nearest-rank percentile of `values` (need not be sorted); NaN when empty. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

export interface ProcessSample {
  readonly at: number;
  readonly rssBytes: number;
  /** Descriptors that are not sockets: files, pipes, event fds. A leak shows here. */
  readonly openFiles: number;
  /** Sockets: these follow the load (keep-alive connections of the clients), not a leak. */
  readonly sockets: number;
  readonly walBytes: number;
}

/** RSS (VmRSS in /proc/<pid>/status), open descriptors (/proc/<pid>/fd) and the WAL file's size. */
function descriptors(pid: number): { files: number; sockets: number } {
  let files = 0;
  let sockets = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target = '';
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed between the listing and the look
    }
    if (target.startsWith('socket:')) sockets++;
    else files++;
  }
  return { files, sockets };
}

export function sampleProcess(pid: number, dbPath: string): ProcessSample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  let walBytes = 0;
  try {
    walBytes = statSync(`${dbPath}-wal`).size;
  } catch {
    // no WAL file at this instant (checkpointed and removed): zero bytes
  }
  const fds = descriptors(pid);
  return { at: Date.now(), rssBytes: Number(kib) * 1024, openFiles: fds.files, sockets: fds.sockets, walBytes };
}

/** /proc exists (Linux): the soak cannot measure anything without it. */
export function hasProc(): boolean {
  try {
    return statSync('/proc/self/status').isFile();
  } catch {
    return false;
  }
}

export const MB = 1024 * 1024;

/** One line of figures on stdout, greppable as `faults:<scenario>` for docs/reliability.md. */
export function report(scenario: string, figures: Record<string, unknown>): void {
  console.info(`faults:${scenario} ${JSON.stringify({ long: LONG, ...figures })}`);
}

/**
 * One steady stream of signed Unlock taps (one new contact each) handed to the Meta stand-in,
 * which redelivers each until it gets a 200. Resolves with the number launched.
 */
export function tapStream(meta: MetaRedelivery, phoneNumberId: string, trigger: string, ratePerSecond: number, signal: AbortSignal, contacts: readonly string[]): Promise<number> {
  return pace(
    ratePerSecond,
    signal,
    (i) => {
      const contact = contacts[i] as string;
      const payload = buildTapPayload({ contact, trigger, phoneNumberId }, TEST_SECRET);
      meta.deliver({ contact, wamid: payload.wamid, body: payload.body, signature: payload.signature });
    },
    contacts.length,
  );
}
