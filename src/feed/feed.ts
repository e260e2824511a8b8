/**
 * The dashboard feed: REST on API_PORT and the WebSocket on WS_PORT, both reading through
 * one read-only database handle that the caller opens and closes.
 *
 *   const feed = createFeed({ db: readOnlyDb, config, log, packs });
 *   const ports = await feed.listen();        // { api, ws }
 *   committer.onCommit(() => feed.notify());  // all-in-one process: wake the tail at once
 *   await feed.close();
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import type { Express } from 'express';
import type { WebSocketServer } from 'ws';
import type { Config } from '../config';
import { closeServer, listen } from '../http-listen';
import type { Logger } from '../log';
import type { Db } from '../store/database';
import { createFeedStore } from '../store/feed-store';
import { createKeyReader } from '../store/key-store';
import { createApiApp } from './api';
import { DEFAULT_RATE_LIMIT, KeyRateLimiter, TicketBook, type RateLimit } from './auth';
import { EventTail, type WireEvent } from './event-tail';
import type { PackInfo } from './reports';
import { createWsServer, DEFAULT_WS_POLICY, type WsPolicy } from './ws-server';

export interface FeedOptions {
  /** A read-only handle (openDatabase(path, { readonly: true })); the feed never writes. */
  readonly db: Db;
  readonly config: Pick<Config, 'host' | 'ports' | 'dashboardOrigins'>;
  readonly log: Logger;
  readonly clock?: () => number;
  readonly packs?: readonly PackInfo[];
  readonly version?: string;
  readonly rateLimit?: RateLimit;
  readonly ws?: Partial<WsPolicy>;
  /** How often a feed in its own process looks for new events. */
  readonly pollMs?: number;
  /** Mounts more routes on the REST app (e.g. the live page at `/`) before its final 404. */
  readonly extend?: (app: Express) => void;
  /** Readiness of the writer in the same process (see ApiDeps.writable). */
  readonly writable?: () => boolean;
}

export interface Feed {
  /** The REST API's server (express), not yet listening. */
  readonly api: Server;
  /** The WebSocket server, attached to `wsServer`. */
  readonly ws: WebSocketServer;
  readonly wsServer: Server;
  /** Listens on config.ports.api and .ws (0 = any free port) and starts the tail. */
  listen(): Promise<{ api: number; ws: number }>;
  /** Wakes the event-log tail now; call after every COMMIT in the same process. */
  notify(): void;
  /** Connected WebSocket clients (for the unlock_ws_clients gauge). */
  clients(): number;
  close(): Promise<void>;
}

// A feed in its own process learns of new events only by looking; 20 ms keeps commit → receipt p99 under 50 ms
// for one indexed MAX(seq) or range read per tick.
export const DEFAULT_POLL_MS = 20;
/** A feed client's request or socket may hold close() this long at most. */
const CLOSE_GRACE_MS = 5_000;

export function createFeed(options: FeedOptions): Feed {
  const clock = options.clock ?? Date.now;
  const store = createFeedStore(options.db);
  const keys = createKeyReader(options.db);
  const tickets = new TicketBook();
  const origins = options.config.dashboardOrigins;
  const app = createApiApp({
    store,
    keys,
    tickets,
    limiter: new KeyRateLimiter(options.rateLimit ?? DEFAULT_RATE_LIMIT),
    packs: options.packs ?? [],
    origins,
    version: options.version ?? packageVersion(),
    log: options.log,
    clock,
    ...(options.extend !== undefined ? { extend: options.extend } : {}),
    ...(options.writable !== undefined ? { writable: options.writable } : {}),
  });
  const apiServer = createServer(app);
  apiServer.headersTimeout = 10_000;
  apiServer.requestTimeout = 15_000;
  let deliver: (events: readonly WireEvent[]) => void = () => undefined;
  let anyLive: () => boolean = () => true;
  const tail = new EventTail(store, (events) => deliver(events), options.log, options.pollMs ?? DEFAULT_POLL_MS, () => anyLive());
  const ws = createWsServer({ store, keys, tickets, tail, origins, log: options.log, clock, policy: { ...DEFAULT_WS_POLICY, ...options.ws } });
  deliver = ws.dispatch;
  anyLive = ws.hasLiveClients;

  let closed: Promise<void> | undefined;
  return {
    api: apiServer,
    ws: ws.wss,
    wsServer: ws.server,
    async listen() {
      const { host, ports } = options.config;
      const apiPort = await listen(apiServer, ports.api, host);
      const wsPort = await listen(ws.server, ports.ws, host);
      tail.start();
      return { api: apiPort, ws: wsPort };
    },
    notify: () => tail.notify(),
    clients: () => ws.clients(),
    close() {
      closed ??= (async () => {
        tail.stop();
        ws.closeClients();
        await Promise.all([closeServer(apiServer, CLOSE_GRACE_MS), closeServer(ws.server, CLOSE_GRACE_MS)]);
      })();
      return closed;
    },
  };
}

/** The version in package.json, found from src/feed or dist/src/feed. */
function packageVersion(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const version = (JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown }).version;
      return typeof version === 'string' ? version : '0.0.0';
    }
    dir = dirname(dir);
  }
  return '0.0.0';
}
