/**
 * The sender: a worker in the webhook role that drains the outbox through the Graph API.
 *   claim due rows with a lease (one transaction, one fsync for the batch)
 *   → take a token from the global limiter per send
 *   → POST to Graph API
 *   → record the outcome through the writer thread (shares fsyncs with webhook traffic)
 * Per contact only one row is ever due at a time (see the claim query), so message k+1 is not
 * sent before message k was accepted. Leases that expire (a crash mid-send) become `unknown`.
 */
import type { GraphClient, SendResult } from './graph-client';
import { classifyGraphError } from './graph-errors';
import type { TokenBucket } from './limiter';
import type { Logger } from './log';
import { callbackDataFor } from './outbox';
import type { DeliveryStore, OutboxRow } from './store/delivery-store';
import type { Writer } from './writer';
import { drawJitter } from './writer-ops';

export interface SenderSettings {
  readonly maxInFlight: number;
  readonly claimBatch: number;
  readonly leaseMs: number;
  readonly idlePollMs: number;
  readonly housekeepingMs: number;
}

/**
 * A lease must outlast the longest send (the Graph client's total timeout) plus recording it.
 * It should not outlast it by much: after a crash, leased rows wait for it before they are
 * resolved, so a 20 s send timeout gets a 25 s lease rather than a fixed minute.
 */
export const LEASE_MARGIN_MS = 5_000;

export const DEFAULT_SENDER_SETTINGS: SenderSettings = {
  maxInFlight: 256,
  claimBatch: 128,
  leaseMs: 60_000,
  idlePollMs: 250,
  housekeepingMs: 1_000,
};

/** Hooks for tracing a send; the telemetry layer provides them. */
export interface SendTracer {
  start(row: OutboxRow, endpoint: string): { traceparent: string | null; end(result: SendResult): void };
}

export interface SenderDeps {
  /** Reads only (when is the next row due); every write goes through the writer. */
  readonly store: Pick<DeliveryStore, 'nextRunAt'>;
  readonly writer: Writer;
  readonly graph: GraphClient;
  readonly limiter: TokenBucket;
  readonly log: Logger;
  readonly clock?: () => number;
  /** Backoff jitter in [0, 1). */
  readonly random?: () => number;
  readonly observer?: { graphRequest?(outcome: 'ok' | 'error' | 'timeout', seconds: number): void };
  readonly tracer?: SendTracer;
  readonly settings?: Partial<SenderSettings>;
}

export class Sender {
  private readonly settings: SenderSettings;
  private readonly clock: () => number;
  private readonly random: () => number;
  private readonly inFlight = new Set<Promise<void>>();
  private running = false;
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private lastHousekeeping = 0;
  /** A send failed in a retryable way since the last success (Graph API down or throttling). */
  private outageSuspected = false;

  constructor(private readonly deps: SenderDeps) {
    const leaseMs = deps.graph.totalTimeoutMs !== undefined ? deps.graph.totalTimeoutMs + LEASE_MARGIN_MS : DEFAULT_SENDER_SETTINGS.leaseMs;
    this.settings = { ...DEFAULT_SENDER_SETTINGS, leaseMs, ...deps.settings };
    this.clock = deps.clock ?? Date.now;
    this.random = deps.random ?? Math.random;
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  /** New rows may be due: look now rather than at the next poll. */
  wake(): void {
    const wake = this.wakeUp;
    this.wakeUp = undefined;
    wake?.();
  }

  /**
   * Stops claiming; waits up to `graceMs` for in-flight sends to be recorded. Sends still
   * unanswered then are marked `unknown` (they may have reached Meta).
   */
  async stop(graceMs = 5_000): Promise<void> {
    this.stopping = true;
    this.wake();
    await this.loopDone;
    const deadline = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), graceMs).unref());
    const result = await Promise.race([Promise.all([...this.inFlight]).then(() => 'done' as const), deadline]);
    if (result === 'late') {
      try {
        const stranded = await this.deps.writer.submit({ op: 'strand', now: this.clock(), jitter: drawJitter(this.random) });
        this.deps.log.warn({ stranded }, 'sender stopped with sends in flight; marked unknown');
      } catch (error) {
        // Their leases expire and they become `unknown` at the next start all the same.
        this.deps.log.warn({ err: (error as Error).message }, 'sender stopped with sends in flight; could not mark them unknown');
      }
    }
    this.running = false;
  }

  /**
   * One pass: housekeeping when due, then claim and dispatch as many due rows as the
   * limiter and the in-flight cap allow. Returns the number dispatched.
   */
  async runOnce(): Promise<number> {
    const now = this.clock();
    if (now - this.lastHousekeeping >= this.settings.housekeepingMs) {
      this.lastHousekeeping = now;
      await this.deps.writer.submit({ op: 'housekeep', now, jitter: drawJitter(this.random) });
    }
    const room = Math.min(this.settings.maxInFlight - this.inFlight.size, this.settings.claimBatch);
    if (room <= 0) return 0;
    // The sender is woken after every commit; most commits (statuses, plain messages) queue
    // nothing, and a read here is far cheaper than a claim through the writer.
    const next = this.deps.store.nextRunAt();
    if (next === undefined || next > now) return 0;
    let tokens = 0;
    while (tokens < room && this.deps.limiter.tryTake()) tokens++;
    if (tokens === 0) return 0;
    let rows: OutboxRow[];
    try {
      rows = await this.deps.writer.submit({ op: 'claim', now, limit: tokens, leaseUntil: now + this.settings.leaseMs });
    } catch (error) {
      this.deps.limiter.refund(tokens);
      throw error;
    }
    if (rows.length < tokens) this.deps.limiter.refund(tokens - rows.length);
    for (const row of rows) {
      const sending = this.send(row).finally(() => {
        this.inFlight.delete(sending);
        this.wake();
      });
      this.inFlight.add(sending);
    }
    return rows.length;
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      let dispatched = 0;
      try {
        dispatched = await this.runOnce();
      } catch (error) {
        // The database is locked or full: back off and try again; nothing was claimed.
        this.deps.log.warn({ err: (error as Error).message }, 'sender could not claim; retrying');
      }
      if (this.stopping) break;
      if (dispatched > 0) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        continue;
      }
      await this.sleep(this.waitMs());
    }
  }

  private waitMs(): number {
    const limiterWait = this.deps.limiter.waitMs();
    if (limiterWait > 0) return limiterWait;
    if (this.inFlight.size >= this.settings.maxInFlight) return this.settings.idlePollMs;
    let next: number | undefined;
    try {
      next = this.deps.store.nextRunAt();
    } catch {
      next = undefined;
    }
    const untilNext = next === undefined ? this.settings.idlePollMs : next - this.clock();
    return Math.max(1, Math.min(this.settings.idlePollMs, untilNext));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.wakeUp = undefined;
        resolve();
      }, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private async send(row: OutboxRow): Promise<void> {
    const { graph, observer } = this.deps;
    const span = this.deps.tracer?.start(row, graph.endpoint);
    const started = performance.now();
    let result: SendResult;
    try {
      result = await graph.send(row.contact, JSON.parse(row.payload) as Record<string, unknown>, callbackDataFor(row.id));
    } catch (error) {
      result = { kind: 'not_sent', reason: (error as Error).message };
    }
    const seconds = (performance.now() - started) / 1000;
    observer?.graphRequest?.(result.kind === 'accepted' ? 'ok' : result.kind === 'ambiguous' ? 'timeout' : 'error', seconds);
    span?.end(result);
    const how = result.kind === 'error' ? classifyGraphError(result.error?.code, result.httpStatus) : undefined;
    // A retryable failure since the last success: the Graph API may be down or throttling us.
    if (result.kind === 'not_sent' || how?.disposition === 'retry') this.outageSuspected = true;
    const pullForward = result.kind === 'accepted' && this.outageSuspected;
    if (pullForward) this.outageSuspected = false;
    if (how?.alert === true) this.deps.log.error({ code: result.kind === 'error' ? result.error?.code : undefined, error_class: how.errorClass }, 'Graph API rejected our credentials');
    try {
      const { pulled } = await this.deps.writer.submit({
        op: 'sendOutcome',
        row,
        result,
        now: this.clock(),
        sendTrace: span?.traceparent ?? null,
        pullForward,
        jitter: drawJitter(this.random),
      });
      // Graph API answers again: retries still waiting out their backoff were made due now;
      // the limiter paces them, so the backlog drains at the configured rate.
      if (pulled > 0) this.deps.log.info({ pulled }, 'Graph API recovered: backed-off retries are due now');
    } catch (error) {
      // Not recorded: the lease will expire and the row becomes `unknown`, resolved by a status or resent once.
      this.deps.log.warn({ err: (error as Error).message, outbox_id: row.id }, 'send outcome not recorded');
    }
  }
}
