/**
 * The server side of the WebSocket benchmark, run as a child process (fork, with IPC) so the
 * 1,000 clients do not share its event loop. It opens a fresh database, starts the real feed
 * on a read-only handle, and on request writes events at a given rate, each in its own
 * transaction, stamping the time just before its COMMIT into the event (so the measured
 * latency includes the commit itself). Mode `notify` wakes the tail after
 * each commit (the all-in-one process); mode `poll` leaves it to the tail's timer (a feed in
 * its own process).
 */
import { createFeed } from '../src/feed/feed';
import { createLogger } from '../src/log';
import { openDatabase } from '../src/store/database';
import { createApiKey } from '../src/store/key-store';

type Command = { op: 'memory' } | { op: 'write'; perSecond: number; seconds: number } | { op: 'stop' };

async function main(): Promise<void> {
  const path = process.env.CTU_BENCH_DB ?? '';
  const mode = process.env.CTU_BENCH_MODE === 'poll' ? 'poll' : 'notify';
  const db = openDatabase(path);
  const ro = openDatabase(path, { readonly: true });
  const { key } = createApiKey(db, 'bench');
  const feed = createFeed({
    db: ro,
    config: { host: '127.0.0.1', ports: { webhook: 0, api: 0, ws: 0, metrics: 0 }, dashboardOrigins: [] },
    log: createLogger('silent'),
    ws: { heartbeatMs: 30_000 },
  });
  const ports = await feed.listen();
  const insert = db.prepare('INSERT INTO events (type, at, contact, data) VALUES (?, ?, NULL, ?)');
  const send = (message: unknown): void => {
    process.send?.(message);
  };
  send({ ready: true, ws: ports.ws, key });

  process.on('message', (command: Command) => {
    if (command.op === 'memory') {
      (globalThis as { gc?: () => void }).gc?.();
      send({ memory: process.memoryUsage(), clients: feed.clients() });
    } else if (command.op === 'write') {
      const total = Math.round(command.perSecond * command.seconds);
      const interval = 1000 / command.perSecond;
      const started = performance.now();
      let written = 0;
      const tick = (): void => {
        // Catch up to the schedule, one transaction (one commit) per event.
        const due = Math.min(total, Math.floor((performance.now() - started) / interval) + 1);
        while (written < due) {
          db.transaction(() => insert.run('message.status', Date.now(), `{"n":${written},"status":"delivered","t":${Date.now()}}`))();
          written++;
          if (mode === 'notify') feed.notify();
        }
        if (written < total) setTimeout(tick, Math.max(0, interval - 1));
        else send({ written });
      };
      tick();
    } else if (command.op === 'stop') {
      void feed.close().then(() => {
        ro.close();
        db.close();
        process.exit(0);
      });
    }
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`feed-ws-server: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
