/**
 * Group commit. With synchronous=FULL every COMMIT costs an fsync, which alone caps the
 * webhook at a few thousand requests/s. Work submitted in the same turn of the event loop
 * shares one transaction; each piece runs in its own savepoint (one failing piece never
 * undoes its neighbours) and each promise settles only after the COMMIT that holds it.
 * If the transaction itself cannot begin or commit (locked, disk full), every piece in it
 * is rejected: nothing was written, so the caller answers 503 and Meta retries.
 */
import type { Db } from './store/database';
import { isStorageUnavailable } from './store/database';

export class StorageUnavailableError extends Error {
  constructor(override readonly cause: unknown) {
    super(`database cannot commit: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'StorageUnavailableError';
  }
}

export type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

export interface BatchResult {
  readonly committed: boolean;
  readonly outcomes: readonly Outcome[];
  readonly durationMs: number;
}

interface Job {
  readonly work: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

export interface BatchObserver {
  (batch: { readonly size: number; readonly failed: number; readonly durationMs: number; readonly committed: boolean }): void;
}

export class GroupCommitter {
  private pending: Job[] = [];
  private scheduled = false;
  private readonly begin;
  private readonly commit;
  private readonly rollback;
  private readonly savepoint;
  private readonly release;
  private readonly rollbackTo;
  private readonly afterCommit: Array<() => void> = [];
  private readonly observers: BatchObserver[] = [];

  constructor(
    private readonly db: Db,
    private readonly maxBatch = 512,
  ) {
    this.begin = db.prepare('BEGIN IMMEDIATE');
    this.commit = db.prepare('COMMIT');
    this.rollback = db.prepare('ROLLBACK');
    this.savepoint = db.prepare('SAVEPOINT piece');
    this.release = db.prepare('RELEASE piece');
    this.rollbackTo = db.prepare('ROLLBACK TO piece');
  }

  /** Runs `work` inside the next shared transaction; resolves with its result after COMMIT. */
  submit<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Called after every successful COMMIT (e.g. to wake the event-log tail). */
  onCommit(listener: () => void): void {
    this.afterCommit.push(listener);
  }

  onBatch(observer: BatchObserver): void {
    this.observers.push(observer);
  }

  get queued(): number {
    return this.pending.length;
  }

  /** Commits everything pending now (used at shutdown and by tests). */
  drain(): void {
    while (this.pending.length > 0) this.runBatch(this.pending.splice(0, this.maxBatch));
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending.splice(0, this.maxBatch);
    if (this.pending.length > 0) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
    if (batch.length > 0) this.runBatch(batch);
  }

  private runBatch(batch: Job[]): void {
    const result = this.execute(batch.map((job) => job.work));
    let failed = 0;
    batch.forEach((job, i) => {
      const outcome = result.outcomes[i];
      if (outcome?.ok === true) job.resolve(outcome.value);
      else {
        failed++;
        job.reject(outcome?.error);
      }
    });
    for (const observer of this.observers) observer({ size: batch.length, failed, durationMs: result.durationMs, committed: result.committed });
    if (result.committed) for (const listener of this.afterCommit) listener();
  }

  /**
   * Runs `works` in one transaction, each in its own savepoint, and commits. Synchronous: the
   * writer thread calls it directly. When the transaction cannot begin or commit, every
   * outcome is a StorageUnavailableError and nothing was written.
   */
  execute(works: ReadonlyArray<() => unknown>): BatchResult {
    const started = performance.now();
    const outcomes: Outcome[] = [];
    const fail = (error: unknown): BatchResult => {
      const unavailable = new StorageUnavailableError(error);
      return { committed: false, outcomes: works.map(() => ({ ok: false, error: unavailable })), durationMs: performance.now() - started };
    };
    try {
      this.begin.run();
    } catch (error) {
      return fail(error);
    }
    try {
      for (const work of works) {
        this.savepoint.run();
        try {
          const value = work();
          this.release.run();
          outcomes.push({ ok: true, value });
        } catch (error) {
          if (isStorageUnavailable(error)) throw error;
          this.rollbackTo.run();
          this.release.run();
          outcomes.push({ ok: false, error });
        }
      }
      this.commit.run();
    } catch (error) {
      if (this.db.inTransaction) {
        try {
          this.rollback.run();
        } catch {
          // The connection already rolled back (SQLite does so itself on some I/O errors).
        }
      }
      return fail(error);
    }
    return { committed: true, outcomes, durationMs: performance.now() - started };
  }
}
