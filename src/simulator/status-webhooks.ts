/**
 * Status callbacks, played the way Meta plays them: after a send is accepted, `sent`, then
 * `delivered`, then (maybe) `read` — or `failed` with a code — are POSTed to our webhook,
 * signed with the App Secret over the exact bytes, in Meta's envelope.
 *
 * Each send's statuses form a chain: status k+1 is not POSTed before status k was answered
 * 200 (or given up on), so order holds unless a fault reorders it on purpose. Statuses of
 * different sends that are due together share one POST (up to `maxBatch`), and a POST that
 * is not answered 200 is retried with exponential backoff, at most `maxAttempts` times.
 * While the webhook is in an outage (or no URL is set yet) due statuses are held and go
 * out when it ends.
 */
import { Agent, request, type ClientRequest } from 'node:http';
import { signBody } from '../signature';
import { DueHeap } from './due-heap';
import type { FaultState, SimStatusName } from './faults';
import type { Random } from './prng';
import type { SendLog } from './send-log';
import { statusEnvelope, type BusinessIdentity, type PlannedStatus } from './status-payload';

export interface StatusBehaviour {
  readonly sentDelayMs: number; // after the send was accepted
  readonly deliveredDelayMs: number; // after sent
  readonly readDelayMs: number; // after delivered
  readonly jitterMs: number; // up to this much is added to each step, at random
  readonly readProbability: number; // the share of delivered messages that are read
  readonly failureProbability: number; // the share of sends that end `failed` instead of delivered
  readonly failureCode: number;
  readonly includePricing: boolean; // conversation + pricing objects on sent/delivered, as Meta sends them
}

export const DEFAULT_STATUS_BEHAVIOUR: StatusBehaviour = Object.freeze({
  sentDelayMs: 10,
  deliveredDelayMs: 100,
  readDelayMs: 1000,
  jitterMs: 0,
  readProbability: 0.8,
  failureProbability: 0,
  failureCode: 131026,
  includePricing: true,
});

export interface WebhookDeliveryOptions {
  readonly batchWindowMs: number; // wait this long after the first due status to gather others into one POST
  readonly maxBatch: number; // statuses per POST
  readonly concurrency: number; // POSTs in flight (keep-alive sockets)
  readonly maxAttempts: number; // per POST, then its statuses are given up
  readonly retryBaseMs: number; // backoff: retryBaseMs * 2^(attempt-1), capped at retryMaxMs
  readonly retryMaxMs: number;
  readonly timeoutMs: number; // per POST
}

export const DEFAULT_WEBHOOK_DELIVERY: WebhookDeliveryOptions = Object.freeze({
  batchWindowMs: 5,
  maxBatch: 100,
  concurrency: 8,
  maxAttempts: 6,
  retryBaseMs: 200,
  retryMaxMs: 5000,
  timeoutMs: 10_000,
});

export type { BusinessIdentity, StatusTarget } from './status-payload';

export interface StatusCounters {
  planned: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  gaveUp: number;
  webhookPosts: number;
  webhookFailures: number; // POSTs answered non-200 or not at all
  webhookRetries: number;
}

interface Planned extends PlannedStatus {
  due: number; // when to POST it (Date.now)
}

interface Chain {
  readonly items: Planned[];
  index: number;
}

interface Batch {
  readonly chains: Chain[];
  readonly body: Buffer;
  attempts: number;
}

export class StatusWebhooks {
  readonly counters: StatusCounters = { planned: 0, delivered: 0, dropped: 0, duplicated: 0, gaveUp: 0, webhookPosts: 0, webhookFailures: 0, webhookRetries: 0 };
  private behaviour: StatusBehaviour;
  private target: { host: string; port: number; path: string; secret: string } | undefined;
  private readonly heap = new DueHeap<Chain>((c) => (c.items[c.index] as Planned).due);
  private readonly held: Chain[] = [];
  private readonly queue: Batch[] = [];
  private readonly requests = new Set<ClientRequest>();
  private readonly retrying = new Map<NodeJS.Timeout, Batch>();
  private readonly agent: Agent;
  private timer: NodeJS.Timeout | undefined;
  private timerDue = Infinity;
  private inFlight = 0;
  private outstanding = 0;
  private closed = false;

  constructor(
    private readonly identity: BusinessIdentity,
    behaviour: StatusBehaviour,
    private readonly delivery: WebhookDeliveryOptions,
    private readonly faults: FaultState,
    private readonly log: SendLog,
    private readonly random: Random,
    private readonly clock: () => number,
  ) {
    this.behaviour = behaviour;
    this.agent = new Agent({ keepAlive: true, maxSockets: delivery.concurrency, scheduling: 'lifo' });
  }

  configure(patch: Partial<StatusBehaviour>): StatusBehaviour {
    this.behaviour = Object.freeze({ ...this.behaviour, ...patch });
    return this.behaviour;
  }

  get currentBehaviour(): StatusBehaviour {
    return this.behaviour;
  }

  /** Where statuses go. Plain http only: the simulator lives on loopback next to the service. */
  setTarget(webhookUrl: string, appSecret: string): void {
    const url = new URL(webhookUrl);
    if (url.protocol !== 'http:') throw new Error(`simulator webhook URL must be http:, got ${url.protocol}`);
    this.target = { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 80), path: `${url.pathname}${url.search}`, secret: appSecret };
    this.resume();
  }

  /** Status callbacks planned but not yet delivered or given up (held ones included). */
  get pending(): number {
    return this.outstanding;
  }

  /** Plans the statuses of one accepted send. `failureCode` forces a failure; `reorder` delivers newest first. */
  plan(target: PlannedStatus['target'], failureCode: number | undefined, reorder: boolean): void {
    if (this.closed) return;
    const b = this.behaviour;
    const jitter = (): number => (b.jitterMs > 0 ? Math.floor(this.random() * (b.jitterMs + 1)) : 0);
    const start = Date.now();
    const clockStart = this.clock();
    const code = failureCode ?? (b.failureProbability > 0 && this.random() < b.failureProbability ? b.failureCode : undefined);
    const steps: Array<[SimStatusName, number]> = [];
    const sentDue = start + b.sentDelayMs + jitter();
    steps.push(['sent', sentDue]);
    const secondDue = sentDue + b.deliveredDelayMs + jitter();
    if (code !== undefined) steps.push(['failed', secondDue]);
    else {
      steps.push(['delivered', secondDue]);
      if (b.readProbability > 0 && this.random() < b.readProbability) steps.push(['read', secondDue + b.readDelayMs + jitter()]);
    }
    let items: Planned[] = [];
    for (const [status, due] of steps) {
      this.counters.planned += 1;
      const copies = this.faults.copiesOfStatus(status, target.waId);
      if (copies === 0) this.counters.dropped += 1;
      if (copies > 1) this.counters.duplicated += copies - 1;
      const planned: Planned = { target, status, atMs: clockStart + (due - start), due, errorCode: status === 'failed' ? code : undefined };
      for (let i = 0; i < copies; i++) items.push({ ...planned });
    }
    if (reorder && items.length > 1) {
      // Out of order on the wire, not in time: everything has happened before the first POST.
      const last = Math.max(...items.map((p) => p.due));
      items = items.reverse().map((p) => ({ ...p, due: last }));
    }
    if (items.length === 0) return;
    this.outstanding += items.length;
    this.heap.push({ items, index: 0 });
    this.arm();
  }

  /** Sends held statuses (after an outage ends or a URL is set). */
  resume(): void {
    if (!this.canDeliver()) return;
    const held = this.held.splice(0);
    this.enqueue(held);
    this.arm();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    for (const t of this.retrying.keys()) clearTimeout(t);
    this.retrying.clear();
    for (const req of this.requests) req.destroy();
    this.requests.clear();
    this.heap.clear();
    this.held.length = 0;
    this.queue.length = 0;
    this.outstanding = 0;
    this.agent.destroy();
  }

  private canDeliver(): boolean {
    return !this.closed && this.target !== undefined && !this.faults.webhookOutage;
  }

  private arm(): void {
    const head = this.heap.peek();
    if (this.closed || head === undefined) return;
    const due = (head.items[head.index] as Planned).due + this.delivery.batchWindowMs;
    if (this.timer !== undefined && this.timerDue <= due) return;
    clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(() => this.fire(), Math.max(0, due - Date.now()));
  }

  private fire(): void {
    this.timer = undefined;
    this.timerDue = Infinity;
    const now = Date.now();
    const ready: Chain[] = [];
    for (let head = this.heap.peek(); head !== undefined && (head.items[head.index] as Planned).due <= now; head = this.heap.peek()) {
      ready.push(this.heap.pop() as Chain);
    }
    if (this.canDeliver()) this.enqueue(ready);
    else this.held.push(...ready);
    this.arm();
  }

  private enqueue(chains: Chain[]): void {
    for (let i = 0; i < chains.length; i += this.delivery.maxBatch) {
      const part = chains.slice(i, i + this.delivery.maxBatch);
      const due = part.map((c) => c.items[c.index] as Planned);
      this.queue.push({ chains: part, body: statusEnvelope(this.identity, due, this.behaviour.includePricing), attempts: 0 });
    }
    this.pump();
  }

  private pump(): void {
    while (this.inFlight < this.delivery.concurrency && this.queue.length > 0) {
      const batch = this.queue.shift() as Batch;
      if (!this.canDeliver()) {
        this.held.push(...batch.chains);
        continue;
      }
      this.post(batch);
    }
  }

  private post(batch: Batch): void {
    const target = this.target as NonNullable<StatusWebhooks['target']>;
    this.inFlight += 1;
    batch.attempts += 1;
    this.counters.webhookPosts += 1;
    let settled = false;
    const done = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      this.requests.delete(req);
      this.inFlight -= 1;
      if (!this.closed) this.finished(batch, ok);
    };
    const req = request({
      agent: this.agent,
      host: target.host,
      port: target.port,
      path: target.path,
      method: 'POST',
      timeout: this.delivery.timeoutMs,
      headers: {
        'Content-Type': 'application/json',
        'Content-Length': batch.body.length,
        'X-Hub-Signature-256': signBody(batch.body, target.secret),
        'User-Agent': 'facebookexternalua',
      },
    });
    this.requests.add(req);
    req.on('response', (res) => {
      res.on('error', () => done(false));
      res.on('end', () => done(res.statusCode === 200));
      res.resume();
    });
    req.on('timeout', () => req.destroy(new Error('webhook POST timed out')));
    req.on('error', () => done(false));
    req.end(batch.body);
  }

  private finished(batch: Batch, ok: boolean): void {
    if (ok) {
      const now = this.clock();
      for (const chain of batch.chains) {
        const p = chain.items[chain.index] as Planned;
        this.counters.delivered += 1;
        this.log.delivered({ wamid: p.target.wamid, status: p.status, recipient: p.target.waId, callbackData: p.target.callbackData, deliveredAt: now });
        this.advance(chain);
      }
    } else {
      this.counters.webhookFailures += 1;
      if (batch.attempts >= this.delivery.maxAttempts) {
        this.counters.gaveUp += batch.chains.length;
        for (const chain of batch.chains) this.advance(chain);
      } else {
        this.counters.webhookRetries += 1;
        const delay = Math.min(this.delivery.retryMaxMs, this.delivery.retryBaseMs * 2 ** (batch.attempts - 1));
        const timer = setTimeout(() => {
          this.retrying.delete(timer);
          this.queue.push(batch);
          this.pump();
        }, delay);
        this.retrying.set(timer, batch);
      }
    }
    this.pump();
  }

  private advance(chain: Chain): void {
    this.outstanding -= 1;
    chain.index += 1;
    const next = chain.items[chain.index];
    if (next === undefined) return;
    next.due = Math.max(next.due, Date.now());
    this.heap.push(chain);
    this.arm();
  }
}
