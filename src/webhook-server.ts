/**
 * The webhook's HTTP surface on WEBHOOK_PORT, on bare node:http: this is the hot path and a
 * framework's per-request overhead halves its throughput (see docs/decisions/0002).
 *
 *   GET  /webhook  verification handshake: echo hub.challenge when the verify token matches
 *   POST /webhook  signed callbacks: verify HMAC of the raw bytes → record in the writer
 *                  thread's next group commit → 200 only after COMMIT; 503 when the
 *                  database cannot commit
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Config } from './config';
import { StorageUnavailableError } from './group-commit';
import type { IngestOutcome, IngestRequest } from './ingest';
import type { Logger } from './log';
import { safeEqual, verifySignature, type SignatureFailure } from './signature';
import { childSpan, endServerSpan, failSpan, SPAN, webhookServerSpan, type Span } from './telemetry/tracing';

export type WebhookResult = 'accepted' | 'duplicate' | 'bad_signature' | 'too_large' | 'unavailable' | 'error';

export interface WebhookObserver {
  /** One per POST, with its outcome and the time from first byte to answer. */
  request?(result: WebhookResult, seconds: number): void;
  signatureFailure?(reason: SignatureFailure): void;
  handshake?(ok: boolean): void;
}

export interface WebhookDeps {
  readonly config: Pick<Config, 'appSecrets' | 'verifyToken' | 'webhookBodyLimitBytes'>;
  /** Records a verified POST durably; resolves only after its COMMIT. `commit` is the span around it. */
  readonly record: (request: IngestRequest, commit: Span) => Promise<IngestOutcome>;
  readonly log: Logger;
  readonly observer?: WebhookObserver;
  readonly clock?: () => number;
  /** Set while shutting down: new POSTs get 503 so Meta retries them elsewhere or later. */
  readonly isClosing?: () => boolean;
}

const PATH = '/webhook';

export function createWebhookServer(deps: WebhookDeps): Server {
  const server = createServer((req, res) => handle(deps, req, res));
  server.requestTimeout = 15_000; // slow clients are cut off
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 65_000; // longer than typical load balancer idle timeouts
  return server;
}

function handle(deps: WebhookDeps, req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (path !== PATH) return reply(res, 404, 'not found\n');
  if (req.method === 'GET') return handshake(deps, url, res);
  if (req.method === 'POST') return receive(deps, req, res);
  res.setHeader('Allow', 'GET, POST');
  return reply(res, 405, 'method not allowed\n');
}

function handshake(deps: WebhookDeps, url: string, res: ServerResponse): void {
  const params = new URL(url, 'http://webhook.invalid').searchParams;
  const ok =
    params.get('hub.mode') === 'subscribe' &&
    params.get('hub.challenge') !== null &&
    safeEqual(params.get('hub.verify_token') ?? '', deps.config.verifyToken);
  deps.observer?.handshake?.(ok);
  if (!ok) return reply(res, 403, 'forbidden\n');
  return reply(res, 200, params.get('hub.challenge') ?? '');
}

function receive(deps: WebhookDeps, req: IncomingMessage, res: ServerResponse): void {
  const started = performance.now();
  // Manual spans: automatic http instrumentation costs half the throughput here (decision 0002).
  const span = webhookServerSpan('POST', PATH, req.socket.localPort ?? 0);
  const done = (result: WebhookResult, status: number, body: string, headers?: Record<string, string>): void => {
    if (headers !== undefined) for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    reply(res, status, body);
    endServerSpan(span, status);
    deps.observer?.request?.(result, (performance.now() - started) / 1000);
  };
  if (deps.isClosing?.() === true) return done('unavailable', 503, 'shutting down\n', { 'Retry-After': '5', Connection: 'close' });

  const limit = deps.config.webhookBodyLimitBytes;
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (declared > limit) return tooLarge(req, res, done);

  const chunks: Buffer[] = [];
  let size = 0;
  let aborted = false;
  req.on('data', (chunk: Buffer) => {
    if (aborted) return;
    size += chunk.length;
    if (size > limit) {
      aborted = true;
      tooLarge(req, res, done);
      return;
    }
    chunks.push(chunk);
  });
  req.on('error', () => {
    aborted = true;
  });
  req.on('end', () => {
    if (aborted) return;
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
    const verify = childSpan(SPAN.verify, span);
    const check = verifySignature(body, req.headers['x-hub-signature-256'], deps.config.appSecrets);
    if (!check.ok) failSpan(verify, check.reason);
    verify.end();
    if (!check.ok) {
      deps.observer?.signatureFailure?.(check.reason);
      return done('bad_signature', 401, 'invalid signature\n');
    }
    const receivedAt = (deps.clock ?? Date.now)();
    const commit = childSpan(SPAN.commit, span);
    deps
      .record({ body, secretIndex: check.secretIndex, receivedAt }, commit)
      .then(
        (outcome) => {
          commit.end();
          done(outcome.duplicateBody ? 'duplicate' : 'accepted', 200, 'EVENT_RECEIVED');
        },
        (error: unknown) => {
          failSpan(commit, error instanceof StorageUnavailableError ? 'storage_unavailable' : 'internal');
          commit.end();
          if (error instanceof StorageUnavailableError) {
            deps.log.warn({ err: error.message }, 'webhook not committed: database unavailable, answering 503');
            return done('unavailable', 503, 'storage unavailable, retry later\n', { 'Retry-After': '5' });
          }
          deps.log.error({ err: error instanceof Error ? error.message : String(error) }, 'webhook record failed');
          return done('error', 500, 'internal error\n');
        },
      );
  });
}

function tooLarge(req: IncomingMessage, res: ServerResponse, done: (r: WebhookResult, s: number, b: string, h?: Record<string, string>) => void): void {
  // Answer without reading the rest, and close so the unread body does not poison keep-alive.
  done('too_large', 413, 'payload too large\n', { Connection: 'close' });
  res.once('finish', () => req.destroy());
}

function reply(res: ServerResponse, status: number, body: string): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
