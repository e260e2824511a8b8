/**
 * Ingest benchmark: signed ~2 KB inbound-message webhooks at 50 connections against
 *   (a) the real service — `node dist/src/cli.js start`, synchronous=FULL as shipped, and
 *   (b) a bare node:http server that only verifies the HMAC and parses the JSON,
 * both as child processes, measured alternately (b, a, b, a, …) so that drift on a shared
 * machine hits both alike; the ratio a/b is taken per round, from runs side by side.
 * Every request carries a unique wamid and its own signature. Afterwards the service's
 * database must hold every message that got a 2xx (no loss).
 */
import autocannon from 'autocannon';
import Database from 'better-sqlite3';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, startChild, startServiceReady, waitForHttp, type Benchmark, type BenchOptions, type BenchResult, type Child, type Figure } from './harness';

export const SECRET = 'ctu-sandbox-app-secret'; // the sandbox App Secret the service uses when none is configured
export const CONNECTIONS = 50;
export const BODY_BYTES = 2048;
export const WARMUP_SECONDS = 3;
const MAX_REQUESTS = 8_000_000; // bounds the acknowledgement ledger (8 MB)
const CONTACTS = 5000;

const ISSUED = 1;
const ANSWERED_2XX = 2;
const ANSWERED_OTHER = 3;
const STORED = 4;

/**
 * A Meta inbound text message from a contact who came through a click-to-WhatsApp ad, the
 * way Meta sends it: `\/` and `\u00e9` escapes, a referral block, the contact's profile. The
 * text is padded so every body is exactly BODY_BYTES.
 */
function envelope(wamid: string, contact: string, timestamp: string, text: string): string {
  return (
    `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp",` +
    `"metadata":{"display_phone_number":"15550783881","phone_number_id":"100000000000001"},` +
    `"contacts":[{"profile":{"name":"Jos\\u00e9 Mar\\u00eda N\\u00fa\\u00f1ez"},"wa_id":"${contact}"}],` +
    `"messages":[{"from":"${contact}","id":"${wamid}","timestamp":"${timestamp}",` +
    `"referral":{"source_url":"https:\\/\\/fb.me\\/7Xk2pQ9wZ","source_id":"120212345678901234","source_type":"ad",` +
    `"body":"Unlock the full market briefing: six charts, three calls and the week\\u2019s watch-list, straight to your chat.",` +
    `"headline":"Premium briefing \\u2014 tap Unlock","media_type":"image",` +
    `"image_url":"https:\\/\\/scontent.xx.fbcdn.net\\/v\\/t45.1600-4\\/412345678_120212345678901234_n.png?stp=dst-png_s600x600&_nc_cat=1&ccb=1-7&_nc_sid=5f2048&_nc_ohc=Qm0cR3Jq2nUQ7kNvgF&_nc_ht=scontent.xx&oh=00_AYB3&oe=6760A1B2",` +
    `"ctwa_clid":"ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0-eM-GABDLOPaOdRMv-_zfUQ2a",` +
    `"welcome_message":{"text":"Hi! Tap Unlock to get today\\u2019s pack."}},` +
    `"text":{"body":"${text}"},"type":"text"}]},"field":"messages"}]}]}`
  );
}

const WAMID_PREFIX = 'wamid.HBgLMTY1MDU1NTAwMDAVAgASGBQ';
// Real wamids are effectively random, so their UNIQUE index takes random inserts; scramble the
// sequence number with an invertible multiply (mod 2^32) to get the same write pattern.
const SCRAMBLE = 0x9e3779b1;
const UNSCRAMBLE = inverseMod32(SCRAMBLE);
const wamidOf = (seq: number): string => `${WAMID_PREFIX}${(Math.imul(seq, SCRAMBLE) >>> 0).toString(16).toUpperCase().padStart(8, '0')}AA==`;
const seqOf = (wamid: string): number => Math.imul(Number.parseInt(wamid.slice(WAMID_PREFIX.length, WAMID_PREFIX.length + 8), 16), UNSCRAMBLE) >>> 0;

/** The multiplicative inverse of an odd number mod 2^32 (Newton's iteration doubles the correct bits). */
function inverseMod32(a: number): number {
  let x = a;
  for (let i = 0; i < 5; i++) x = Math.imul(x, 2 - Math.imul(a, x));
  return x >>> 0;
}
const contactOf = (seq: number): string => String(16505550000 + (seq % CONTACTS));

function textPadding(): string {
  const base = 'Hola, quiero el paquete completo. ';
  const probe = envelope(wamidOf(0), contactOf(0), '1700000000', '');
  const room = BODY_BYTES - Buffer.byteLength(probe);
  if (room < 0) throw new Error('the envelope is larger than BODY_BYTES');
  return base.repeat(Math.ceil(room / base.length)).slice(0, room);
}

/** Hands out unique signed bodies and remembers, per wamid, whether the answer was a 2xx. */
export class Ledger {
  private next = 0;
  readonly state = new Uint8Array(MAX_REQUESTS);
  private readonly text = textPadding();

  request(track: boolean): autocannon.Request {
    return {
      method: 'POST',
      path: '/webhook',
      setupRequest: (request, context) => {
        const seq = this.next++;
        if (seq >= MAX_REQUESTS) throw new Error('ingest bench: request ledger full');
        const timestamp = String(Math.floor(Date.now() / 1000));
        const body = Buffer.from(envelope(wamidOf(seq), contactOf(seq), timestamp, this.text), 'utf8');
        const signature = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
        if (track) this.state[seq] = ISSUED;
        // One request in flight per connection (no pipelining), so the context names the request answered next.
        context.seq = seq;
        return { ...request, body, headers: { ...request.headers, 'content-type': 'application/json', 'x-hub-signature-256': signature } };
      },
      onResponse: track
        ? (status, _body, context) => {
            this.state[context.seq as number] = status >= 200 && status < 300 ? ANSWERED_2XX : ANSWERED_OTHER;
          }
        : undefined,
    };
  }

  get issued(): number {
    return this.next;
  }
}

export interface Run {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly serverCpu: number; // cores busy in the server process
  readonly clientCpu: number; // cores busy in this (load generator) process
}

export async function measure(url: string, server: Child, ledger: Ledger, track: boolean, seconds: number): Promise<Run> {
  const cpu0 = server.cpuSeconds();
  const self0 = process.cpuUsage();
  const wall0 = performance.now();
  const result = await autocannon({ url, connections: CONNECTIONS, pipelining: 1, duration: seconds, timeout: 10, requests: [ledger.request(track)] });
  const wall = (performance.now() - wall0) / 1000;
  const self = process.cpuUsage(self0);
  return {
    rps: result['2xx'] / wall,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    serverCpu: (server.cpuSeconds() - cpu0) / wall,
    clientCpu: (self.user + self.system) / 1e6 / wall,
  };
}

export interface LedgerCheck {
  readonly stored: number;
  readonly acked: number;
  readonly lost: number;
  readonly storedUnanswered: number;
  readonly storedRejected: number;
  readonly unknown: number;
}

export function reconcile(ledger: Ledger, databasePath: string): LedgerCheck {
  const db = new Database(databasePath, { readonly: true, fileMustExist: true });
  let stored = 0;
  let unknown = 0;
  let storedUnanswered = 0;
  let storedRejected = 0;
  try {
    for (const wamid of db.prepare('SELECT wamid FROM inbound_messages').pluck().iterate() as IterableIterator<string>) {
      stored++;
      const seq = seqOf(wamid);
      const state = ledger.state[seq];
      if (!Number.isInteger(seq) || state === undefined || state === 0) unknown++;
      else if (state === ISSUED) storedUnanswered++;
      else if (state === ANSWERED_OTHER) storedRejected++;
      if (state !== undefined) ledger.state[seq] = state | STORED;
    }
  } finally {
    db.close();
  }
  let acked = 0;
  let lost = 0;
  for (let seq = 0; seq < ledger.issued; seq++) {
    const state = ledger.state[seq] as number;
    if ((state & 3) === ANSWERED_2XX) {
      acked++;
      if ((state & STORED) === 0) lost++;
    }
  }
  return { stored, acked, lost, storedUnanswered, storedRejected, unknown };
}

async function run(options: BenchOptions): Promise<BenchResult> {
  const { log } = options;
  const root = resolve(__dirname, '..', '..');
  const dir = mkdtempSync(join(tmpdir(), 'ctu-bench-ingest-'));
  const databasePath = join(dir, 'bench.db');
  const barePort = await freePort();
  const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dir, NODE_ENV: 'production' };
  const { child: service, webhookUrl: serviceUrl } = await startServiceReady('service', { ...env, DATABASE_PATH: databasePath });
  const bare = startChild('bare node:http', [join(root, 'dist', 'bench', 'bare-webhook.js')], { ...env, BENCH_PORT: String(barePort), BENCH_SECRET: SECRET });
  const bareUrl = `http://127.0.0.1:${barePort}/webhook`;
  const ledger = new Ledger();
  const service_: Run[] = [];
  const bare_: Run[] = [];
  let check: LedgerCheck | undefined;
  try {
    await waitForHttp(bareUrl, bare);
    log(`ingest: warm-up ${WARMUP_SECONDS} s each (service database ${databasePath})`);
    await measure(bareUrl, bare, ledger, false, WARMUP_SECONDS);
    await measure(serviceUrl, service, ledger, true, WARMUP_SECONDS);
    for (let round = 1; round <= options.rounds; round++) {
      const b = await measure(bareUrl, bare, ledger, false, options.seconds);
      bare_.push(b);
      const a = await measure(serviceUrl, service, ledger, true, options.seconds);
      service_.push(a);
      log(
        `ingest round ${round}/${options.rounds}: bare ${b.rps.toFixed(0)}/s p99 ${b.p99} ms | service ${a.rps.toFixed(0)}/s ` +
          `p50 ${a.p50} ms p99 ${a.p99} ms non-2xx ${a.non2xx} | ratio ${(a.rps / b.rps).toFixed(2)}`,
      );
    }
    const code = await service.stop();
    if (code !== 0) throw new Error(`the service exited with ${code} at shutdown:\n${service.output()}`);
    check = reconcile(ledger, databasePath);
  } finally {
    await Promise.all([service.stop(), bare.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }

  const figure = (label: string, unit: string, values: number[], extra: Pick<Figure, 'target' | 'digits'> = {}): Figure => ({ label, unit, values, ...extra });
  const non2xx = [...service_, ...bare_].reduce((n, r) => n + r.non2xx, 0);
  const errors = [...service_, ...bare_].reduce((n, r) => n + r.errors, 0);
  const maxInFlight = CONNECTIONS * (options.rounds + 1);
  return {
    method:
      `Signed ${BODY_BYTES}-byte inbound-message webhooks (each with a unique wamid and its own HMAC-SHA256 signature), ` +
      `${CONNECTIONS} connections, no pipelining, autocannon in the bench process. (a) the service: \`node dist/src/cli.js start\` ` +
      `(sandbox config, synchronous=FULL, fresh database in the OS temp dir); (b) a bare \`node:http\` server ` +
      `(\`dist/bench/bare-webhook.js\`) that verifies the HMAC and parses the JSON. Both are child processes, warmed up ` +
      `${WARMUP_SECONDS} s each, then measured alternately b, a for ${options.rounds} rounds of ${options.seconds} s; ` +
      `each ratio is a/b of one round. Requests/s counts 2xx answers per wall-clock second.`,
    figures: [
      figure('service (a) requests/s', 'req/s', service_.map((r) => r.rps), { digits: 0 }),
      figure('bare node:http (b) requests/s', 'req/s', bare_.map((r) => r.rps), { digits: 0 }),
      figure('ratio a/b (same round)', '×', service_.map((r, i) => r.rps / (bare_[i]?.rps ?? Number.NaN)), { target: { op: '>=', value: 0.6 }, digits: 2 }),
      figure('service p50 latency', 'ms', service_.map((r) => r.p50), { digits: 1 }),
      figure('service p99 latency', 'ms', service_.map((r) => r.p99), { target: { op: '<=', value: 10 }, digits: 1 }),
      figure('bare p50 latency', 'ms', bare_.map((r) => r.p50), { digits: 1 }),
      figure('bare p99 latency', 'ms', bare_.map((r) => r.p99), { digits: 1 }),
      figure('service non-2xx answers', 'count', service_.map((r) => r.non2xx), { target: { op: '==', value: 0 }, digits: 0 }),
      figure('service process CPU', 'cores', service_.map((r) => r.serverCpu), { digits: 2 }),
      figure('bare process CPU', 'cores', bare_.map((r) => r.serverCpu), { digits: 2 }),
      figure('load generator CPU during service runs', 'cores', service_.map((r) => r.clientCpu), { digits: 2 }),
      figure('load generator CPU during bare runs', 'cores', bare_.map((r) => r.clientCpu), { digits: 2 }),
    ],
    checks: [
      { label: 'no non-2xx answers, errors or timeouts (both servers)', ok: non2xx === 0 && errors === 0, detail: `${non2xx} non-2xx, ${errors} errors/timeouts` },
      {
        label: 'every 2xx from the service is a stored inbound message (no loss)',
        ok: check !== undefined && check.lost === 0 && check.unknown === 0 && check.storedRejected === 0,
        detail:
          check === undefined
            ? 'not checked'
            : `${check.acked} answered 2xx, ${check.stored} stored, ${check.lost} lost, ${check.storedRejected} stored despite a non-2xx, ${check.unknown} unknown`,
      },
      {
        label: 'stored = 2xx answers + requests cut off in flight when a run stopped',
        ok: check !== undefined && check.stored === check.acked + check.storedUnanswered && check.storedUnanswered <= maxInFlight,
        detail: check === undefined ? 'not checked' : `${check.stored} = ${check.acked} + ${check.storedUnanswered} (at most ${maxInFlight} can be in flight)`,
      },
    ],
  };
}

export const benchmark: Benchmark = { name: 'ingest', title: 'Ingest: signed webhooks vs a bare node:http baseline', run };
