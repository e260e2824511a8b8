/**
 * Sender benchmark: the service (`node dist/src/cli.js start`, a child process) sends to the
 * Meta simulator (in the bench process, zero answer delay), three ways per round:
 *   (a) throughput with the limiter raised: the outbox is filled before the service starts
 *       (packs of 3 for many contacts) and status webhooks are turned off, so the figure is the
 *       sender's own: claim → Graph API POST → record, per contact in order;
 *   (b) limiter accuracy at SEND_RATE_PER_SECOND=80 with a backlog larger than the rate;
 *   (c) tap → first send latency: signed taps POSTed to the webhook at a steady pace, each
 *       measured from just before its POST to the simulator's acceptedAt of the pack's first
 *       message (same clock: both are in this process).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTapPayload, startSimulator, syntheticContacts, type SimSend, type Simulator } from '../src/simulator';
import { openDatabase } from '../src/store/database';
import { createDeliveryStore } from '../src/store/delivery-store';
import { sleep, startServiceReady, type ServiceChild, type Benchmark, type BenchOptions, type BenchResult, type Child, type Figure } from './harness';

const SECRET = 'bench-sender-app-secret';
const PACK_SIZE = 3;
const LIMITED_RATE = 80;
const WARMUP_MS = 1_000;
const TAPS_PER_SECOND = 100;
const THROUGHPUT_ROWS_PER_SECOND = 1_500; // outbox rows per configured second for (a)

interface Run {
  readonly sim: Simulator;
  readonly service: Child;
  readonly dir: string;
  readonly webhookUrl: string;
  stop(): Promise<number | null>;
}

function packMessage(position: number): Record<string, unknown> {
  return { type: 'text', text: { body: `bench#${position}` } };
}

function positionOf(send: SimSend): number {
  const body = (send.body as { text?: { body?: unknown } }).text?.body;
  return typeof body === 'string' ? Number(body.slice(body.indexOf('#') + 1)) : -1;
}

/** Fills a fresh database with `contacts` unlocked packs, every message due now. */
function prefill(databasePath: string, contacts: readonly string[]): void {
  const db = openDatabase(databasePath);
  try {
    const store = createDeliveryStore(db);
    const now = Date.now();
    db.transaction(() => {
      for (const contact of contacts) {
        const unlockId = store.insertUnlock(contact, 'bench', PACK_SIZE, now) as number;
        for (let position = 0; position < PACK_SIZE; position++) {
          store.insertOutbox({ kind: 'pack', unlockId, contact, packId: 'bench', position, payload: JSON.stringify(packMessage(position)), runAt: now, createdAt: now, traceContext: null });
        }
      }
    })();
  } finally {
    db.close();
  }
}

/** A simulator here and the service as a child process pointed at it. */
async function startRun(ratePerSecond: number, contactsToPrefill: readonly string[], quietStatuses: boolean): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'ctu-bench-sender-'));
  const databasePath = join(dir, 'bench.db');
  const packsFile = join(dir, 'packs.json');
  writeFileSync(packsFile, JSON.stringify({ packs: [{ id: 'bench', trigger: 'unlock:bench', messages: [0, 1, 2].map(packMessage) }] }));
  if (contactsToPrefill.length > 0) prefill(databasePath, contactsToPrefill);
  const sim = await startSimulator({
    appSecret: SECRET,
    seed: 1,
    statuses: { readProbability: 0 },
    ...(quietStatuses ? { faults: { dropStatus: { probability: 1 } } } : {}),
  });
  const cleanUp = async (): Promise<void> => {
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  };
  let started: ServiceChild;
  try {
    started = await startServiceReady('service', {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? dir,
      NODE_ENV: 'production',
      DATABASE_PATH: databasePath,
      PACKS_FILE: packsFile,
      LOG_LEVEL: 'warn',
      META_GRAPH_URL: sim.url,
      META_ACCESS_TOKEN: sim.accessToken,
      META_PHONE_NUMBER_ID: sim.phoneNumberId,
      META_APP_SECRET: SECRET,
      META_VERIFY_TOKEN: 'bench-verify-token',
      SEND_RATE_PER_SECOND: String(ratePerSecond),
      SEND_TIMEOUT: '10s',
    });
  } catch (error) {
    await cleanUp();
    throw error;
  }
  const { child: service, webhookUrl } = started;
  const stop = async (): Promise<number | null> => {
    const code = await service.stop();
    await cleanUp();
    return code;
  };
  sim.setWebhook(webhookUrl, SECRET);
  return { sim, service, dir, webhookUrl, stop };
}

interface Checked {
  ok: boolean;
  detail: string;
}

/** Every prefilled message sent once, per contact in position order. */
function checkSends(sim: Simulator, expected: number): Checked {
  const next = new Map<string, number>();
  let inversions = 0;
  for (const send of sim.sends) {
    const position = positionOf(send);
    if (position !== (next.get(send.waId) ?? 0)) inversions++;
    next.set(send.waId, position + 1);
  }
  const ok = sim.sends.length === expected && sim.duplicateSends === 0 && inversions === 0;
  return { ok, detail: `${sim.sends.length}/${expected} sent, ${sim.duplicateSends} duplicates, ${inversions} order inversions` };
}

/** (a) sends/s in the steady state: the middle 80% of the sends, by the simulator's clock. */
async function throughput(seconds: number): Promise<{ rate: number; check: Checked; exit: number | null }> {
  const rows = THROUGHPUT_ROWS_PER_SECOND * seconds;
  const run = await startRun(100_000, syntheticContacts(rows / PACK_SIZE), true);
  let exit: number | null = null;
  try {
    await run.sim.waitFor(() => run.sim.sends.length >= rows, Math.max(60_000, rows * 5));
    await sleep(200); // anything sent twice would show up now
  } finally {
    exit = await run.stop();
  }
  const at = run.sim.sends.map((s) => s.acceptedAt).sort((a, b) => a - b);
  const lo = Math.floor(at.length * 0.1);
  const hi = Math.floor(at.length * 0.9);
  const rate = ((hi - lo) * 1000) / Math.max(1, (at[hi] as number) - (at[lo] as number));
  return { rate, check: checkSends(run.sim, rows), exit };
}

/** (b) sends/s at the default limit, over `seconds` after a one-second warm-up. */
async function limiter(seconds: number): Promise<{ rate: number; check: Checked }> {
  const rows = Math.ceil((LIMITED_RATE * (seconds + 3)) / PACK_SIZE) * PACK_SIZE;
  const run = await startRun(LIMITED_RATE, syntheticContacts(rows / PACK_SIZE), true);
  let rate = Number.NaN;
  let backlogged = false;
  try {
    const first = await run.sim.waitFor(() => run.sim.sends[0], 30_000);
    const from = first.acceptedAt + WARMUP_MS;
    const to = from + seconds * 1000;
    await run.sim.waitFor(() => run.sim.sends.some((s) => s.acceptedAt >= to), seconds * 1000 + 30_000);
    rate = run.sim.sends.filter((s) => s.acceptedAt >= from && s.acceptedAt < to).length / seconds;
    backlogged = run.sim.sends.length < rows;
  } finally {
    await run.stop();
  }
  return { rate, check: { ok: backlogged, detail: backlogged ? 'the backlog lasted the whole window' : 'the backlog ran dry inside the window' } };
}

/** (c) tap → first send, in ms, for taps at a steady pace over `seconds`. */
async function tapToFirstSend(seconds: number): Promise<{ p50: number; p99: number; check: Checked }> {
  const run = await startRun(1_000, [], false);
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  const url = new URL(run.webhookUrl);
  const tappedAt = new Map<string, number>();
  let non200 = 0;
  const latencies: number[] = [];
  try {
    const contacts = syntheticContacts(TAPS_PER_SECOND * seconds);
    const posts: Array<Promise<void>> = [];
    const start = performance.now();
    for (let i = 0; i < contacts.length; i++) {
      const wait = start + (i * 1000) / TAPS_PER_SECOND - performance.now();
      if (wait > 0) await sleep(wait);
      const contact = contacts[i] as string;
      const payload = buildTapPayload({ contact, trigger: 'unlock:bench', phoneNumberId: run.sim.phoneNumberId }, SECRET);
      tappedAt.set(contact, Date.now());
      posts.push(
        new Promise<void>((done) => {
          const req = request({ agent, host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': payload.body.length, 'X-Hub-Signature-256': payload.signature } }, (res) => {
            if (res.statusCode !== 200) non200++;
            res.resume();
            res.on('end', done);
          });
          req.on('error', () => {
            non200++;
            done();
          });
          req.end(payload.body);
        }),
      );
    }
    await Promise.all(posts);
    await run.sim.waitFor(() => run.sim.sends.filter((s) => positionOf(s) === 0).length >= contacts.length - non200, 30_000);
    for (const send of run.sim.sends) {
      const tapped = tappedAt.get(send.waId);
      if (positionOf(send) === 0 && tapped !== undefined) latencies.push(send.acceptedAt - tapped);
    }
  } finally {
    agent.destroy();
    await run.stop();
  }
  latencies.sort((a, b) => a - b);
  const pct = (q: number): number => latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil(q * latencies.length) - 1))] ?? Number.NaN;
  return { p50: pct(0.5), p99: pct(0.99), check: { ok: non200 === 0 && latencies.length === tappedAt.size, detail: `${latencies.length}/${tappedAt.size} taps measured, ${non200} non-200` } };
}

async function run(options: BenchOptions): Promise<BenchResult> {
  const { log } = options;
  const rates: number[] = [];
  const limited: number[] = [];
  const limitErrors: number[] = [];
  const p50s: number[] = [];
  const p99s: number[] = [];
  const sendChecks: Checked[] = [];
  const backlogChecks: Checked[] = [];
  const tapChecks: Checked[] = [];
  const exits: Array<number | null> = [];
  for (let round = 1; round <= options.rounds; round++) {
    const a = await throughput(options.seconds);
    const b = await limiter(options.seconds);
    const c = await tapToFirstSend(options.seconds);
    rates.push(a.rate);
    limited.push(b.rate);
    limitErrors.push((Math.abs(b.rate - LIMITED_RATE) / LIMITED_RATE) * 100);
    p50s.push(c.p50);
    p99s.push(c.p99);
    sendChecks.push(a.check);
    backlogChecks.push(b.check);
    tapChecks.push(c.check);
    exits.push(a.exit);
    log(`sender round ${round}/${options.rounds}: ${a.rate.toFixed(0)} sends/s raised (${a.check.detail}) | ${b.rate.toFixed(1)} sends/s at limit ${LIMITED_RATE} | tap → first send p50 ${c.p50} ms p99 ${c.p99} ms`);
  }
  const figure = (label: string, unit: string, values: number[], extra: Pick<Figure, 'target' | 'digits'> = {}): Figure => ({ label, unit, values, ...extra });
  const all = (checks: Checked[]): Checked => ({ ok: checks.every((c) => c.ok), detail: checks.map((c) => c.detail).join('; ') });
  return {
    method:
      `The service is \`node dist/src/cli.js start\` (synchronous=FULL, fresh database in the OS temp dir per run) pointed at the Meta ` +
      `simulator in the bench process (zero answer delay, loopback). (a) ${THROUGHPUT_ROWS_PER_SECOND} × seconds outbox rows ` +
      `(packs of ${PACK_SIZE}, one contact per pack) are written before the service starts, with SEND_RATE_PER_SECOND=100000 and ` +
      `status webhooks turned off; sends/s is taken over the middle 80% of the sends by the simulator's acceptedAt. (b) The same ` +
      `with SEND_RATE_PER_SECOND=${LIMITED_RATE} and a backlog longer than the window: sends per second over the run's seconds ` +
      `after a 1 s warm-up. (c) Signed taps at ${TAPS_PER_SECOND}/s for the run's seconds, statuses on: each from just before ` +
      `its POST to the simulator's acceptedAt of the pack's first message.`,
    figures: [
      figure('sends/s, limiter raised', 'sends/s', rates, { target: { op: '>=', value: 1000 }, digits: 0 }),
      figure(`sends/s at SEND_RATE_PER_SECOND=${LIMITED_RATE}`, 'sends/s', limited, { digits: 1 }),
      figure(`limiter error at ${LIMITED_RATE}/s`, '%', limitErrors, { target: { op: '<=', value: 3 }, digits: 2 }),
      figure('tap → first send p50', 'ms', p50s, { digits: 0 }),
      figure('tap → first send p99', 'ms', p99s, { digits: 0 }),
    ],
    checks: [
      { label: 'every prefilled message sent exactly once, in order per contact', ...all(sendChecks) },
      { label: 'the limited runs stayed backlogged through the window', ...all(backlogChecks) },
      { label: 'every tap answered 200 and reached its first send', ...all(tapChecks) },
      { label: 'the service stopped cleanly (exit 0) after the throughput runs', ok: exits.every((e) => e === 0), detail: `exit codes ${exits.join(', ')}` },
    ],
  };
}

export const benchmark: Benchmark = { name: 'sender', title: 'Sender: throughput, limiter accuracy and tap → first send against the Meta simulator', run };
