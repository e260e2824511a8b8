/**
 * `startSimulator(options)`: the simulated Meta on one loopback port — the Graph API send
 * endpoint (graph-api.ts), the status webhooks it calls back with (status-webhooks.ts), the
 * fault modes (faults.ts), the send log (send-log.ts) and the /_sim control routes
 * (control.ts). close() ends every timer, held answer and socket.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeServer, listen } from '../http-listen';
import { handleControl, type ControlTarget } from './control';
import { FaultState, type FaultSettings } from './faults';
import { createWamidSource, handleGraphRequest, OpenAnswers, send, type SendCounters } from './graph-api';
import { graphErrorAnswer } from './graph-errors';
import { SIMULATOR_ACCESS_TOKEN, SIMULATOR_APP_SECRET, SIMULATOR_DISPLAY_PHONE_NUMBER, SIMULATOR_PHONE_NUMBER_ID, SIMULATOR_WABA_ID } from './identity';
import { createRandom } from './prng';
import { SendLog, type SimRejection, type SimStatusDelivery } from './send-log';
import {
  DEFAULT_STATUS_BEHAVIOUR,
  DEFAULT_WEBHOOK_DELIVERY,
  StatusWebhooks,
  type StatusBehaviour,
  type StatusCounters,
  type WebhookDeliveryOptions,
} from './status-webhooks';

export interface SimulatorOptions {
  readonly host?: string; // default 127.0.0.1
  readonly port?: number; // default 0 (ephemeral)
  readonly accessToken?: string; // the Bearer token sends must carry
  readonly phoneNumberId?: string; // the only number id that accepts sends
  readonly displayPhoneNumber?: string;
  readonly wabaId?: string;
  /** Our webhook (POST /webhook). May be set later with setWebhook; statuses wait until then. */
  readonly webhookUrl?: string;
  readonly appSecret?: string; // signs the status webhooks
  readonly statuses?: Partial<StatusBehaviour>;
  readonly delivery?: Partial<WebhookDeliveryOptions>;
  readonly faults?: FaultSettings;
  readonly seed?: number; // same seed, same fault and status decisions
  readonly clock?: () => number; // ms; for acceptedAt and status timestamps
  readonly logLimit?: number; // entries kept per log (default 200,000)
  readonly bodyLimitBytes?: number; // default 1 MiB
}

export interface SimStats extends Readonly<SendCounters> {
  readonly duplicateSends: number;
  readonly statuses: Readonly<StatusCounters> & { readonly pending: number };
}

/** The /_sim control routes' operations (ControlTarget) plus what tests and benchmarks read directly. */
export interface Simulator extends ControlTarget {
  /** Graph base URL, e.g. http://127.0.0.1:40123 — what META_GRAPH_URL should be. */
  readonly url: string;
  readonly port: number;
  readonly accessToken: string;
  readonly phoneNumberId: string;
  readonly wabaId: string;
  readonly displayPhoneNumber: string;
  /** Every request not accepted: auth, validation, path, fault (status 0 = hung, never answered). */
  readonly rejections: readonly SimRejection[];
  /** Every status callback our webhook answered 200 to. */
  readonly statusDeliveries: readonly SimStatusDelivery[];
  /** Accepted sends whose callbackData had already been accepted before. */
  readonly duplicateSends: number;
  messagesUrl(version?: string): string;
  waitFor<T>(check: () => T | undefined | null | false, timeoutMs?: number): Promise<T>;
  /** Resolves when no status callback is pending (delivered or given up). */
  idle(timeoutMs?: number): Promise<void>;
  stats(): SimStats;
  close(): Promise<void>;
}

const DEFAULT_LOG_LIMIT = 200_000;
const DEFAULT_BODY_LIMIT = 1024 * 1024;
const DEFAULT_WAIT_MS = 10_000;

export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const random = createRandom(options.seed);
  const clock = options.clock ?? Date.now;
  const identity = {
    wabaId: options.wabaId ?? SIMULATOR_WABA_ID,
    phoneNumberId: options.phoneNumberId ?? SIMULATOR_PHONE_NUMBER_ID,
    displayPhoneNumber: options.displayPhoneNumber ?? SIMULATOR_DISPLAY_PHONE_NUMBER,
  };
  const accessToken = options.accessToken ?? SIMULATOR_ACCESS_TOKEN;
  let appSecret = options.appSecret ?? SIMULATOR_APP_SECRET;
  const log = new SendLog(options.logLimit ?? DEFAULT_LOG_LIMIT);
  const delivery = { ...DEFAULT_WEBHOOK_DELIVERY, ...options.delivery };
  // Ending an outage releases the statuses it held.
  const faults = new FaultState(random, () => webhooks.resume());
  const webhooks = new StatusWebhooks(identity, { ...DEFAULT_STATUS_BEHAVIOUR, ...options.statuses }, delivery, faults, log, random, clock);
  if (options.faults !== undefined) faults.set(options.faults);
  if (options.webhookUrl !== undefined) webhooks.setTarget(options.webhookUrl, appSecret);

  const counters: SendCounters = { requests: 0, accepted: 0, rejected: 0, hung: 0, unanswered: 0, slowed: 0, markedRead: 0 };
  const answers = new OpenAnswers();
  const nextWamid = createWamidSource();
  const graph = { accessToken, phoneNumberId: identity.phoneNumberId, faults, statuses: webhooks, log, clock, counters, answers };
  const bodyLimit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT;
  let closing: Promise<void> | undefined;

  const sim: Simulator = {
    url: '',
    port: 0,
    accessToken,
    ...identity,
    sends: log.sends,
    rejections: log.rejections,
    statusDeliveries: log.statusDeliveries,
    get duplicateSends() {
      return log.duplicateSends;
    },
    messagesUrl: (version = 'v23.0') => `${sim.url}/${version}/${identity.phoneNumberId}/messages`,
    sendsTo: (contact) => log.sendsTo(contact),
    waitFor: (check, timeoutMs = DEFAULT_WAIT_MS) => log.waitFor(check, timeoutMs),
    idle: async (timeoutMs = DEFAULT_WAIT_MS) => {
      await log.waitFor(() => webhooks.pending === 0, timeoutMs);
    },
    setFaults: (settings) => faults.set(settings),
    updateFaults: (patch) => faults.update(patch),
    faults: () => faults.current(),
    configureStatuses: (patch) => webhooks.configure(patch),
    statusBehaviour: () => webhooks.currentBehaviour,
    setWebhook: (url, secret) => {
      if (secret !== undefined) appSecret = secret;
      webhooks.setTarget(url, appSecret);
    },
    stats: () => ({ ...counters, duplicateSends: log.duplicateSends, statuses: { ...webhooks.counters, pending: webhooks.pending } }),
    reset: () => {
      log.clear();
      for (const key of Object.keys(counters) as Array<keyof SendCounters>) counters[key] = 0;
      for (const key of Object.keys(webhooks.counters) as Array<keyof StatusCounters>) webhooks.counters[key] = 0;
    },
    close: () => {
      if (closing === undefined) {
        webhooks.close();
        answers.close();
        log.closeWaiters();
        // Held answers were just ended: nothing in flight is worth waiting for.
        closing = closeServer(server, 0);
      }
      return closing;
    },
  };

  const server = createServer((req, res) => {
    readBody(req, res, bodyLimit, (body) => {
      const url = new URL(req.url ?? '/', 'http://simulator.invalid');
      if (url.pathname.startsWith('/_sim/')) return handleControl(sim, req.method ?? 'GET', url, body, res);
      return handleGraphRequest(graph, req, res, url, body, nextWamid);
    });
  });
  server.keepAliveTimeout = 65_000;

  await listen(server, options.port ?? 0, options.host ?? '127.0.0.1');
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  Object.assign(sim, { url: `http://${host}:${address.port}`, port: address.port });
  return sim;
}

function readBody(req: IncomingMessage, res: ServerResponse, limit: number, then: (body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > limit) tooLarge = true;
    else chunks.push(chunk);
  });
  req.on('end', () => {
    if (!tooLarge) return then(Buffer.concat(chunks, size));
    const answer = graphErrorAnswer(100, { status: 413, details: `Request body exceeds ${limit} bytes.` });
    send(res, answer.status, answer.body, { ...answer.headers, Connection: 'close' });
  });
  req.on('error', () => res.destroy());
}
