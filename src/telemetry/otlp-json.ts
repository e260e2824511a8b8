/**
 * The OTLP/JSON span serializer behind OTEL_EXPORTER_OTLP_PROTOCOL=http/json (otlp-traces.ts
 * exports with it). The library's JsonTraceSerializer first builds an OTLP object tree for
 * every span and then JSON.stringify's it; on the webhook hot path that cost ~14 µs per
 * request. Here the same JSON text is written directly as strings.
 *
 * The output matches @opentelemetry/otlp-transformer 0.223.0 byte for byte (test/otlp-encoding.test.ts
 * compares them): same key order, same omission of undefined fields, ids as hex strings,
 * timestamps as decimal nanosecond strings, integers as intValue and other numbers as
 * doubleValue (NaN and ±Infinity become null, as JSON.stringify makes them), spans grouped
 * by resource object and then by instrumentation scope name@version:schemaUrl.
 *
 * Why it is shaped like this: concatenated strings are ropes, and turning a rope into bytes
 * costs per piece, so fixed text is kept in few, long constants (quotes included, strings
 * escaped without their quotes), and the text is encoded in chunks of about CHUNK_CHARS so no
 * batch-sized flat copy of it is ever made.
 */
import { diag, type Attributes, type HrTime, type Link, type SpanStatus } from '@opentelemetry/api';
import type { IExportTraceServiceResponse, ISerializer } from '@opentelemetry/otlp-transformer';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';

/** Text encoded per chunk: small enough to stay in the young generation, large enough to amortise the encode call. */
const CHUNK_CHARS = 8 * 1024;

// OTLP span flags: the low byte is the W3C trace flags; bit 8 says whether bit 9 (remote parent) is known.
const FLAG_HAS_IS_REMOTE = 0x100;
const FLAG_IS_REMOTE = 0x200;

const NANOS_PER_SECOND = 1_000_000_000;
const NANOS_PER_SECOND_BIG = 1_000_000_000n;

export const otlpJsonTraceSerializer: ISerializer<ReadableSpan[], IExportTraceServiceResponse> = {
  serializeRequest: encodeSpans,
  deserializeResponse(data) {
    if (data.length === 0) return {};
    try {
      return JSON.parse(new TextDecoder().decode(data)) as IExportTraceServiceResponse;
    } catch (error) {
      diag.warn(`Failed to parse trace export response: ${error instanceof Error ? error.message : String(error)}. Returning empty response`);
      return {};
    }
  },
};

/** The ExportTraceServiceRequest for these spans as UTF-8 OTLP/JSON. */
export function encodeSpans(spans: readonly ReadableSpan[]): Uint8Array {
  const chunks: Buffer[] = [];
  let bytes = 0;
  let out = '{"resourceSpans":[';
  let resourceSep = '';
  for (const [resource, byScope] of groupByResourceAndScope(spans, scopeNameKey)) {
    out += resourceSep + '{"resource":' + resourceJson(resource) + ',"scopeSpans":[';
    resourceSep = ',';
    let scopeSep = '';
    for (const group of byScope.values()) {
      const scope = group[0]!.instrumentationScope;
      out += scopeSep + '{"scope":' + scopeJson(scope) + ',"spans":[';
      scopeSep = ',';
      let spanSep = '';
      for (const span of group) {
        out += spanSep + spanJson(span);
        spanSep = ',';
        if (out.length >= CHUNK_CHARS) {
          const chunk = Buffer.from(out, 'utf8');
          chunks.push(chunk);
          bytes += chunk.length;
          out = '';
        }
      }
      out += ']';
      if (scope.schemaUrl !== undefined) out += ',"schemaUrl":"' + inner(scope.schemaUrl) + '"';
      out += '}';
    }
    out += ']';
    if (resource.schemaUrl) out += ',"schemaUrl":"' + inner(resource.schemaUrl) + '"';
    out += '}';
  }
  const last = Buffer.from(out + ']}', 'utf8');
  if (chunks.length === 0) return last;
  chunks.push(last);
  return Buffer.concat(chunks, bytes + last.length);
}

type Scope = ReadableSpan['instrumentationScope'];

/**
 * Spans by resource object, then by `scopeKey` of their scope, each in order of first
 * appearance. The JSON mapping keys scopes by name@version:schemaUrl (scopes equal in those
 * share one ScopeSpans, as in the library's JSON); the protobuf one by scope object.
 */
export function groupByResourceAndScope<K>(spans: readonly ReadableSpan[], scopeKey: (scope: Scope) => K): Map<Resource, Map<K, readonly ReadableSpan[]>> {
  const byResource = new Map<Resource, Map<K, ReadableSpan[]>>();
  const first = spans[0];
  if (first !== undefined && spans.every((s) => s.resource === first.resource && s.instrumentationScope === first.instrumentationScope)) {
    // One resource and one scope object, as a batch of webhook spans is: the batch is the group.
    return new Map([[first.resource, new Map([[scopeKey(first.instrumentationScope), spans]])]]);
  }
  // A batch is nearly always one resource and a few scope objects in runs: skip the key for repeats.
  let lastResource: Resource | undefined;
  let lastScope: Scope | undefined;
  let lastGroup: ReadableSpan[] | undefined;
  for (const span of spans) {
    const resource = span.resource;
    const scope = span.instrumentationScope;
    if (lastGroup !== undefined && resource === lastResource && scope === lastScope) {
      lastGroup.push(span);
      continue;
    }
    let byScope = byResource.get(resource);
    if (byScope === undefined) {
      byScope = new Map();
      byResource.set(resource, byScope);
    }
    const key = scopeKey(scope);
    let group = byScope.get(key);
    if (group === undefined) {
      group = [];
      byScope.set(key, group);
    }
    group.push(span);
    lastResource = resource;
    lastScope = scope;
    lastGroup = group;
  }
  return byResource;
}

/** The library's JSON key: scopes equal in name, version and schema URL share one ScopeSpans. */
const scopeNameKey = (scope: Scope): string => `${scope.name}@${scope.version || ''}:${scope.schemaUrl || ''}`;

function resourceJson(resource: Resource): string {
  let out = '{"attributes":' + keyValues(resource.attributes) + ',"droppedAttributesCount":0';
  if (resource.schemaUrl) out += ',"schemaUrl":"' + inner(resource.schemaUrl) + '"';
  return out + '}';
}

function scopeJson(scope: Scope): string {
  let out = '{"name":"' + inner(scope.name) + '"';
  if (scope.version !== undefined) out += ',"version":"' + inner(scope.version) + '"';
  // Not in this core version's InstrumentationScope type, but the library writes them when present.
  const { attributes, droppedAttributesCount } = scope as Scope & { attributes?: Attributes; droppedAttributesCount?: number };
  if (attributes && Object.keys(attributes).length > 0) {
    out += ',"attributes":' + keyValues(attributes) + ',"droppedAttributesCount":' + num(droppedAttributesCount ?? 0);
  }
  return out + '}';
}

// The API's SpanKind has no UNSPECIFIED, so OTLP's enum is one higher; kind 0 stands for a missing kind.
const KIND_TO_START = ['0', '1', '2', '3', '4', '5'].map((kind) => `","kind":${kind},"startTimeUnixNano":"`);
const STATUS_CODE_TO_LINKS = ['0', '1', '2'].map((code) => `,"status":{"code":${code}},"links":[`);

function spanJson(span: ReadableSpan): string {
  const context = span.spanContext();
  const parent = span.parentSpanContext;
  let out = '{"traceId":"' + inner(context.traceId) + '","spanId":"' + inner(context.spanId);
  if (parent?.spanId) out += '","parentSpanId":"' + inner(parent.spanId);
  const traceState = context.traceState?.serialize();
  if (traceState !== undefined) out += '","traceState":"' + inner(traceState);
  const kind = span.kind == null ? 0 : span.kind + 1;
  out +=
    '","name":"' + inner(span.name) +
    (KIND_TO_START[kind] ?? '","kind":' + num(kind) + ',"startTimeUnixNano":"') + nanos(span.startTime) +
    '","endTimeUnixNano":"' + nanos(span.endTime) +
    '","attributes":' + keyValues(span.attributes);

  const droppedAttributes = span.droppedAttributesCount;
  if (droppedAttributes === 0) out += ',"droppedAttributesCount":0,"events":[';
  else out += (droppedAttributes === undefined ? '' : ',"droppedAttributesCount":' + num(droppedAttributes)) + ',"events":[';
  let sep = '';
  for (const event of span.events) {
    out += sep + eventJson(event);
    sep = ',';
  }

  const droppedEvents = span.droppedEventsCount;
  if (droppedEvents === 0) out += '],"droppedEventsCount":0';
  else out += droppedEvents === undefined ? ']' : '],"droppedEventsCount":' + num(droppedEvents);
  const status = span.status;
  const fast = status.message === undefined ? STATUS_CODE_TO_LINKS[status.code] : undefined;
  out += fast ?? ',"status":' + statusJson(status) + ',"links":[';
  sep = '';
  for (const link of span.links) {
    out += sep + linkJson(link);
    sep = ',';
  }

  const droppedLinks = span.droppedLinksCount;
  if (droppedLinks === 0) out += '],"droppedLinksCount":0,"flags":';
  else out += (droppedLinks === undefined ? ']' : '],"droppedLinksCount":' + num(droppedLinks)) + ',"flags":';
  return out + flags(context.traceFlags, parent?.isRemote) + '}';
}

function statusJson(status: SpanStatus): string {
  const code = status.code as SpanStatus['code'] | undefined;
  const message = status.message === undefined ? '' : '"message":"' + inner(status.message) + '"';
  if (code === undefined) return '{' + message + '}';
  return '{"code":' + num(code) + (message === '' ? '}' : ',' + message + '}');
}

function eventJson(event: TimedEvent): string {
  return (
    '{"attributes":' + (event.attributes ? keyValues(event.attributes) : '[]') +
    ',"name":"' + inner(event.name) +
    '","timeUnixNano":"' + nanos(event.time) +
    '","droppedAttributesCount":' + num(event.droppedAttributesCount || 0) + '}'
  );
}

function linkJson(link: Link): string {
  const context = link.context;
  let out =
    '{"attributes":' + (link.attributes ? keyValues(link.attributes) : '[]') +
    ',"spanId":"' + inner(context.spanId) +
    '","traceId":"' + inner(context.traceId) + '"';
  const traceState = context.traceState?.serialize();
  if (traceState !== undefined) out += ',"traceState":"' + inner(traceState) + '"';
  return out + ',"droppedAttributesCount":' + num(link.droppedAttributesCount || 0) + ',"flags":' + flags(context.traceFlags, context.isRemote) + '}';
}

function flags(traceFlags: number, isRemote: boolean | undefined): string {
  return String((traceFlags & 0xff) | FLAG_HAS_IS_REMOTE | (isRemote ? FLAG_IS_REMOTE : 0));
}

/** A KeyValue list; also the body of a kvlistValue. */
function keyValues(attributes: Readonly<Record<string, unknown>>): string {
  let out = '[';
  let first = true;
  for (const key of Object.keys(attributes)) {
    const prefix = keyPrefix(key);
    out += (first ? prefix.slice(1) : prefix) + anyValue(attributes[key], true);
    first = false;
  }
  return out + ']';
}

// Attribute keys come from a small fixed set in practice; a stream of unusual keys empties the cache at its cap,
// so it stays bounded and the usual keys come back into it.
const KEY_PREFIX_CACHE_MAX = 1_024;
const keyPrefixes = new Map<string, string>();

/** `,{"key":"…","value":` — the separator is included so a list costs one piece per key. */
function keyPrefix(key: string): string {
  let prefix = keyPrefixes.get(key);
  if (prefix === undefined) {
    prefix = ',{"key":"' + inner(key) + '","value":';
    if (keyPrefixes.size >= KEY_PREFIX_CACHE_MAX) keyPrefixes.clear();
    keyPrefixes.set(key, prefix);
  }
  return prefix;
}

/** An AnyValue; with `closeKeyValue` also the "}" that ends its KeyValue, to save a piece. */
function anyValue(value: unknown, closeKeyValue: boolean): string {
  switch (typeof value) {
    case 'string':
      return '{"stringValue":"' + inner(value) + (closeKeyValue ? '"}}' : '"}');
    case 'number':
      return (Number.isInteger(value) ? '{"intValue":' : '{"doubleValue":') + num(value) + (closeKeyValue ? '}}' : '}');
    case 'boolean':
      if (closeKeyValue) return value ? '{"boolValue":true}}' : '{"boolValue":false}}';
      return value ? '{"boolValue":true}' : '{"boolValue":false}';
    case 'object': {
      if (value === null) return closeKeyValue ? '{}}' : '{}';
      let out: string;
      if (value instanceof Uint8Array) {
        out = '{"bytesValue":"' + Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') + '"}';
      } else if (Array.isArray(value)) {
        out = '{"arrayValue":{"values":[';
        for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + anyValue(value[i], false);
        out += ']}}';
      } else {
        out = '{"kvlistValue":{"values":' + keyValues(value as Record<string, unknown>) + '}}';
      }
      return closeKeyValue ? out + '}' : out;
    }
    default:
      // undefined, bigint, symbol, function: the library writes an empty AnyValue.
      return closeKeyValue ? '{}}' : '{}';
  }
}

// What JSON.stringify would escape: quote, backslash, controls; surrogates for lone ones (pairs pass through it too).
// eslint-disable-next-line no-control-regex -- the control characters are exactly what JSON must escape
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** A string's JSON form without its quotes; JSON.stringify escapes the few strings that need it. */
function inner(value: string): string {
  return NEEDS_ESCAPE.test(value) ? JSON.stringify(value).slice(1, -1) : value;
}

/** A JSON number as JSON.stringify writes it: non-finite numbers have no JSON form and become null. */
function num(value: number): string {
  return Number.isFinite(value) ? String(value) : 'null';
}

/** Nanoseconds since the epoch as a decimal string; beyond 2^53, so digits are joined rather than summed. */
function nanos(time: HrTime): string {
  const seconds = time[0];
  const nanoseconds = time[1];
  if (Number.isSafeInteger(seconds) && seconds > 0 && Number.isInteger(nanoseconds) && nanoseconds >= 0 && nanoseconds < NANOS_PER_SECOND) {
    // 1e9 + n has ten digits; dropping the leading 1 leaves n zero-padded to nine.
    return String(seconds) + String(NANOS_PER_SECOND + nanoseconds).slice(1);
  }
  // Unnormalised or zero/negative times: the library's BigInt arithmetic, for the same result.
  return (BigInt(Math.trunc(seconds)) * NANOS_PER_SECOND_BIG + BigInt(Math.trunc(nanoseconds))).toString();
}
