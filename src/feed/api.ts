/**
 * The REST API on API_PORT (express 5). Routes validate their query with one schema each and
 * delegate to reports.ts; one error handler turns anything thrown into a problem answer that
 * names no stack, SQL or path. Order matters: security headers and CORS first, then the two
 * public routes (health, OpenAPI), then the key check and the per-key rate limit.
 */
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import helmet from 'helmet';
import type { Logger } from '../log';
import { httpServerSpans } from '../telemetry/tracing';
import { isStorageUnavailable } from '../store/database';
import type { FeedStore } from '../store/feed-store';
import type { ApiKeyInfo, KeyReader } from '../store/key-store';
import { authenticate, KeyRateLimiter, TicketBook, UNAUTHORIZED, WWW_AUTHENTICATE } from './auth';
import { openApiDocument } from './openapi';
import { ProblemError, problem, sendProblem } from './problems';
import * as q from './queries';
import * as reports from './reports';
import type { Health, WsTicket } from './responses';

export interface ApiDeps {
  readonly store: FeedStore;
  readonly keys: KeyReader;
  readonly tickets: TicketBook;
  readonly limiter: KeyRateLimiter;
  readonly packs: readonly reports.PackInfo[];
  readonly origins: readonly string[];
  readonly version: string;
  readonly log: Logger;
  readonly clock: () => number;
  /** Mounts more routes (e.g. the live dashboard page at `/`) before the final 404. */
  readonly extend?: (app: Express) => void;
  /** Whether the last commit succeeded (in a process that writes); readiness is false while it fails. */
  readonly writable?: () => boolean;
}

const ROUTES: ReadonlyArray<readonly [path: string, method: string]> = [
  ['/api/health', 'GET'],
  ['/api/openapi.json', 'GET'],
  ['/api/summary', 'GET'],
  ['/api/clicks', 'GET'],
  ['/api/contacts/:contact/messages', 'GET'],
  ['/api/performance', 'GET'],
  ['/api/events', 'GET'],
  ['/api/packs', 'GET'],
  ['/api/ws-ticket', 'POST'],
];

export function createApiApp(deps: ApiDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  // First, so every request has its server span and the express instrumentation's spans hang under it.
  app.use(httpServerSpans());
  app.set('query parser', 'simple');
  app.use(
    helmet({
      // The live page opens the WebSocket on another port, which CSP counts as another origin.
      contentSecurityPolicy: { directives: { 'connect-src': ["'self'", 'ws:', 'wss:'] } },
    }),
  );
  app.use(cors(deps.origins));
  app.use('/api', (_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });

  const document = JSON.stringify(openApiDocument(deps.version));
  app.get('/api/openapi.json', (_req, res) => {
    res.type('application/json').send(document);
  });
  app.get('/api/health', (_req, res) => {
    const body = health(deps);
    res.status(body.status === 'ok' ? 200 : 503).json(body);
  });

  app.use('/api', requireKey(deps));

  app.get('/api/summary', (req, res) => {
    const query = q.parseQuery(q.summaryQuery, req.query);
    res.json(reports.summary(deps.store, q.resolveWindow(query, deps.clock())));
  });
  app.get('/api/clicks', (req, res) => {
    const query = q.parseQuery(q.clicksQuery, req.query);
    res.json(reports.clicks(deps.store, q.resolveWindow(query, deps.clock()), query.bucket, query.pack));
  });
  app.get('/api/contacts/:contact/messages', (req, res) => {
    const { contact } = q.parseQuery(q.historyParams, { ...req.params });
    const query = q.parseQuery(q.historyQuery, req.query);
    res.json(reports.history(deps.store, contact, query.cursor, query.limit));
  });
  app.get('/api/performance', (req, res) => {
    const query = q.parseQuery(q.performanceQuery, req.query);
    res.json(reports.performance(deps.store, q.resolveWindow(query, deps.clock())));
  });
  app.get('/api/events', (req, res) => {
    const query = q.parseQuery(q.eventsQuery, req.query);
    const head = deps.store.headSeq();
    const page = deps.store.events(query.after, head, query.types, query.limit);
    // The stored data is already JSON text: splice it in rather than parse and re-serialise.
    const events = page.events.map((e) => `{"seq":${e.seq},"type":${JSON.stringify(e.type)},"at":"${new Date(e.at).toISOString()}","data":${e.data}}`);
    res
      .type('application/json')
      .send(`{"events":[${events.join(',')}],"next_after":${page.next},"head":${head},"has_more":${page.next < head}}`);
  });
  app.get('/api/packs', (req, res) => {
    const query = q.parseQuery(q.packsQuery, req.query);
    res.json(reports.packs(deps.store, q.resolveWindow(query, deps.clock()), deps.packs));
  });
  app.post('/api/ws-ticket', (_req, res) => {
    const key = res.locals.key as ApiKeyInfo;
    const now = deps.clock();
    const { ticket, expiresAt } = deps.tickets.issue(key.id, now);
    const body: WsTicket = { ticket, expires_at: new Date(expiresAt).toISOString(), expires_in_seconds: Math.round((expiresAt - now) / 1000) };
    res.status(201).json(body);
  });

  for (const [path, method] of ROUTES) {
    app.all(path, (_req, res) => sendProblem(res, problem('method_not_allowed', `Use ${method}.`), { Allow: method }));
  }
  app.use('/api', (_req, res) => sendProblem(res, problem('not_found', 'No such endpoint; see /api/openapi.json.')));
  deps.extend?.(app);
  app.use((_req, res) => sendProblem(res, problem('not_found')));
  app.use(errorHandler(deps.log));
  return app;
}

function health(deps: ApiDeps): Health {
  const now = deps.clock();
  const base = { version: deps.version, time: new Date(now).toISOString() };
  try {
    if (!deps.store.ping()) throw new Error('ping failed');
    const queue = deps.store.queue();
    const last = deps.store.lastWebhookAt();
    const writable = deps.writable?.() ?? null;
    return {
      // Not ready while commits fail (locked, disk full): the webhook answers 503 then too.
      status: writable === false ? 'unavailable' : 'ok',
      ...base,
      database: { ok: true, writable },
      sender: { queue_depth: queue.depth, oldest_pending_age_seconds: queue.oldest === null ? null : Math.max(0, (now - queue.oldest) / 1000) },
      webhook: { last_received_at: last === null ? null : new Date(last).toISOString(), seconds_since_last: last === null ? null : Math.max(0, (now - last) / 1000) },
    };
  } catch (error) {
    deps.log.warn({ err: (error as Error).message }, 'feed health check: database not readable');
    return { status: 'unavailable', ...base, database: { ok: false, writable: deps.writable?.() ?? null }, sender: null, webhook: null };
  }
}

function requireKey(deps: ApiDeps) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const key = authenticate(deps.keys, req.headers.authorization);
    if (key === undefined) return sendProblem(res, UNAUTHORIZED, { 'WWW-Authenticate': WWW_AUTHENTICATE });
    const wait = deps.limiter.take(key.id, deps.clock());
    if (wait > 0) return sendProblem(res, problem('too_many_requests', `Retry after ${wait} s.`), { 'Retry-After': String(wait) });
    res.locals.key = key;
    next();
  };
}

/** CORS for exactly the allowlisted origins; a foreign origin gets no CORS headers (and its preflight a 403). */
function cors(origins: readonly string[]) {
  const allowed = new Set(origins);
  return (req: Request, res: Response, next: NextFunction): void => {
    res.vary('Origin');
    const origin = req.headers.origin;
    const ok = origin !== undefined && allowed.has(origin);
    if (ok) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Expose-Headers', 'Retry-After, WWW-Authenticate');
    }
    if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
      if (!ok) return sendProblem(res, problem('forbidden_origin'));
      res.setHeader('Access-Control-Allow-Methods', 'GET, POST');
      res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type');
      res.setHeader('Access-Control-Max-Age', '600');
      res.status(204).end();
      return;
    }
    next();
  };
}

function errorHandler(log: Logger) {
  return (error: unknown, _req: Request, res: Response, next: NextFunction): void => {
    if (res.headersSent) return next(error);
    if (error instanceof ProblemError) return sendProblem(res, error.body, error.headers);
    const status = (error as { status?: unknown }).status;
    // express's own 4xx (a path that does not decode, a body it refuses) are the client's fault.
    if (typeof status === 'number' && status >= 400 && status < 500) return sendProblem(res, problem(status === 404 ? 'not_found' : 'bad_request'));
    if (isStorageUnavailable(error)) {
      log.warn({ code: (error as { code?: unknown }).code }, 'feed: database not readable');
      return sendProblem(res, problem('unavailable'), { 'Retry-After': '1' });
    }
    log.error({ err: error instanceof Error ? { name: error.name, message: error.message } : String(error) }, 'feed: request failed');
    sendProblem(res, problem('internal'));
  };
}
