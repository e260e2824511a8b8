/**
 * The writer thread: owns the service's one writable SQLite connection and runs every write
 * operation (writer-ops.ts) in group-commit batches. With synchronous=FULL the COMMIT waits for
 * an fsync; here that wait blocks only this thread, while the main thread goes on reading
 * requests, checking signatures and answering the previous batch (see decision 0005).
 *
 * Protocol (structured-clone messages on the worker port):
 *   in   { type: 'ops', ops: [id, WriteOp][] }      queued; all queued ops share the next batch
 *        { type: 'close' }                          finish what is queued, close the connection
 *   out  { type: 'ready', priority } | { type: 'failed', message }
 *        { type: 'batch', results, batch }          one per transaction, committed or not
 *        { type: 'closed' }
 */
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { GroupCommitter, StorageUnavailableError } from './group-commit';
import { parseCatalog } from './packs';
import { openDatabase, isStorageUnavailable, type Db } from './store/database';
import { configureWriterCheckpoints } from './store/checkpointer';
import { createWriteOps, type Effect, type WriteOp, type WriterSettings } from './writer-ops';

/** How much the writer thread's nice value is lowered (more CPU share when threads compete). */
export const WRITER_NICE_BOOST = -10;

export interface WriterThreadData {
  readonly databasePath: string;
  readonly busyTimeoutMs: number;
  readonly maxBatch: number;
  readonly settings: WriterSettings;
}

/** `[id, true, value, effects]` or `[id, false, message, storageUnavailable]`. */
export type WireResult = readonly [id: number, ok: true, value: unknown, effects: Effect[]] | readonly [id: number, ok: false, message: string, storage: boolean];

export type FromWriter =
  | { readonly type: 'ready'; readonly priority: string }
  | { readonly type: 'failed'; readonly message: string }
  | { readonly type: 'batch'; readonly results: WireResult[]; readonly batch: { size: number; failed: number; durationMs: number; committed: boolean } }
  | { readonly type: 'closed' };

export type ToWriter = { readonly type: 'ops'; readonly ops: Array<readonly [number, WriteOp]> } | { readonly type: 'close' };

/**
 * Every webhook and every send waits on this thread's commits, so on a busy machine it should
 * not queue behind request parsing: ask the scheduler to favour it (a lower nice value for
 * this thread alone, Linux). Needs CAP_SYS_NICE (root, or granted to the container); without
 * it the thread keeps the process's priority. Returns what was applied, for the start-up log.
 */
function raisePriority(): string {
  if (process.platform !== 'linux') return 'unchanged (not Linux)';
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) return 'unchanged (no thread id)';
    const nice = getPriority(tid) + WRITER_NICE_BOOST;
    setPriority(tid, nice);
    return `nice ${nice}`;
  } catch (error) {
    return `unchanged (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
  }
}

function main(): void {
  const port = parentPort;
  if (port === null) throw new Error('writer-thread.ts runs as a worker thread');
  const data = workerData as WriterThreadData;
  const post = (message: FromWriter): void => port.postMessage(message);
  let db: Db;
  try {
    db = openDatabase(data.databasePath, { migrate: false, busyTimeoutMs: data.busyTimeoutMs });
    configureWriterCheckpoints(db);
  } catch (error) {
    post({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
    return;
  }
  const ops = createWriteOps(db, parseCatalog({ packs: data.settings.packs }), data.settings);
  const committer = new GroupCommitter(db);
  let pending: Array<readonly [number, WriteOp]> = [];
  let scheduled = false;
  let closing = false;

  const flush = (): void => {
    scheduled = false;
    while (pending.length > 0) {
      const batch = pending.slice(0, data.maxBatch);
      pending = pending.slice(batch.length);
      const result = committer.execute(batch.map(([, op]) => () => ops.run(op)));
      let failed = 0;
      const results = batch.map(([id], i): WireResult => {
        const outcome = result.outcomes[i];
        if (outcome?.ok === true) {
          const { value, effects } = outcome.value as ReturnType<typeof ops.run>;
          return [id, true, value, effects];
        }
        failed++;
        const error = outcome?.error;
        const storage = error instanceof StorageUnavailableError || isStorageUnavailable(error);
        return [id, false, error instanceof Error ? error.message : String(error), storage];
      });
      post({ type: 'batch', results, batch: { size: batch.length, failed, durationMs: result.durationMs, committed: result.committed } });
      // Let messages that arrived during this batch's fsync join the next one.
      if (pending.length > 0 && !closing) {
        scheduled = true;
        setImmediate(flush);
        return;
      }
    }
  };

  port.on('message', (message: ToWriter) => {
    if (message.type === 'ops') {
      for (const entry of message.ops) pending.push(entry);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
      return;
    }
    closing = true;
    flush();
    try {
      db.close();
    } finally {
      post({ type: 'closed' });
      port.close();
    }
  });
  post({ type: 'ready', priority: raisePriority() });
}

main();
