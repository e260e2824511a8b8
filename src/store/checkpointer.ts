/**
 * Background WAL checkpoints. SQLite's automatic checkpoint runs inside the COMMIT that
 * crosses the threshold: it copies the WAL into the database file and fsyncs it, stalling
 * the writer and every request waiting on it for 10–150 ms. Here a worker thread with its own
 * connection runs PASSIVE checkpoints (they never block the writer): back to back while it
 * finds a backlog, every 50 ms otherwise, so it stays about one pass behind the writer. The
 * writer keeps a high automatic threshold as the step that lets the WAL file start over
 * (under steady writes the WAL is never fully copied at the moment a transaction begins):
 * when it fires, the worker has already copied all but the last pass, so it is short, and
 * the WAL's size stays bounded.
 */
import { Worker } from 'node:worker_threads';
import type { Db } from './database';

/** The writer's own automatic checkpoint, in pages: a backstop that also restarts the WAL. */
export const WRITER_AUTOCHECKPOINT_PAGES = 8_000;
/** A pass that copied at least this many frames is followed at once by another. */
const BACKLOG_FRAMES = 64;
/** WAL bytes kept on disk after a restart (the file is truncated beyond this). */
export const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const Database = require(workerData.driver);
let db;
try {
  db = new Database(workerData.path, { fileMustExist: true, timeout: 0 });
} catch (error) {
  parentPort.postMessage({ error: String(error && error.message || error) });
  process.exit(0);
}
// Passes run back to back while they find a backlog, so the WAL stays only a pass behind the
// writer; then every intervalMs. (Each PASSIVE pass copies what was committed before it began.)
let timer;
let stopped = false;
const pass = () => {
  timer = undefined;
  if (stopped) return;
  let copied = 0;
  try {
    const [row] = db.pragma('wal_checkpoint(PASSIVE)');
    if (row && row.log >= 0) {
      // The WAL starts over once fully copied; then everything checkpointed is new.
      copied = row.log < lastLog ? row.checkpointed : row.checkpointed - lastCheckpointed;
      lastLog = row.log;
      lastCheckpointed = row.checkpointed;
    }
  } catch (error) { /* busy: the next pass gets it */ }
  timer = copied >= workerData.backlogFrames ? setImmediate(pass) : setTimeout(pass, workerData.intervalMs);
};
let lastLog = 0;
let lastCheckpointed = 0;
pass();
parentPort.on('message', (message) => {
  if (message !== 'stop') return;
  stopped = true;
  if (timer !== undefined) { clearTimeout(timer); clearImmediate(timer); }
  try { db.close(); } catch (error) { /* closing anyway */ }
  parentPort.postMessage({ stopped: true });
});
parentPort.postMessage({ started: true });
`;

export interface Checkpointer {
  stop(): Promise<void>;
}

/**
 * The writer connection's side of it: a high automatic threshold (the backstop that lets the
 * WAL start over) and a cap on the WAL file kept after a restart. The writer thread calls this
 * on its own connection; it is the only connection that commits on the hot path.
 */
export function configureWriterCheckpoints(db: Db): void {
  db.pragma(`wal_autocheckpoint = ${WRITER_AUTOCHECKPOINT_PAGES}`);
  db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
}

/**
 * Starts background checkpoints of the database file at `path` (WAL mode). If the worker cannot
 * run, the writer's own automatic checkpoint still bounds the WAL, only with its stalls.
 */
export function startCheckpointer(path: string, intervalMs = 50): Checkpointer {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { driver: require.resolve('better-sqlite3'), path, intervalMs, backlogFrames: BACKLOG_FRAMES },
  });
  worker.unref();
  worker.on('error', () => undefined); // its last pass is lost; the writer's backstop remains
  let stopped: Promise<void> | undefined;
  return {
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(force);
          resolve();
        };
        // Never terminate() a thread that may be inside a SQLite call (that aborts the process):
        // if it does not answer in time, stop waiting for it.
        const force = setTimeout(done, 2_000);
        worker.once('exit', done);
        worker.on('message', (message: { stopped?: boolean }) => {
          if (message.stopped === true) void worker.terminate().then(done, done);
        });
        worker.postMessage('stop');
      });
      return stopped;
    },
  };
}
