/**
 * Synthetic contacts tapping Unlock, delivered to our webhook the way Meta delivers them:
 * signed inbound `messages` payloads — an interactive `button_reply` (id = the pack trigger)
 * or a template quick-reply `button` (payload = trigger) — with unique wamids and current
 * timestamps, some POSTed more than once with identical bytes (Meta's at-least-once
 * delivery), and retried while our webhook answers non-200.
 */
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { signBody } from '../signature';
import { SIMULATOR_DISPLAY_PHONE_NUMBER, SIMULATOR_PHONE_NUMBER_ID, SIMULATOR_WABA_ID } from './identity';
import { createRandom, randomBetween } from './prng';

export type TapKind = 'button_reply' | 'quick_reply';

export interface TapPayloadInput {
  readonly contact: string; // digits, the contact's wa_id
  readonly trigger: string;
  readonly kind?: TapKind; // default button_reply
  readonly wamid?: string; // default: a fresh unique one
  readonly timestampSeconds?: number; // default: now; older values make stale taps
  readonly title?: string; // the button's text, default "Unlock"
  readonly profileName?: string;
  readonly phoneNumberId?: string;
  readonly displayPhoneNumber?: string;
  readonly wabaId?: string;
}

export interface SignedPayload {
  readonly wamid: string;
  readonly body: Buffer;
  readonly signature: string; // the X-Hub-Signature-256 header value
}

const wamidPrefix = randomBytes(6);
let wamidCounter = 0;

/** A fresh inbound wamid, unique across processes (random prefix) and within one (counter). */
export function inboundWamid(): string {
  wamidCounter += 1;
  const id = Buffer.alloc(12);
  wamidPrefix.copy(id, 0);
  id.writeUIntBE(wamidCounter, 6, 6);
  return `wamid.HBgM${id.toString('base64url')}`;
}

/** `count` synthetic contacts: 1555000xxxx for the first 10,000, widening beyond (1555 + 7 digits). */
export function syntheticContacts(count: number, first = 0): string[] {
  if (!Number.isInteger(count) || count < 0 || first + count > 10_000_000) throw new RangeError('synthetic contacts: 0 to 10,000,000 numbers');
  return Array.from({ length: count }, (_, i) => `1555${String(first + i).padStart(7, '0')}`);
}

export function buildTapPayload(input: TapPayloadInput, appSecret: string): SignedPayload {
  const wamid = input.wamid ?? inboundWamid();
  const title = input.title ?? 'Unlock';
  const display = input.displayPhoneNumber ?? SIMULATOR_DISPLAY_PHONE_NUMBER;
  const tap =
    (input.kind ?? 'button_reply') === 'button_reply'
      ? { type: 'interactive', interactive: { type: 'button_reply', button_reply: { id: input.trigger, title } } }
      : { type: 'button', button: { payload: input.trigger, text: title } };
  const envelope = {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: input.wabaId ?? SIMULATOR_WABA_ID,
        changes: [
          {
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: display, phone_number_id: input.phoneNumberId ?? SIMULATOR_PHONE_NUMBER_ID },
              contacts: [{ profile: { name: input.profileName ?? `Sim ${input.contact.slice(-4)}` }, wa_id: input.contact }],
              messages: [
                {
                  context: { from: display, id: `wamid.teaser-${input.contact}` },
                  from: input.contact,
                  id: wamid,
                  timestamp: String(input.timestampSeconds ?? Math.floor(Date.now() / 1000)),
                  ...tap,
                },
              ],
            },
            field: 'messages',
          },
        ],
      },
    ],
  };
  const body = Buffer.from(JSON.stringify(envelope));
  return { wamid, body, signature: signBody(body, appSecret) };
}

export interface DriveTapsOptions {
  readonly webhookUrl: string;
  readonly appSecret: string;
  /** Who taps: a list of numbers, or a count of synthetic contacts. Taps go round-robin over them. */
  readonly contacts: readonly string[] | number;
  readonly triggers: readonly string[]; // each tap picks one at random
  readonly ratePerSecond: number;
  readonly durationMs?: number; // taps = rate × duration …
  readonly taps?: number; // … unless given
  readonly duplicateRate?: number; // share of taps POSTed more than once (default 0)
  readonly maxDeliveries?: number; // a duplicated tap is POSTed 2..maxDeliveries times (default 3)
  readonly quickReplyRate?: number; // share of taps sent as template quick-replies (default 0)
  readonly retries?: number; // per POST after a non-200 or network error (default 3)
  readonly retryDelayMs?: number; // doubled per retry (default 100)
  readonly concurrency?: number; // POSTs in flight (default 128); pacing waits when full
  readonly timeoutMs?: number; // per POST (default 10 s)
  readonly seed?: number;
  readonly signal?: AbortSignal; // stops launching taps; in-flight ones finish
  readonly onProgress?: (progress: TapProgress) => void;
  readonly progressIntervalMs?: number; // default 100
  readonly phoneNumberId?: string;
  readonly displayPhoneNumber?: string;
  readonly wabaId?: string;
}

export interface TapProgress {
  readonly total: number;
  readonly launched: number;
  readonly completed: number; // taps whose every delivery ended (200 or given up)
  readonly posts: number;
  readonly non200: number;
  readonly errors: number;
  readonly inFlight: number;
  readonly elapsedMs: number;
}

export interface TapReport extends TapProgress {
  readonly taps: number; // taps launched
  readonly duplicatePosts: number; // deliveries beyond the first per tap
  readonly retries: number;
  readonly undelivered: number; // deliveries that never got a 200
  readonly aborted: boolean;
  readonly achievedRatePerSecond: number;
  readonly latencyMs: { readonly p50: number; readonly p95: number; readonly p99: number; readonly max: number };
}

/** Plays `taps` (or rate × duration) taps at `ratePerSecond`, then resolves with what happened. */
export async function driveTaps(o: DriveTapsOptions): Promise<TapReport> {
  const contacts = typeof o.contacts === 'number' ? syntheticContacts(o.contacts) : o.contacts;
  if (contacts.length === 0) throw new RangeError('driveTaps: no contacts');
  if (o.triggers.length === 0) throw new RangeError('driveTaps: no triggers');
  if (!(o.ratePerSecond > 0)) throw new RangeError('driveTaps: ratePerSecond must be > 0');
  const total = o.taps ?? Math.max(1, Math.round((o.ratePerSecond * (o.durationMs ?? 1000)) / 1000));
  const url = new URL(o.webhookUrl);
  if (url.protocol !== 'http:') throw new Error(`driveTaps: webhook URL must be http:, got ${url.protocol}`);
  const concurrency = o.concurrency ?? 128;
  const retries = o.retries ?? 3;
  const retryDelayMs = o.retryDelayMs ?? 100;
  const maxDeliveries = Math.max(2, o.maxDeliveries ?? 3);
  const random = createRandom(o.seed);
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  const c = { launched: 0, completed: 0, posts: 0, non200: 0, errors: 0, duplicatePosts: 0, retries: 0, undelivered: 0, postsInFlight: 0 };
  const start = performance.now();

  const progress = (): TapProgress => ({
    total,
    launched: c.launched,
    completed: c.completed,
    posts: c.posts,
    non200: c.non200,
    errors: c.errors,
    inFlight: c.postsInFlight,
    elapsedMs: Math.round(performance.now() - start),
  });

  const postOnce = (payload: SignedPayload): Promise<number> =>
    new Promise((resolve) => {
      const t0 = performance.now();
      c.posts += 1;
      c.postsInFlight += 1;
      let settled = false;
      const done = (status: number): void => {
        if (settled) return;
        settled = true;
        c.postsInFlight -= 1;
        if (status === 200) latencies.push(performance.now() - t0);
        resolve(status);
      };
      const req = request({
        agent,
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: Number(url.port || 80),
        path: `${url.pathname}${url.search}`,
        method: 'POST',
        timeout: o.timeoutMs ?? 10_000,
        headers: { 'Content-Type': 'application/json', 'Content-Length': payload.body.length, 'X-Hub-Signature-256': payload.signature, 'User-Agent': 'facebookexternalua' },
      });
      req.on('response', (res) => {
        res.on('end', () => done(res.statusCode ?? 0));
        res.on('error', () => done(0));
        res.resume();
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', () => done(0));
      req.end(payload.body);
    });

  // Like Meta: anything but 200 is retried, with the same bytes and signature.
  const deliver = async (payload: SignedPayload): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      const status = await postOnce(payload);
      if (status === 200) return;
      if (status === 0) c.errors += 1;
      else c.non200 += 1;
      if (attempt >= retries) {
        c.undelivered += 1;
        return;
      }
      c.retries += 1;
      await new Promise((r) => setTimeout(r, retryDelayMs * 2 ** attempt));
    }
  };

  return new Promise<TapReport>((resolve) => {
    let aborted = o.signal?.aborted === true;
    let tapsInFlight = 0;
    let timer: NodeJS.Timeout | undefined;
    const progressTimer = o.onProgress !== undefined ? setInterval(() => o.onProgress?.(progress()), o.progressIntervalMs ?? 100) : undefined;
    const onAbort = (): void => {
      aborted = true;
      tick();
    };
    o.signal?.addEventListener('abort', onAbort, { once: true });

    const launch = (i: number): void => {
      const contact = contacts[i % contacts.length] as string;
      const trigger = o.triggers[Math.floor(random() * o.triggers.length)] as string;
      const kind: TapKind = random() < (o.quickReplyRate ?? 0) ? 'quick_reply' : 'button_reply';
      const payload = buildTapPayload(
        { contact, trigger, kind, ...(o.phoneNumberId !== undefined ? { phoneNumberId: o.phoneNumberId } : {}), ...(o.displayPhoneNumber !== undefined ? { displayPhoneNumber: o.displayPhoneNumber } : {}), ...(o.wabaId !== undefined ? { wabaId: o.wabaId } : {}) },
        o.appSecret,
      );
      const copies = random() < (o.duplicateRate ?? 0) ? randomBetween(random, 2, maxDeliveries) : 1;
      c.duplicatePosts += copies - 1;
      tapsInFlight += 1;
      void Promise.all(Array.from({ length: copies }, () => deliver(payload))).then(() => {
        tapsInFlight -= 1;
        c.completed += 1;
        tick();
      });
    };

    const tick = (): void => {
      clearTimeout(timer);
      timer = undefined;
      const elapsed = performance.now() - start;
      const due = Math.min(total, Math.floor((elapsed * o.ratePerSecond) / 1000) + 1);
      while (!aborted && c.launched < due && c.postsInFlight < concurrency) launch(c.launched++);
      if ((aborted || c.launched >= total) && tapsInFlight === 0) return finish();
      // When the pool is full, the next completion calls tick; otherwise wake for the next due tap.
      if (!aborted && c.launched < total && c.postsInFlight < concurrency) {
        timer = setTimeout(tick, Math.max(1, (c.launched * 1000) / o.ratePerSecond - elapsed));
      }
    };

    const finish = (): void => {
      clearInterval(progressTimer);
      o.signal?.removeEventListener('abort', onAbort);
      agent.destroy();
      const last = progress();
      o.onProgress?.(last);
      latencies.sort((a, b) => a - b);
      const pct = (q: number): number => round(latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil(q * latencies.length) - 1))] ?? 0);
      resolve({
        ...last,
        taps: c.launched,
        duplicatePosts: c.duplicatePosts,
        retries: c.retries,
        undelivered: c.undelivered,
        aborted,
        achievedRatePerSecond: last.elapsedMs > 0 ? round((c.launched * 1000) / last.elapsedMs) : c.launched,
        latencyMs: { p50: pct(0.5), p95: pct(0.95), p99: pct(0.99), max: round(latencies[latencies.length - 1] ?? 0) },
      });
    };

    tick();
  });
}

const round = (n: number): number => Math.round(n * 10) / 10;
