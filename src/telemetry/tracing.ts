/**
 * Manual spans, named and attributed by the OpenTelemetry semantic conventions. The webhook is
 * traced by hand (one server span and a few children) because automatic http instrumentation
 * halved its throughput.
 *
 * One tap is followed across time by stored W3C trace context: the tap's context is stored
 * with each outbox row (injectTraceparent), the send continues that trace
 * (startSpanFromTraceparent), and the status webhook that reports on a send links to the send's
 * span (startSpanWithLink). Never put a phone number in an attribute: use contactHash(contact).
 */
import {
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  isSpanContextValid,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type AttributeValue,
  type Context,
  type Link,
  type Span,
  type SpanContext,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import { randomFillSync } from 'node:crypto';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { IdGenerator } from '@opentelemetry/sdk-trace-base';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_FULL,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
} from '@opentelemetry/semantic-conventions';
import { holdAsyncContext } from './context-manager';
import { LeanSpan, LeanTracer } from './lean-span';
import { SERVICE_VERSION } from './resource';

export { contactHash } from '../log';
export { SpanKind, SpanStatusCode, type Span, type Context };

export const TRACER_NAME = 'click-to-unlock';
export const ATTR_URL_TEMPLATE = 'url.template'; // still "development" in semantic-conventions 1.38
export const GRAPH_MESSAGES_TEMPLATE = '/{version}/{phone_number_id}/messages';
export const SPAN = {
  verify: 'webhook.verify',
  commit: 'webhook.commit',
  tap: 'unlock.tap',
  send: 'unlock.send',
  status: 'message.status',
} as const;

const propagator = new W3CTraceContextPropagator();
const SERVER = SpanKind.SERVER;
const POST_WEBHOOK = 'POST /webhook';
const STATUS_CODE = ATTR_HTTP_RESPONSE_STATUS_CODE;
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);

// The global provider changes only when the SDK starts or stops; cache the tracer per provider.
let cachedProvider: TracerProvider | undefined;
let cachedTracer: Tracer | undefined;
export function tracer(): Tracer {
  // The global provider is a proxy for the registered one: key the cache on what it delegates
  // to, so a tracer taken before the SDK started is not kept after it started.
  const global = trace.getTracerProvider() as TracerProvider & { getDelegate?: () => TracerProvider };
  const provider = global.getDelegate?.() ?? global;
  if (provider !== cachedProvider || cachedTracer === undefined) {
    cachedProvider = provider;
    cachedTracer = provider.getTracer(TRACER_NAME, SERVICE_VERSION);
  }
  return cachedTracer;
}

// The webhook's spans come from a LeanTracer sharing the SDK tracer's parts (lean-span.ts).
let leanFor: Tracer | undefined;
let cachedLean: LeanTracer | undefined;
function leanTracer(): LeanTracer | undefined {
  const sdkTracer = tracer();
  if (sdkTracer !== leanFor) {
    leanFor = sdkTracer;
    cachedLean = LeanTracer.from(sdkTracer);
  }
  return cachedLean;
}

/** The server span of one webhook request: "POST /webhook", kind SERVER, a root of its trace. */
export function webhookServerSpan(method: string, path: string, serverPort: number, route = '/webhook'): Span {
  const m = KNOWN_METHODS.has(method) ? method : '_OTHER';
  // Literal keys (ATTR_HTTP_REQUEST_METHOD, ATTR_URL_PATH, ATTR_HTTP_ROUTE, ATTR_URL_SCHEME,
  // ATTR_SERVER_PORT): one object shape, and no module getter call per key per request.
  const attributes = { 'http.request.method': m, 'url.path': path, 'http.route': route, 'url.scheme': 'http', 'server.port': serverPort };
  const name = m === 'POST' && route === '/webhook' ? POST_WEBHOOK : `${m} ${route}`;
  const lean = leanTracer();
  if (lean !== undefined) return lean.startSpan(name, SERVER, attributes, undefined, true);
  return tracer().startSpan(name, { kind: SpanKind.SERVER, attributes }, ROOT_CONTEXT);
}

/** The parts of an express request/response (or node:http ones) the REST server span reads. */
export interface ServerRequestLike {
  readonly method?: string;
  readonly url?: string;
  readonly originalUrl?: string;
  readonly baseUrl?: string;
  readonly route?: { readonly path?: unknown };
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly socket?: { readonly localPort?: number };
}
export interface ServerResponseLike {
  readonly statusCode: number;
  once(event: 'finish' | 'close', listener: () => void): unknown;
}

/**
 * Express middleware (mount it first) giving each REST request a SERVER span, named by its
 * route once routing has matched it. Automatic http instrumentation is off (see above), and
 * the express instrumentation only adds middleware and handler spans under an active span, so
 * this is the span they hang from. An incoming W3C traceparent is continued. While the request
 * is in flight it holds async context propagation (context-manager.ts), so the spans and log
 * lines of handlers that await find the request's span. `serverPort` defaults to the port the
 * request came in on.
 */
export function httpServerSpans(serverPort?: number): (req: ServerRequestLike, res: ServerResponseLike, next: () => void) => void {
  return (req, res, next) => {
    const m = KNOWN_METHODS.has(req.method ?? '') ? (req.method as string) : '_OTHER';
    const path = redactPath((req.originalUrl ?? req.url ?? '/').split('?')[0] ?? '/');
    const parent = propagator.extract(ROOT_CONTEXT, req.headers, defaultTextMapGetter);
    const port = serverPort ?? req.socket?.localPort ?? 0;
    const span = tracer().startSpan(
      m,
      { kind: SpanKind.SERVER, attributes: { [ATTR_HTTP_REQUEST_METHOD]: m, [ATTR_URL_PATH]: path, [ATTR_URL_SCHEME]: 'http', [ATTR_SERVER_PORT]: port } },
      parent,
    );
    // Only a recorded span has middleware and handler spans to follow (not with tracing off, nor
    // for a span the sampler dropped): the others leave the webhook free of the async_hooks cost.
    const release = span.isRecording() ? holdAsyncContext() : undefined;
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      const route = typeof req.route?.path === 'string' ? `${req.baseUrl ?? ''}${req.route.path}` : undefined;
      if (route !== undefined) {
        span.setAttribute(ATTR_HTTP_ROUTE, route);
        span.updateName(`${m} ${route}`);
      }
      endServerSpan(span, res.statusCode);
      release?.();
    };
    res.once('finish', end);
    res.once('close', end);
    context.with(trace.setSpan(parent, span), next);
  };
}

/** Ends a server span with its status code; 5xx (and only 5xx) marks a server span as an error. */
export function endServerSpan(span: Span, statusCode: number): void {
  span.setAttribute(STATUS_CODE, statusCode);
  if (statusCode >= 500) {
    span.setAttribute(ATTR_ERROR_TYPE, String(statusCode));
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
  span.end();
}

let forcedSpanId: string | undefined;

/**
 * Random ids, except that a span can be given an id chosen earlier: the writer thread stores
 * a tap's traceparent with its outbox rows inside the transaction, and the main thread makes
 * the tap's span with that id once the transaction committed (withSpanId).
 */
export class ReplayableIdGenerator implements IdGenerator {
  private readonly random = new PooledRandomIds();

  generateTraceId(): string {
    return this.random.hex(32, INVALID_TRACE_ID);
  }

  generateSpanId(): string {
    const forced = forcedSpanId;
    if (forced === undefined) return this.random.hex(16, INVALID_SPAN_ID);
    forcedSpanId = undefined;
    return forced;
  }
}

const INVALID_TRACE_ID = '0'.repeat(32);
const INVALID_SPAN_ID = '0'.repeat(16);

/**
 * Random ids from the system's CSPRNG, cut from a pool of hex: one randomFillSync and one
 * hex conversion serve 1,024 span ids, where the SDK's RandomIdGenerator converts every id on
 * its own (about 1 µs per webhook request, three ids). The cut ids are substrings of the
 * pool's string, so no id costs a copy (a live id keeps its 16 KB pool string alive; ids
 * live no longer than the span queue).
 */
export class PooledRandomIds {
  /** `fill` refills the pool's bytes (tests give their own). */
  constructor(private readonly fill: (bytes: Buffer) => void = randomFillSync) {}

  private readonly bytes = Buffer.allocUnsafe(8_192);
  private pool = '';
  private at = 0;

  /** `length` hex digits, never `invalid` (all zeros, which W3C trace context forbids). */
  hex(length: number, invalid: string): string {
    for (;;) {
      if (this.at + length > this.pool.length) {
        this.fill(this.bytes);
        this.pool = this.bytes.toString('hex');
        this.at = 0;
      }
      const id = this.pool.slice(this.at, this.at + length);
      this.at += length;
      if (id !== invalid) return id;
    }
  }
}

/** Runs `fn`, whose first span started gets `spanId` (with ReplayableIdGenerator installed). */
export function withSpanId<T>(spanId: string, fn: () => T): T {
  forcedSpanId = spanId;
  try {
    return fn();
  } finally {
    forcedSpanId = undefined;
  }
}

/** A child span (webhook.verify, webhook.commit, unlock.tap, …) of `parent`, or of the active span. */
export function childSpan(name: string, parent?: Span | Context, attributes?: Attributes, kind: SpanKind = SpanKind.INTERNAL): Span {
  if (parent instanceof LeanSpan) {
    const lean = leanTracer();
    if (lean !== undefined) return lean.startSpan(name, kind, scrub(attributes), parent);
  }
  return tracer().startSpan(name, { kind, attributes: scrub(attributes) }, toContext(parent));
}

/** Runs `fn` with `span` active, so spans started and log lines written inside it belong to it. */
export function withSpan<T>(span: Span, fn: () => T): T {
  return context.with(trace.setSpan(context.active(), span), fn);
}

/**
 * Binds `fn` to a span (or context; default: the context active now). Needed where work runs
 * later on another stack, as in the group commit: `committer.submit(bindContext(() =>
 * ingest.record(…), requestSpan))` keeps unlock.tap spans under their request's span.
 */
export function bindContext<F extends (...args: never[]) => unknown>(fn: F, to?: Span | Context): F {
  return context.bind(toContext(to), fn);
}

/** The W3C traceparent of a span or context (default: the active one), or null when there is none to continue. */
export function injectTraceparent(from?: Span | Context): string | null {
  const carrier: Record<string, string> = {};
  propagator.inject(toContext(from), carrier, defaultTextMapSetter);
  return carrier.traceparent ?? null;
}

export function spanContextFromTraceparent(traceparent: string | null | undefined): SpanContext | undefined {
  if (traceparent === null || traceparent === undefined || traceparent === '') return undefined;
  const ctx = propagator.extract(ROOT_CONTEXT, { traceparent }, defaultTextMapGetter);
  const spanContext = trace.getSpanContext(ctx);
  return spanContext !== undefined && isSpanContextValid(spanContext) ? spanContext : undefined;
}

/** A span continuing the trace a stored traceparent belongs to (a new root when it is missing or malformed). */
export function startSpanFromTraceparent(name: string, traceparent: string | null | undefined, kind: SpanKind = SpanKind.INTERNAL, attributes?: Attributes): Span {
  const parent = spanContextFromTraceparent(traceparent);
  const ctx = parent === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent);
  return tracer().startSpan(name, { kind, attributes: scrub(attributes) }, ctx);
}

/**
 * A span under the active context that links to another trace's span, e.g. a status webhook's
 * handling linking to the send it reports on.
 */
export function startSpanWithLink(name: string, traceparent: string | null | undefined, attributes?: Attributes, kind: SpanKind = SpanKind.INTERNAL, parent?: Span | Context): Span {
  const linked = spanContextFromTraceparent(traceparent);
  const links: Link[] = linked === undefined ? [] : [{ context: linked }];
  return tracer().startSpan(name, { kind, attributes: scrub(attributes), links }, toContext(parent));
}

/** The CLIENT span of one Graph API call: "POST /{version}/{phone_number_id}/messages". */
export function graphRequestSpan(url: string | URL, parent?: Span | Context, template = GRAPH_MESSAGES_TEMPLATE): Span {
  const u = typeof url === 'string' ? new URL(url) : url;
  const port = u.port !== '' ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  return tracer().startSpan(
    `POST ${template}`,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        [ATTR_HTTP_REQUEST_METHOD]: 'POST',
        [ATTR_SERVER_ADDRESS]: u.hostname,
        [ATTR_SERVER_PORT]: port,
        [ATTR_URL_FULL]: safeUrl(u),
        [ATTR_URL_TEMPLATE]: template,
      },
    },
    toContext(parent),
  );
}

/**
 * Ends a client span. `errorType` is the failure's class when there was no usable response
 * (timeout, network) or the Graph error class; a status >= 400 alone also marks an error.
 */
export function endClientSpan(span: Span, result: { readonly statusCode?: number; readonly errorType?: string }): void {
  if (result.statusCode !== undefined) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, result.statusCode);
  const errorType = result.errorType ?? (result.statusCode !== undefined && result.statusCode >= 400 ? String(result.statusCode) : undefined);
  if (errorType !== undefined) {
    span.setAttribute(ATTR_ERROR_TYPE, errorType);
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
  span.end();
}

/** Marks a span failed with a low-cardinality error.type; the message is kept short and digit runs are masked. */
export function failSpan(span: Span, errorType: string, message?: string): void {
  span.setAttribute(ATTR_ERROR_TYPE, errorType);
  span.setStatus({ code: SpanStatusCode.ERROR, ...(message !== undefined ? { message: maskDigits(message).slice(0, 200) } : {}) });
}

/** Query strings can carry access tokens, user info can carry credentials: neither goes into url.full. */
export function safeUrl(u: URL): string {
  return `${u.protocol}//${u.host}${u.pathname}`;
}

/**
 * Safety net for attributes passed through these helpers: a string that looks like a phone
 * number (7 or more digits, optionally with + and separators) is replaced.
 */
export function scrub(attributes: Attributes | undefined): Attributes | undefined {
  if (attributes === undefined) return undefined;
  let out: Attributes | undefined;
  for (const [key, value] of Object.entries(attributes)) {
    if (looksLikeNumber(value)) {
      out ??= { ...attributes };
      out[key] = '[redacted]';
    }
  }
  return out ?? attributes;
}

function looksLikeNumber(value: AttributeValue | undefined): boolean {
  return typeof value === 'string' && /^\+?[\d\s().-]{7,}$/.test(value) && digitCount(value) >= 7;
}

/**
 * A request path for url.path: a path can name a contact (/api/contacts/{number}/messages), so
 * every segment with 5 or more digits, percent-escapes decoded, becomes [redacted] (invariant 9).
 */
function redactPath(path: string): string {
  return path
    .split('/')
    .map((segment) => (digitCount(decoded(segment)) >= 5 ? '[redacted]' : segment))
    .join('/');
}

function decoded(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function digitCount(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) n++;
  }
  return n;
}

function maskDigits(text: string): string {
  return text.replace(/\+?\d[\d\s-]{5,}\d/g, '[redacted]');
}

function toContext(parent: Span | Context | undefined): Context {
  if (parent === undefined) return context.active();
  return isSpan(parent) ? trace.setSpan(context.active(), parent) : parent;
}

function isSpan(value: Span | Context): value is Span {
  return typeof (value as Span).spanContext === 'function';
}
