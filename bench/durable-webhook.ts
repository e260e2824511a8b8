/**
 * A second baseline for the ingest benchmark's floor (`npm run bench -- ingest-floor`): the bare
 * server (`bare-webhook.ts`) plus the least a durable webhook must add, a group commit with
 * `synchronous=FULL` before each 200. Requests parsed in one turn of the event loop share one
 * transaction on the main thread, and each is answered after its COMMIT. Each row is the
 * message's wamid (UNIQUE, the dedupe key) and, with BENCH_STORE_BODY=1, the raw body as the
 * service's inbox keeps it. No items, no telemetry, no thread: a floor for the service's cost,
 * not a webhook anyone should run.
 *
 *   BENCH_PORT=<port> BENCH_SECRET=<secret> BENCH_DATABASE=<file> BENCH_STORE_BODY=0|1 node dist/bench/durable-webhook.js
 */
import { createServer, type ServerResponse } from 'node:http';
import Database from 'better-sqlite3';
import { onSignedBody } from './signed-body';

const port = Number(process.env.BENCH_PORT ?? '0');
const secret = process.env.BENCH_SECRET ?? '';
const storeBody = process.env.BENCH_STORE_BODY === '1';

const db = new Database(process.env.BENCH_DATABASE ?? ':memory:');
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.exec('CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY, wamid TEXT UNIQUE, body BLOB)');
const insert = db.prepare('INSERT OR IGNORE INTO inbox (wamid, body) VALUES (?, ?)');

interface Pending {
  readonly wamid: string | null;
  readonly body: Buffer;
  readonly res: ServerResponse;
}

let pending: Pending[] = [];
let scheduled = false;
const commit = db.transaction((batch: readonly Pending[]) => {
  for (const item of batch) insert.run(item.wamid, storeBody ? item.body : null);
});

function flush(): void {
  scheduled = false;
  const batch = pending;
  pending = [];
  let status = 200;
  try {
    commit(batch);
  } catch {
    status = 503;
  }
  for (const { res } of batch) {
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end(status === 200 ? 'EVENT_RECEIVED' : 'retry\n');
  }
}

/** The first message's wamid, where the benchmark's bodies carry it. */
function wamidOf(json: unknown): string | null {
  const id = (json as { entry?: Array<{ changes?: Array<{ value?: { messages?: Array<{ id?: unknown }> } }> }> }).entry?.[0]?.changes?.[0]?.value?.messages?.[0]?.id;
  return typeof id === 'string' ? id : null;
}

const server = createServer((req, res) => {
  onSignedBody(req, res, secret, (body) => {
    let wamid: string | null = null;
    try {
      wamid = wamidOf(JSON.parse(body.toString('utf8')));
    } catch {
      // Acknowledged like any signed body; stored without a key.
    }
    pending.push({ wamid, body, res });
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  });
});

server.listen(port, '127.0.0.1');
process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  db.close();
});
