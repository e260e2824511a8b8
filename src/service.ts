/**
 * Builds and starts the service's roles. `buildService` wires the parts without listening;
 * `startService` listens and returns a handle whose `close()` shuts down gracefully:
 * stop accepting, finish in-flight requests (never a 200 without a commit), close the database.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Config, Role } from './config';
import { GroupCommitter } from './group-commit';
import { createIngest } from './ingest';
import type { Logger } from './log';
import { openDatabase, type Db } from './store/database';
import { createWebhookStore } from './store/webhook-store';
import { createWebhookServer } from './webhook-server';

export interface ServiceOptions {
  readonly role?: Role;
  readonly log: Logger;
  readonly clock?: () => number;
}

export interface RunningService {
  readonly db: Db;
  readonly committer: GroupCommitter;
  readonly urls: Readonly<{ webhook?: string }>;
  readonly ports: Readonly<{ webhook?: number }>;
  close(): Promise<void>;
}

export async function startService(config: Config, options: ServiceOptions): Promise<RunningService> {
  const role = options.role ?? 'all';
  const { log } = options;
  if (role === 'feed') throw new Error('the feed role (REST + WebSocket) is not available in this version');
  const db = openDatabase(config.databasePath);
  const committer = new GroupCommitter(db);
  const store = createWebhookStore(db);
  const ingest = createIngest(db, store);
  let closing = false;
  const webhook = createWebhookServer({
    config,
    committer,
    ingest,
    log,
    ...(options.clock !== undefined ? { clock: options.clock } : {}),
    isClosing: () => closing,
  });
  const webhookPort = await listen(webhook, config.ports.webhook, config.host);
  const shownHost = config.host === '0.0.0.0' ? '127.0.0.1' : config.host;
  const urls = { webhook: `http://${shownHost}:${webhookPort}/webhook` };
  log.info({ role, webhook: urls.webhook, database: config.databasePath, sandbox: config.sandbox }, 'click-to-unlock started');

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      closing = true;
      await closeServer(webhook);
      committer.drain();
      try {
        db.pragma('wal_checkpoint(TRUNCATE)');
      } catch (error) {
        log.warn({ err: (error as Error).message }, 'WAL checkpoint at shutdown failed');
      }
      db.close();
      log.info('click-to-unlock stopped');
    })();
    return closed;
  };
  return { db, committer, urls, ports: { webhook: webhookPort }, close };
}

export function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Stops accepting, lets in-flight requests finish, then closes idle keep-alive sockets. */
export function closeServer(server: Server, graceMs = 10_000): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), graceMs);
    force.unref();
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}
