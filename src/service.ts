/**
 * Builds and starts the service's roles. `buildService` wires the parts without listening;
 * `startService` listens and returns a handle whose `close()` shuts down gracefully:
 * stop accepting, finish in-flight requests (never a 200 without a commit), close the database.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Config, Role } from './config';
import { createGraphClient, type GraphClient } from './graph-client';
import { GroupCommitter } from './group-commit';
import { createIngest } from './ingest';
import { TokenBucket } from './limiter';
import type { Logger } from './log';
import { createOutbox } from './outbox';
import { loadCatalog, type Catalog } from './packs';
import { Sender, type SenderSettings } from './sender';
import { startSimulator, SIMULATOR_ACCESS_TOKEN, type Simulator } from './simulator';
import { openDatabase, type Db } from './store/database';
import { createDeliveryStore } from './store/delivery-store';
import { createRollupStore } from './store/rollup-store';
import { createWebhookStore } from './store/webhook-store';
import { createUnlockHooks } from './unlock';
import { createWebhookServer } from './webhook-server';
import { batchObserver, ingestObserver, webhookObserver } from './telemetry/adapters';
import { deliveryTracer, sendTracer } from './telemetry/delivery-tracing';
import { createTelemetry, type Telemetry } from './telemetry/metrics';
import { startMetricsServer, type MetricsServer } from './telemetry/metrics-server';
import type { TelemetryRuntime } from './telemetry/sdk';

export interface ServiceOptions {
  readonly role?: Role;
  readonly log: Logger;
  readonly clock?: () => number;
  readonly catalog?: Catalog;
  /** Graph API base URL when config.graphUrl is unset (sandbox: the simulator's). */
  readonly graphUrl?: string;
  readonly sender?: Partial<SenderSettings>;
  readonly random?: () => number;
  /** The started OpenTelemetry runtime; with it, /metrics is served on METRICS_PORT. */
  readonly telemetry?: TelemetryRuntime;
}

export interface RunningService {
  readonly db: Db;
  readonly committer: GroupCommitter;
  readonly catalog: Catalog;
  readonly sender: Sender | undefined;
  /** The built-in Meta simulator (sandbox mode only). */
  readonly simulator: Simulator | undefined;
  readonly telemetry: Telemetry;
  readonly urls: Readonly<{ webhook?: string; graph?: string; simulator?: string; metrics?: string }>;
  readonly ports: Readonly<{ webhook?: number }>;
  close(): Promise<void>;
}

export async function startService(config: Config, options: ServiceOptions): Promise<RunningService> {
  const role = options.role ?? 'all';
  const { log } = options;
  if (role === 'feed') throw new Error('the feed role (REST + WebSocket) is not available in this version');
  const catalog = options.catalog ?? loadCatalog(config.packsFile);
  const clock = options.clock ?? Date.now;
  const db = openDatabase(config.databasePath);
  const committer = new GroupCommitter(db);
  const t = options.telemetry?.telemetry ?? createTelemetry();
  t.setPackIds(catalog.packs.map((p) => p.id));
  committer.onBatch(batchObserver(t));
  const webhookStore = createWebhookStore(db);
  const deliveryStore = createDeliveryStore(db);
  const appendEvent = webhookStore.appendEvent;
  const rollup = createRollupStore(db);
  const outbox = createOutbox({
    store: deliveryStore,
    rollup,
    appendEvent,
    observer: t,
    ...(options.random !== undefined ? { random: options.random } : {}),
    settings: { unknownWaitMs: config.send.unknownWaitMs, maxAgeMs: config.send.maxAgeMs },
  });
  const hooks = createUnlockHooks({
    catalog,
    store: deliveryStore,
    rollup,
    outbox,
    appendEvent,
    maxTapAgeMs: config.unlockMaxTapAgeMs,
    observer: t,
    tracer: deliveryTracer,
  });
  const ingest = createIngest(db, webhookStore, hooks, ingestObserver(t));
  let closing = false;
  const webhook = createWebhookServer({ config, committer, ingest, log, clock, observer: webhookObserver(t), isClosing: () => closing });
  t.observeQueue(() => {
    const queue = deliveryStore.queueStats(clock());
    return { depth: queue.depth, oldestAgeSeconds: queue.oldestAgeMs / 1000 };
  });

  let graph: GraphClient | undefined;
  let sender: Sender | undefined;
  let simulator: Simulator | undefined;
  let graphUrl = config.graphUrl ?? options.graphUrl;
  let accessToken = config.accessToken;
  if (graphUrl === undefined && config.sandbox) {
    // Sandbox: the built-in Meta simulator plays Graph API and calls our webhook back.
    simulator = await startSimulator({ host: '127.0.0.1', phoneNumberId: config.phoneNumberId, appSecret: config.appSecrets[0] as string });
    graphUrl = simulator.url;
    accessToken = simulator.accessToken;
  }
  if (graphUrl === undefined) {
    log.warn('no Graph API URL: the sender is not running');
  } else {
    graph = createGraphClient({
      baseUrl: graphUrl,
      version: config.graphVersion,
      phoneNumberId: config.phoneNumberId,
      accessToken: accessToken ?? SIMULATOR_ACCESS_TOKEN,
      connectTimeoutMs: config.send.connectTimeoutMs,
      totalTimeoutMs: config.send.timeoutMs,
    });
    sender = new Sender({
      db,
      store: deliveryStore,
      outbox,
      committer,
      graph,
      limiter: new TokenBucket(config.sendRatePerSecond),
      log,
      clock,
      observer: t,
      tracer: sendTracer,
      ...(options.sender !== undefined ? { settings: options.sender } : {}),
    });
    committer.onCommit(() => sender?.wake());
  }
  const webhookPort = await listen(webhook, config.ports.webhook, config.host);
  const shownHost = config.host === '0.0.0.0' ? '127.0.0.1' : config.host;
  let metrics: MetricsServer | undefined;
  const runtime = options.telemetry;
  if (runtime !== undefined) {
    metrics = await startMetricsServer({
      port: config.ports.metrics,
      host: config.host,
      appMetricsText: () => runtime.appMetricsText(),
      onError: (error) => log.warn({ err: (error as Error).message }, 'metrics scrape failed'),
    });
  }
  const urls = { webhook: `http://${shownHost}:${webhookPort}/webhook`, ...(graphUrl !== undefined ? { graph: graphUrl } : {}), ...(simulator !== undefined ? { simulator: simulator.url } : {}),
    ...(metrics !== undefined ? { metrics: `http://${shownHost}:${metrics.port}/metrics` } : {}),
  };
  simulator?.setWebhook(urls.webhook, config.appSecrets[0]);
  sender?.start();
  log.info({ role, webhook: urls.webhook, database: config.databasePath, sandbox: config.sandbox }, 'click-to-unlock started');

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      closing = true;
      await closeServer(webhook);
      await sender?.stop();
      committer.drain();
      graph?.close();
      await simulator?.close();
      await metrics?.close();
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
  return { db, committer, catalog, sender, simulator, telemetry: t, urls, ports: { webhook: webhookPort }, close };
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
