/**
 * Background WAL checkpoints. SQLite's automatic checkpoint runs inside the COMMIT that
 * crosses the threshold: it copies the WAL into the database file and fsyncs it, on the
 * webhook's event loop, turning one request in a few hundred into a 10–150 ms stall. Here a
 * worker thread with its own connection runs PASSIVE checkpoints a few times a second
 * (they never block the writer), and the writer keeps a high automatic threshold only as a
 * backstop: when it fires, the worker has already copied nearly everything, so it is cheap,
 * and it lets the WAL file start over so its size stays bounded.
 */
import { Worker } from 'node:worker_threads';
import type { Db } from './database';

/** The writer's own automatic checkpoint, in pages: a backstop that also restarts the WAL. */
export const WRITER_AUTOCHECKPOINT_PAGES = 8_000;
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
const pass = () => {
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch (error) { /* busy: the next pass gets it */ }
};
const timer = setInterval(pass, workerData.intervalMs);
parentPort.on('message', (message) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  try { db.close(); } catch (error) { /* closing anyway */ }
  parentPort.postMessage({ stopped: true });
});
parentPort.postMessage({ started: true });
`;

export interface Checkpointer {
  stop(): Promise<void>;
}

/** Starts background checkpoints for the writer `db` (a file database in WAL mode). */
export function startCheckpointer(db: Db, intervalMs = 250): Checkpointer {
  db.pragma(`wal_autocheckpoint = ${WRITER_AUTOCHECKPOINT_PAGES}`);
  db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { driver: require.resolve('better-sqlite3'), path: db.name, intervalMs },
  });
  worker.unref();
  // If the worker cannot run, the writer checkpoints by itself as SQLite normally does.
  const fallBack = (): void => {
    try {
      if (db.open) db.pragma('wal_autocheckpoint = 1000');
    } catch {
      // The database is closing.
    }
  };
  worker.on('message', (message: { error?: string }) => {
    if (message.error !== undefined) fallBack();
  });
  worker.on('error', fallBack);
  let stopped: Promise<void> | undefined;
  return {
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(force);
          resolve();
        };
        const force = setTimeout(() => void worker.terminate().then(done, done), 2_000);
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
