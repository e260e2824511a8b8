/**
 * Builds and starts the service's roles: `webhook` (ingest + sender on the writable handle),
 * `feed` (REST + WebSocket on a read-only handle, so the dashboard side can never harm the
 * webhook), or `all` of them in one process. The handle's `close()` shuts down gracefully:
 * stop accepting, finish in-flight requests (never a 200 without a commit), let in-flight
 * sends finish or mark them unknown, close WebSockets, checkpoint the WAL.
 */
import type { Server } from 'node:http';
import type { Config, Role } from './config';
import { createGraphClient, type GraphClient } from './graph-client';
import type { IngestOutcome, IngestRequest } from './ingest';
import { TokenBucket } from './limiter';
import type { Logger } from './log';
import { loadCatalog, type Catalog } from './packs';
import { Sender, type SenderSettings } from './sender';
import { startSimulator, SIMULATOR_ACCESS_TOKEN, type Simulator } from './simulator';
import { openDatabase, type Db } from './store/database';
import { createDeliveryStore } from './store/delivery-store';
import { closeServer, listen } from './http-listen';
import { createWebhookServer } from './webhook-server';
import { batchObserver, ingestObserver, webhookObserver } from './telemetry/adapters';
import { replayTracer, sendTracer, traceSeed } from './telemetry/delivery-tracing';
import type { Span } from './telemetry/tracing';
import { Writer } from './writer';
import { drawJitter } from './writer-ops';
import { createTelemetry, type Telemetry } from './telemetry/metrics';
import { startMetricsServer, type MetricsServer } from './telemetry/metrics-server';
import type { TelemetryRuntime } from './telemetry/sdk';
import type { Express } from 'express';
import { createFeed, type Feed } from './feed/feed';
import { ensureSandboxKey } from './store/key-store';
import { startBackupSchedule, type BackupSchedule } from './backup';
import { startCheckpointer, type Checkpointer } from './store/checkpointer';
import { startRetention, type RetentionLoop } from './retention';

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
  /** Mounts more routes on the REST app (the live dashboard page). */
  readonly extendApi?: (app: Express) => void;
}

export interface RunningService {
  readonly role: Role;
  /** The writable handle (webhook roles), or the feed's read-only one (feed role). */
  readonly db: Db;
  /** The writer thread's client; undefined in the feed role, which never writes. */
  readonly committer: Writer | undefined;
  readonly catalog: Catalog;
  readonly sender: Sender | undefined;
  /** The built-in Meta simulator (sandbox mode only). */
  readonly simulator: Simulator | undefined;
  readonly feed: Feed | undefined;
  readonly telemetry: Telemetry;
  /** The sandbox's development API key (sandbox mode, roles serving the feed). */
  readonly sandboxKey: string | undefined;
  readonly urls: Readonly<{ webhook?: string; api?: string; ws?: string; page?: string; graph?: string; simulator?: string; metrics?: string }>;
  readonly ports: Readonly<{ webhook?: number; api?: number; ws?: number; metrics?: number }>;
  close(): Promise<void>;
}

interface WriteSide {
  readonly db: Db;
  readonly writer: Writer;
  readonly webhook: Server;
  readonly sender: Sender | undefined;
  readonly graph: GraphClient | undefined;
  readonly simulator: Simulator | undefined;
  readonly graphUrl: string | undefined;
  readonly backups: BackupSchedule | undefined;
  readonly retention: RetentionLoop | undefined;
  readonly checkpointer: Checkpointer;
  setClosing(): void;
}

/**
 * Ingest and sender: the webhook role. Every write runs in the writer thread, on its own
 * connection; this thread's handle migrates at start, reads (queue depth, next due row) and
 * runs the rare maintenance writes (sandbox key, retention).
 */
async function buildWriteSide(config: Config, options: ServiceOptions, catalog: Catalog, t: Telemetry, clock: () => number): Promise<WriteSide> {
  const { log } = options;
  const db = openDatabase(config.databasePath);
  const random = options.random ?? Math.random;
  let writer: Writer;
  try {
    writer = await Writer.start({
      databasePath: config.databasePath,
      log,
      settings: {
        packs: catalog.packs,
        maxTapAgeMs: config.unlockMaxTapAgeMs,
        outbox: { unknownWaitMs: config.send.unknownWaitMs, maxAgeMs: config.send.maxAgeMs },
      },
      effects: { delivery: t, ingest: ingestObserver(t), tracer: replayTracer },
    });
  } catch (error) {
    db.close();
    throw error;
  }
  const checkpointer = startCheckpointer(config.databasePath);
  writer.onBatch(batchObserver(t));
  const deliveryStore = createDeliveryStore(db);
  const record = (request: IngestRequest, commit: Span): Promise<IngestOutcome> => {
    // A copy that owns its memory: a Buffer may be a view into a much larger socket buffer, all
    // of which would otherwise be cloned into the message. (Cloning 2 KB costs less than
    // transferring a small ArrayBuffer.)
    const body = new Uint8Array(request.body);
    return writer.submit({ op: 'ingest', body, secretIndex: request.secretIndex, receivedAt: request.receivedAt, trace: traceSeed(commit), jitter: drawJitter(random) }, commit);
  };
  let closing = false;
  const webhook = createWebhookServer({ config, record, log, clock, observer: webhookObserver(t), isClosing: () => closing });
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
    const s = new Sender({
      store: deliveryStore,
      writer,
      graph,
      limiter: new TokenBucket(config.sendRatePerSecond),
      log,
      clock,
      random,
      observer: t,
      tracer: sendTracer,
      ...(options.sender !== undefined ? { settings: options.sender } : {}),
    });
    writer.onCommit(() => s.wake());
    sender = s;
  }
  const backups = config.backup.dir === undefined ? undefined : startBackupSchedule({ db, dir: config.backup.dir, intervalMs: config.backup.intervalMs, keep: config.backup.keep, log });
  const retention = config.retentionDays === undefined ? undefined : startRetention({ db, retentionDays: config.retentionDays, log });
  return { db, writer, webhook, sender, graph, simulator, graphUrl, backups, retention, checkpointer, setClosing: () => (closing = true) };
}

export async function startService(config: Config, options: ServiceOptions): Promise<RunningService> {
  const role = options.role ?? 'all';
  const { log } = options;
  const catalog = options.catalog ?? loadCatalog(config.packsFile);
  const clock = options.clock ?? Date.now;
  const t = options.telemetry?.telemetry ?? createTelemetry();
  t.setPackIds(catalog.packs.map((p) => p.id));
  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;

  const write = role === 'feed' ? undefined : await buildWriteSide(config, options, catalog, t, clock);
  let feed: Feed | undefined;
  let feedDb: Db | undefined;
  let sandboxKey: string | undefined;
  let metrics: MetricsServer | undefined;
  const ports: { webhook?: number; api?: number; ws?: number; metrics?: number } = {};
  let urls: RunningService['urls'] = {};

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      write?.setClosing();
      if (write !== undefined) await closeServer(write.webhook);
      await feed?.close();
      await write?.sender?.stop();
      await write?.backups?.stop();
      await write?.retention?.stop();
      await write?.writer.close();
      await write?.checkpointer.stop();
      write?.graph?.close();
      await write?.simulator?.close();
      await metrics?.close();
      feedDb?.close();
      if (write !== undefined) {
        try {
          write.db.pragma('wal_checkpoint(TRUNCATE)');
        } catch (error) {
          log.warn({ err: (error as Error).message }, 'WAL checkpoint at shutdown failed');
        }
        write.db.close();
      }
      log.info('click-to-unlock stopped');
    })();
    return closed;
  };
  try {
    if (role !== 'webhook') {
      if (write === undefined) {
        // A feed on its own: make sure the file exists and is migrated, then only ever read it.
        const setup = openDatabase(config.databasePath);
        if (config.sandbox) sandboxKey = ensureSandboxKey(setup);
        setup.close();
      } else if (config.sandbox) {
        sandboxKey = ensureSandboxKey(write.db);
      }
      feedDb = openDatabase(config.databasePath, { readonly: true });
      let writable = true;
      write?.writer.onBatch((batch) => (writable = batch.committed));
      feed = createFeed({
        db: feedDb,
        config,
        log,
        clock,
        packs: catalog.packs,
        ...(write !== undefined ? { writable: () => writable } : {}),
        ...(options.extendApi !== undefined ? { extend: options.extendApi } : {}),
      });
      const f = feed;
      write?.writer.onCommit(() => f.notify());
      t.observeWebSocketClients(() => f.clients());
    }

    if (write !== undefined) ports.webhook = await listen(write.webhook, config.ports.webhook, config.host);
    if (feed !== undefined) {
      const bound = await feed.listen();
      ports.api = bound.api;
      ports.ws = bound.ws;
    }
    const runtime = options.telemetry;
    if (runtime !== undefined) {
      metrics = await startMetricsServer({
        port: config.ports.metrics,
        host: config.host,
        appMetricsText: () => runtime.appMetricsText(),
        onError: (error) => log.warn({ err: (error as Error).message }, 'metrics scrape failed'),
      });
      ports.metrics = metrics.port;
    }
    urls = {
      ...(ports.webhook !== undefined ? { webhook: `http://${shownHost}:${ports.webhook}/webhook` } : {}),
      ...(ports.api !== undefined ? { api: `http://${shownHost}:${ports.api}/api`, page: `http://${shownHost}:${ports.api}/` } : {}),
      ...(ports.ws !== undefined ? { ws: `ws://${shownHost}:${ports.ws}/ws` } : {}),
      ...(write?.graphUrl !== undefined ? { graph: write.graphUrl } : {}),
      ...(write?.simulator !== undefined ? { simulator: write.simulator.url } : {}),
      ...(metrics !== undefined ? { metrics: `http://${shownHost}:${metrics.port}/metrics` } : {}),
    };
    if (urls.webhook !== undefined) write?.simulator?.setWebhook(urls.webhook, config.appSecrets[0]);
    write?.sender?.start();
    log.info({ role, ...urls, database: config.databasePath, sandbox: config.sandbox }, 'click-to-unlock started');
  } catch (error) {
    // A port taken, or the feed's read-only connection refused: stop what did start (the writer
    // thread, a listening webhook), so that the process exits with the error instead of serving
    // on. (A failure inside buildWriteSide itself is not covered here.)
    await close().catch((closeError: unknown) => log.warn({ err: (closeError as Error).message }, 'closing after a failed start failed'));
    throw error;
  }
  return {
    role,
    db: write?.db ?? (feedDb as Db),
    committer: write?.writer,
    catalog,
    sender: write?.sender,
    simulator: write?.simulator,
    feed,
    telemetry: t,
    sandboxKey,
    urls,
    ports,
    close,
  };
}
