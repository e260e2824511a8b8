/**
 * Everything that writes, as plain-data operations the writer thread runs on its connection:
 *   ingest      one verified webhook POST (inbox, items, clicks, unlocks, outbox rows, statuses)
 *   claim       lease due outbox rows for the sender
 *   sendOutcome record what the Graph API answered for one claimed row
 *   housekeep   expired leases become `unknown`; unknowns past their wait are resent or given up
 *   strand      at shutdown, sends still in flight become `unknown`
 * Operations carry their own clock reading and jitter, so the thread never reads a clock and a
 * test's controlled clock rules both sides. Metrics and spans cannot be made in the thread;
 * what would have been observed is recorded as effects and replayed by the main thread once
 * the operation's transaction committed (so a rolled-back piece is never counted).
 */
import { randomBytes } from 'node:crypto';
import type { SendResult } from './graph-client';
import { AMBIGUOUS_TIMEOUT, classifyGraphError, NETWORK_FAILURE, parseRetryAfter } from './graph-errors';
import { createIngest, type IngestObserver, type IngestOutcome } from './ingest';
import { createOutbox, type DeliveryObserver, type OutboxSettings } from './outbox';
import type { Catalog } from './packs';
import type { Db } from './store/database';
import { createDeliveryStore, type OutboxRow } from './store/delivery-store';
import { createRollupStore } from './store/rollup-store';
import { createWebhookStore } from './store/webhook-store';
import { createUnlockHooks, type DeliveryTracer } from './unlock';

/**
 * The commit span's trace, so taps recorded in the thread continue it: `<trace-id>-<flags>`, the
 * 32 hex digits of the W3C trace id and the trace flags as two ("01" sampled). One string, not
 * an object: it crosses to the writer thread with every POST, and a string clones for less.
 */
export type TraceSeed = string;

/** The traceparent of span `spanId` in the seed's trace. */
export function seededTraceparent(seed: TraceSeed, spanId: string): string {
  return `00-${seed.slice(0, 32)}-${spanId}-${seed.slice(33)}`;
}

export type WriteOp =
  | { readonly op: 'ingest'; readonly body: Uint8Array; readonly secretIndex: number; readonly receivedAt: number; readonly trace: TraceSeed | null; readonly jitter: readonly number[] }
  | { readonly op: 'claim'; readonly now: number; readonly limit: number; readonly leaseUntil: number }
  | { readonly op: 'sendOutcome'; readonly row: OutboxRow; readonly result: SendResult; readonly now: number; readonly sendTrace: string | null; readonly pullForward: boolean; readonly jitter: readonly number[] }
  | { readonly op: 'housekeep'; readonly now: number; readonly jitter: readonly number[] }
  | { readonly op: 'strand'; readonly now: number; readonly jitter: readonly number[] };

export interface WriteResults {
  readonly ingest: IngestOutcome;
  readonly claim: OutboxRow[];
  readonly sendOutcome: { readonly pulled: number };
  readonly housekeep: number;
  readonly strand: number;
}

/**
 * One observation made while an operation ran: `[target, method, ...args]`, where target is
 * `d` (DeliveryObserver), `i` (IngestObserver) or `t` (tracer: `tap` with the span id chosen
 * here, `status` with the send's stored traceparent).
 */
export type Effect = readonly [target: 'd' | 'i' | 't', method: string, ...args: unknown[]];

export interface WriterSettings {
  readonly packs: Catalog['packs'];
  readonly maxTapAgeMs: number;
  readonly outbox: OutboxSettings;
}

/** How many jitter draws an operation carries; further draws in the same operation use Math.random. */
export const JITTER_DRAWS = 4;

export function drawJitter(random: () => number): number[] {
  const draws: number[] = [];
  for (let i = 0; i < JITTER_DRAWS; i++) draws.push(random());
  return draws;
}

const DELIVERY_METHODS = ['click', 'unlock', 'messageSent', 'messageStatus', 'sendAttempt', 'deadLetter', 'possibleDuplicate', 'clickToSent', 'clickToDelivered'] as const;
const INGEST_METHODS = ['item', 'unparseable'] as const;
// A method added to an observer interface but not listed above would be dropped silently in the
// thread: these fail to compile until the lists are complete.
const deliveryListed: Exclude<keyof DeliveryObserver, (typeof DELIVERY_METHODS)[number]> extends never ? true : never = true;
const ingestListed: Exclude<keyof IngestObserver, (typeof INGEST_METHODS)[number]> extends never ? true : never = true;
void deliveryListed;
void ingestListed;

function recorder<T>(target: Effect[0], methods: readonly string[], sink: () => Effect[]): T {
  const out: Record<string, (...args: unknown[]) => void> = {};
  for (const method of methods) out[method] = (...args: unknown[]) => void sink().push([target, method, ...args]);
  return out as T;
}

/** Binds the operations to a writable connection: the writer thread's. */
export function createWriteOps(db: Db, catalog: Catalog, settings: WriterSettings) {
  let effects: Effect[] = [];
  let jitter: readonly number[] = [];
  let trace: TraceSeed | null = null;
  const sink = (): Effect[] => effects;
  const random = (): number => {
    const [next, ...rest] = jitter;
    jitter = rest;
    return next ?? Math.random();
  };
  const observer = recorder<DeliveryObserver>('d', DELIVERY_METHODS, sink);
  const tracer: DeliveryTracer = {
    tap(packId, contact) {
      if (trace === null) return null;
      const spanId = randomBytes(8).toString('hex');
      effects.push(['t', 'tap', spanId, packId, contact]);
      return seededTraceparent(trace, spanId);
    },
    status(sendTraceparent, status, packId) {
      effects.push(['t', 'status', sendTraceparent, status, packId]);
    },
  };
  const webhookStore = createWebhookStore(db);
  const store = createDeliveryStore(db);
  const rollup = createRollupStore(db);
  const appendEvent = webhookStore.appendEvent;
  const outbox = createOutbox({ store, rollup, appendEvent, observer, random, settings: settings.outbox });
  const hooks = createUnlockHooks({ catalog, store, rollup, outbox, appendEvent, maxTapAgeMs: settings.maxTapAgeMs, observer, tracer });
  const ingest = createIngest(db, webhookStore, hooks, recorder<IngestObserver>('i', INGEST_METHODS, sink));

  function recordSend(op: Extract<WriteOp, { op: 'sendOutcome' }>): { pulled: number } {
    const { row, result, now } = op;
    switch (result.kind) {
      case 'accepted': {
        if (outbox.accepted(row, result.wamid, now, op.sendTrace)) observer.sendAttempt?.('accepted', 'none');
        // Graph API answers again: retries still waiting out their backoff become due now;
        // the limiter paces them, so the backlog drains at the configured rate.
        return { pulled: op.pullForward ? store.pullRetriesForward(now) : 0 };
      }
      case 'error': {
        const how = classifyGraphError(result.error?.code, result.httpStatus);
        const detail = `${result.error?.code ?? `HTTP ${result.httpStatus}`}: ${result.error?.message ?? how.meaning}`;
        outbox.failed(row, how, detail, result.error?.code ?? null, parseRetryAfter(result.retryAfter, now), now);
        return { pulled: 0 };
      }
      case 'not_sent':
        outbox.failed(row, NETWORK_FAILURE, result.reason, null, undefined, now);
        return { pulled: 0 };
      case 'ambiguous':
        outbox.ambiguous(row, `${AMBIGUOUS_TIMEOUT.meaning}: ${result.reason}`, now);
        return { pulled: 0 };
    }
  }

  function dispatch(op: WriteOp): unknown {
    switch (op.op) {
      case 'ingest':
        trace = op.trace;
        return ingest.record({ body: Buffer.from(op.body.buffer, op.body.byteOffset, op.body.byteLength), secretIndex: op.secretIndex, receivedAt: op.receivedAt });
      case 'claim':
        return store.claimDue(op.now, op.limit, op.leaseUntil);
      case 'sendOutcome':
        return recordSend(op);
      case 'housekeep':
        return outbox.recoverLeases(op.now) + outbox.resolveUnknowns(op.now);
      case 'strand': {
        let stranded = 0;
        for (const row of store.expiredLeases(Number.MAX_SAFE_INTEGER)) {
          outbox.ambiguous(row, 'service stopped during the send', op.now);
          stranded++;
        }
        return stranded;
      }
    }
  }

  /** Runs one operation (inside the caller's transaction); returns its value and what it observed. */
  function run(op: WriteOp): { value: unknown; effects: Effect[] } {
    effects = [];
    jitter = 'jitter' in op ? op.jitter : [];
    trace = null;
    try {
      const value = dispatch(op);
      return { value, effects };
    } finally {
      effects = [];
      trace = null;
    }
  }

  return { run };
}

export type WriteOps = ReturnType<typeof createWriteOps>;
