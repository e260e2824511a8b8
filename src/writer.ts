/**
 * The main thread's side of the writer thread: submits write operations, batching those made
 * in the same turn of the event loop into one message, and settles each promise when the
 * batch holding it has committed (or failed: StorageUnavailableError → 503, nothing written).
 * What an operation observed is replayed here, after the commit, into metrics and spans.
 *
 * If the thread dies, everything in flight is rejected as storage-unavailable (never a 200
 * without a commit) and a new thread is started; after repeated deaths it stays down and
 * every write answers 503 until the process is restarted.
 */
import { Worker } from 'node:worker_threads';
import { StorageUnavailableError, type BatchObserver } from './group-commit';
import type { IngestObserver } from './ingest';
import type { Logger } from './log';
import { RecentEvents, threadScript } from './threads';
import type { DeliveryObserver } from './outbox';
import type { Effect, TraceSeed, WriteOp, WriteResults, WriterSettings } from './writer-ops';
import type { FromWriter, ToWriter, WireResult, WriterThreadData } from './writer-thread';

export interface EffectTargets {
  readonly delivery?: DeliveryObserver;
  readonly ingest?: IngestObserver;
  /** Replays a tap span with the span id the thread stored, and status spans. */
  readonly tracer?: ReplayTracer;
}

export interface ReplayTracer {
  tap(spanId: string, packId: string | null, contact: string, context: unknown): void;
  status(sendTraceparent: string | null, status: string, packId: string | null, context: unknown): void;
}

export interface WriterOptions {
  readonly databasePath: string;
  readonly settings: WriterSettings;
  readonly log: Logger;
  readonly effects?: EffectTargets;
  readonly busyTimeoutMs?: number;
  readonly maxBatch?: number;
}

interface Waiter {
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  readonly context: unknown;
}

const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;

export class Writer {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, Waiter>();
  private outgoing: Array<readonly [number, WriteOp]> = [];
  private scheduled = false;
  /** Ops handed to the thread whose results have not come back. */
  private inThread = 0;
  private readonly observers: BatchObserver[] = [];
  private readonly afterCommit: Array<() => void> = [];
  private readonly restarts = new RecentEvents(RESTART_WINDOW_MS);
  private closing: Promise<void> | undefined;
  private down: string | undefined;

  private constructor(private readonly options: WriterOptions) {}

  /** Starts the thread; resolves once its connection is open. */
  static async start(options: WriterOptions): Promise<Writer> {
    const writer = new Writer(options);
    await writer.spawn();
    return writer;
  }

  private spawn(): Promise<void> {
    const data: WriterThreadData = {
      databasePath: this.options.databasePath,
      busyTimeoutMs: this.options.busyTimeoutMs ?? 1_000,
      maxBatch: this.options.maxBatch ?? 512,
      settings: this.options.settings,
    };
    const worker = new Worker(threadScript('writer-thread.js'), { workerData: data });
    this.worker = worker;
    return new Promise<void>((resolveReady, rejectReady) => {
      let ready = false;
      worker.on('message', (message: FromWriter) => {
        switch (message.type) {
          case 'ready':
            ready = true;
            this.options.log.debug({ priority: message.priority }, 'writer thread ready');
            resolveReady();
            if (this.outgoing.length > 0) this.schedule();
            return;
          case 'failed':
            if (!ready) rejectReady(new Error(message.message));
            return;
          case 'batch':
            this.settle(message.results, message.batch);
            return;
          case 'closed':
            return;
        }
      });
      worker.on('error', (error) => {
        if (!ready) rejectReady(error);
        this.options.log.error({ err: error.message }, 'writer thread failed');
      });
      worker.on('exit', (code) => {
        if (this.worker === worker) this.worker = undefined;
        this.failInFlight(`writer thread exited (${code})`);
        if (!ready) rejectReady(new Error(`writer thread exited (${code}) before it was ready`));
        else if (this.closing === undefined) this.restart(code);
      });
    });
  }

  private restart(code: number): void {
    const now = Date.now();
    const recent = this.restarts.count(now);
    if (recent >= MAX_RESTARTS) {
      this.goDown(`writer thread exited ${recent + 1} times within a minute (last code ${code})`);
      return;
    }
    this.restarts.add(now);
    this.options.log.error({ code }, 'writer thread exited; starting a new one');
    this.spawn().catch((error: unknown) => this.goDown(`writer thread cannot start: ${(error as Error).message}`));
  }

  /** No thread any more: every write answers 503, and readiness says so, until the process restarts. */
  private goDown(reason: string): void {
    this.down = reason;
    this.options.log.fatal({ reason }, 'writer thread stays down: every write answers 503 until the service is restarted');
    for (const observer of this.observers) observer({ size: 0, failed: 0, durationMs: 0, committed: false });
  }

  private failInFlight(reason: string): void {
    // Ops not yet handed to a thread are failed too, never run later behind their caller's back.
    this.outgoing = [];
    this.inThread = 0;
    const error = new StorageUnavailableError(new Error(reason));
    const waiters = [...this.waiting.values()];
    this.waiting.clear();
    for (const waiter of waiters) waiter.reject(error);
    if (waiters.length > 0) for (const observer of this.observers) observer({ size: waiters.length, failed: waiters.length, durationMs: 0, committed: false });
  }

  /**
   * Queues one operation; it shares the next transaction with everything else queued. `context`
   * (the commit span's) is handed back to the replayed spans.
   */
  submit<K extends WriteOp['op']>(op: Extract<WriteOp, { op: K }>, context?: unknown): Promise<WriteResults[K]> {
    if (this.down !== undefined) return Promise.reject(new StorageUnavailableError(new Error(this.down)));
    if (this.closing !== undefined) return Promise.reject(new StorageUnavailableError(new Error('writer is closing')));
    const id = this.nextId++;
    return new Promise<WriteResults[K]>((resolvePromise, reject) => {
      this.waiting.set(id, { resolve: resolvePromise as (value: unknown) => void, reject, context });
      this.outgoing.push([id, op]);
      this.schedule();
    });
  }

  /**
   * Ops made in one turn of the event loop go out in one message. While the thread is still
   * working on ops it was sent, new ones are held and go out together when its next batch
   * result arrives (it could not start them sooner anyway): one message per batch rather than
   * per request, which is most of what handing work to the thread costs this thread.
   */
  private schedule(): void {
    if (this.scheduled || this.inThread > 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.inThread === 0) this.post();
    });
  }

  private post(): void {
    const worker = this.worker;
    if (worker === undefined || this.outgoing.length === 0) return; // sent once a thread is ready
    const message: ToWriter = { type: 'ops', ops: this.outgoing };
    this.inThread += this.outgoing.length;
    this.outgoing = [];
    worker.postMessage(message);
  }

  private settle(results: readonly WireResult[], batch: { size: number; failed: number; durationMs: number; committed: boolean }): void {
    this.inThread = Math.max(0, this.inThread - results.length);
    try {
      this.deliver(results, batch);
    } finally {
      // The thread is between batches: hand it what was held meanwhile, once this batch's
      // callers have run (their continuations were queued in deliver, ahead of this). Waking the
      // thread can preempt this one on a busy machine; doing it after the replies are written
      // lets them go out first.
      queueMicrotask(() => {
        if (this.inThread === 0) this.post();
      });
    }
  }

  private deliver(results: readonly WireResult[], batch: { size: number; failed: number; durationMs: number; committed: boolean }): void {
    for (const result of results) {
      const waiter = this.waiting.get(result[0]);
      if (waiter === undefined) continue;
      this.waiting.delete(result[0]);
      if (result[1]) {
        this.replay(result[3], waiter.context);
        waiter.resolve(result[2]);
      } else {
        const [, , message, storage] = result;
        waiter.reject(storage ? new StorageUnavailableError(new Error(message)) : new Error(message));
      }
    }
    for (const observer of this.observers) observer(batch);
    if (batch.committed) for (const listener of this.afterCommit) listener();
  }

  private replay(effects: readonly Effect[], context: unknown): void {
    const targets = this.options.effects;
    if (targets === undefined) return;
    for (const [target, method, ...args] of effects) {
      try {
        if (target === 't') {
          if (method === 'tap') targets.tracer?.tap(args[0] as string, args[1] as string | null, args[2] as string, context);
          else targets.tracer?.status(args[0] as string | null, args[1] as string, args[2] as string | null, context);
          continue;
        }
        const receiver = (target === 'd' ? targets.delivery : targets.ingest) as Record<string, ((...a: unknown[]) => void) | undefined> | undefined;
        receiver?.[method]?.(...args);
      } catch (error) {
        // Telemetry never breaks the service (invariant 10).
        this.options.log.warn({ err: (error as Error).message, effect: method }, 'replaying an observation failed');
      }
    }
  }

  /** Called with every batch the thread ran, committed or not. */
  onBatch(observer: BatchObserver): void {
    this.observers.push(observer);
  }

  /** Called after every successful COMMIT (e.g. to wake the event-log tail and the sender). */
  onCommit(listener: () => void): void {
    this.afterCommit.push(listener);
  }

  get queued(): number {
    return this.waiting.size;
  }

  /** Commits everything queued, then closes the thread's connection and stops the thread. */
  close(timeoutMs = 10_000): Promise<void> {
    this.closing ??= new Promise<void>((resolveClosed) => {
      const worker = this.worker;
      if (worker === undefined) return resolveClosed();
      // Ops queued this turn go out before the close message.
      if (this.outgoing.length > 0) {
        worker.postMessage({ type: 'ops', ops: this.outgoing } satisfies ToWriter);
        this.outgoing = [];
      }
      // Never terminate() the thread: stopping it inside a SQLite call aborts the whole process
      // (a known better-sqlite3 limitation). If it has not finished in time (a stalled disk),
      // stop waiting and let the process exit around it; what it had not committed was never
      // acknowledged.
      const giveUp = setTimeout(() => {
        this.options.log.error({ timeout_ms: timeoutMs }, 'writer thread did not finish closing in time; leaving it');
        worker.unref();
        resolveClosed();
      }, timeoutMs);
      giveUp.unref();
      worker.once('exit', () => {
        clearTimeout(giveUp);
        resolveClosed();
      });
      worker.postMessage({ type: 'close' } satisfies ToWriter);
    });
    return this.closing;
  }
}

export type { TraceSeed };
