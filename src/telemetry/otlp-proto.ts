/**
 * The OTLP protobuf span serializer behind OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, the
 * default (otlp-traces.ts exports with it). Its bytes are the library's ProtobufTraceSerializer's
 * (test/otlp-encoding.test.ts compares them for generated spans): the same fields in the same
 * order, the same defaults written or left out, spans grouped by resource object and then by
 * scope object. It is cheaper per span because:
 *   - one pass into a buffer kept between exports, where the library sizes everything first
 *     and then writes it;
 *   - span and trace ids go from hex straight into the buffer, not through a new array each;
 *   - a length is written in front of its message when it is known beforehand (strings,
 *     scalar values), and only messages of unknown size get a reserved length byte to patch.
 *
 * Wire format (https://protobuf.dev/programming-guides/encoding/): each field is a varint key
 * (field number << 3 | wire type), then a varint (type 0), 8 bytes little-endian (type 1), a
 * varint length and that many bytes (type 2), or 4 bytes little-endian (type 5).
 */
import type { Link, SpanStatus } from '@opentelemetry/api';
import { ProtobufTraceSerializer, type IExportTraceServiceResponse, type ISerializer } from '@opentelemetry/otlp-transformer';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';
import { LeanSpan } from './lean-span';
import { groupByResourceAndScope } from './otlp-json';

export const otlpProtobufTraceSerializer: ISerializer<ReadableSpan[], IExportTraceServiceResponse> = {
  serializeRequest: encodeSpansProtobuf,
  // Responses are rare and small (usually empty): the library's reader is fine.
  deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data),
};

// Wire types.
const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;
const key = (field: number, wire: number): number => (field << 3) | wire;

// OTLP span flags: the low byte is the W3C trace flags; bit 8 says whether bit 9 (remote parent) is known.
const FLAG_HAS_IS_REMOTE = 0x100;
const FLAG_IS_REMOTE = 0x200;

const TWO_32 = 0x1_0000_0000;
const MIN_INT64 = -(2 ** 63);
const MAX_INT64 = 2 ** 63;

/** The buffer an export is written into; it only grows, and each request gets a copy of its part. */
let buf = Buffer.allocUnsafe(64 * 1024);
let pos = 0;

/** The ExportTraceServiceRequest for these spans as OTLP protobuf bytes. */
export function encodeSpansProtobuf(spans: readonly ReadableSpan[]): Uint8Array {
  pos = 0;
  for (const [resource, byScope] of groupByResourceAndScope(spans, sameScope)) {
    const resourceSpans = openMessage(key(1, LEN));
    writeResource(resource);
    for (const group of byScope.values()) {
      const scopeSpans = openMessage(key(2, LEN));
      const scope = group[0]!.instrumentationScope;
      writeScope(scope);
      for (const span of group) writeSpan(span);
      if (scope.schemaUrl) writeString(key(3, LEN), scope.schemaUrl);
      closeMessage(scopeSpans);
    }
    if (resource.schemaUrl) writeString(key(3, LEN), resource.schemaUrl);
    closeMessage(resourceSpans);
  }
  const out = Buffer.allocUnsafe(pos);
  buf.copy(out, 0, 0, pos);
  return out;
}

type Scope = ReadableSpan['instrumentationScope'];

/** The library's protobuf groups scopes by object. */
const sameScope = (scope: Scope): Scope => scope;

function writeResource(resource: Resource): void {
  const message = openMessage(key(1, LEN));
  if (resource.attributes) writeAttributes(1, resource.attributes);
  writeVarintField(key(2, VARINT), 0); // dropped_attributes_count
  closeMessage(message);
}

function writeScope(scope: Scope): void {
  const message = openMessage(key(1, LEN));
  writeString(key(1, LEN), scope.name);
  if (scope.version) writeString(key(2, LEN), scope.version);
  // Not in this core version's InstrumentationScope type, but written when present.
  const { attributes, droppedAttributesCount } = scope as Scope & { attributes?: Readonly<Record<string, unknown>>; droppedAttributesCount?: number };
  if (attributes) writeAttributes(3, attributes);
  if (droppedAttributesCount) writeVarintField(key(4, VARINT), droppedAttributesCount);
  closeMessage(message);
}

function writeSpan(span: ReadableSpan): void {
  const message = openMessage(key(2, LEN));
  const context = span.spanContext();
  writeId(key(1, LEN), context.traceId, lastTrace);
  writeId(key(2, LEN), context.spanId);
  const traceState = context.traceState?.serialize();
  if (traceState) writeString(key(3, LEN), traceState);
  const parent = span.parentSpanContext;
  if (parent?.spanId) writeId(key(4, LEN), parent.spanId, lastParent);
  writeString(key(5, LEN), span.name);
  // The API's SpanKind has no UNSPECIFIED, so OTLP's enum is one higher; 0 is left out.
  const kind = span.kind == null ? 0 : span.kind + 1;
  if (kind !== 0) writeVarintField(key(6, VARINT), kind);
  if (span instanceof LeanSpan) {
    // The same nanoseconds, read without making the [seconds, nanoseconds] arrays.
    writeTime(key(7, I64), span.startSeconds, span.startNanos);
    writeTime(key(8, I64), span.endSeconds, span.endNanos);
  } else {
    writeTime(key(7, I64), span.startTime[0], span.startTime[1]);
    writeTime(key(8, I64), span.endTime[0], span.endTime[1]);
  }
  if (span.attributes) writeAttributes(9, span.attributes);
  writeVarintField(key(10, VARINT), span.droppedAttributesCount);
  // Indexed loops: a for-of here allocated an iterator per list per span.
  const events = span.events;
  for (let i = 0; i < events.length; i++) writeEvent(events[i]!);
  writeVarintField(key(12, VARINT), span.droppedEventsCount);
  const links = span.links;
  for (let i = 0; i < links.length; i++) writeLink(links[i]!);
  writeVarintField(key(14, VARINT), span.droppedLinksCount);
  writeStatus(span.status);
  writeFixed32Field(key(16, I32), flags(context.traceFlags, parent?.isRemote));
  closeMessage(message);
}

function writeEvent(event: TimedEvent): void {
  const message = openMessage(key(11, LEN));
  writeTime(key(1, I64), event.time[0], event.time[1]);
  writeString(key(2, LEN), event.name);
  if (event.attributes) writeAttributes(3, event.attributes);
  writeVarintField(key(4, VARINT), event.droppedAttributesCount || 0);
  closeMessage(message);
}

function writeLink(link: Link): void {
  const message = openMessage(key(13, LEN));
  const context = link.context;
  writeId(key(1, LEN), context.traceId);
  writeId(key(2, LEN), context.spanId);
  const traceState = context.traceState?.serialize();
  if (traceState) writeString(key(3, LEN), traceState);
  if (link.attributes) writeAttributes(4, link.attributes);
  writeVarintField(key(5, VARINT), link.droppedAttributesCount || 0);
  writeFixed32Field(key(6, I32), flags(context.traceFlags, context.isRemote));
  closeMessage(message);
}

function writeStatus(status: SpanStatus): void {
  const message = openMessage(key(15, LEN));
  if (status.message) writeString(key(2, LEN), status.message);
  writeVarintField(key(3, VARINT), status.code);
  closeMessage(message);
}

function flags(traceFlags: number, isRemote: boolean | undefined): number {
  return (traceFlags & 0xff) | FLAG_HAS_IS_REMOTE | (isRemote ? FLAG_IS_REMOTE : 0);
}

/** Repeated KeyValue in this field; also the body of a KeyValueList (field 1). */
function writeAttributes(field: number, attributes: Readonly<Record<string, unknown>>): void {
  for (const name in attributes) {
    if (!Object.prototype.hasOwnProperty.call(attributes, name)) continue;
    const keyValue = openMessage(key(field, LEN));
    writeString(key(1, LEN), name);
    writeAnyValueField(key(2, LEN), attributes[name]);
    closeMessage(keyValue);
  }
}

/** An AnyValue message as this field. Empty for undefined, null and what has no AnyValue. */
function writeAnyValueField(fieldKey: number, value: unknown): void {
  switch (typeof value) {
    case 'string': {
      const message = openMessage(fieldKey);
      writeString(key(1, LEN), value);
      closeMessage(message);
      return;
    }
    case 'boolean':
      ensure(4);
      buf[pos++] = fieldKey;
      buf[pos++] = 2;
      buf[pos++] = key(2, VARINT);
      buf[pos++] = value ? 1 : 0;
      return;
    case 'number':
      if (Number.isInteger(value) && value >= MIN_INT64 && value < MAX_INT64) {
        const message = openMessage(fieldKey);
        writeVarintField(key(3, VARINT), value);
        closeMessage(message);
      } else {
        ensure(11);
        buf[pos++] = fieldKey;
        buf[pos++] = 9;
        buf[pos++] = key(4, I64);
        pos = buf.writeDoubleLE(value, pos);
      }
      return;
    case 'object': {
      const message = openMessage(fieldKey);
      if (value instanceof Uint8Array) {
        writeVarint(key(7, LEN));
        writeVarint(value.length);
        ensure(value.length);
        buf.set(value, pos);
        pos += value.length;
      } else if (Array.isArray(value)) {
        const array = openMessage(key(5, LEN));
        for (const item of value) writeAnyValueField(key(1, LEN), item);
        closeMessage(array);
      } else if (value !== null) {
        const list = openMessage(key(6, LEN));
        writeAttributes(1, value as Record<string, unknown>);
        closeMessage(list);
      }
      closeMessage(message);
      return;
    }
    default: {
      // undefined, bigint, symbol, function: an empty AnyValue.
      ensure(2);
      buf[pos++] = fieldKey;
      buf[pos++] = 0;
    }
  }
}

// --- primitives -------------------------------------------------------------------------------

function ensure(bytes: number): void {
  if (pos + bytes <= buf.length) return;
  let size = buf.length * 2;
  while (size < pos + bytes) size *= 2;
  const bigger = Buffer.allocUnsafe(size);
  buf.copy(bigger, 0, 0, pos);
  buf = bigger;
}

/**
 * Writes the key of a length-delimited field and reserves one byte for its length; returns
 * where that byte is. closeMessage writes the length there, moving the body up when it needs
 * more bytes (messages under 128 bytes, most of them, never move).
 */
function openMessage(fieldKey: number): number {
  ensure(6);
  if (fieldKey < 0x80) buf[pos++] = fieldKey;
  else writeVarint(fieldKey);
  return pos++;
}

function closeMessage(lengthAt: number): void {
  const length = pos - lengthAt - 1;
  if (length < 0x80) {
    buf[lengthAt] = length;
    return;
  }
  const extra = varintSize(length) - 1;
  ensure(extra);
  buf.copyWithin(lengthAt + 1 + extra, lengthAt + 1, pos);
  pos += extra;
  let at = lengthAt;
  let v = length;
  while (v >= 0x80) {
    buf[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[at] = v;
}

function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x20_0000 ? 3 : v < 0x1000_0000 ? 4 : 5;
}

function writeVarintField(fieldKey: number, value: number): void {
  ensure(1);
  buf[pos++] = fieldKey;
  writeVarint(value);
}

/**
 * A varint. Numbers outside uint32 are int64 two's complement (ten bytes when negative);
 * what is not a number at all (a missing count) is written as 0.
 */
function writeVarint(value: number): void {
  ensure(10);
  if (value >>> 0 === value) {
    let v = value;
    while (v >= 0x80) {
      buf[pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[pos++] = v;
    return;
  }
  if (!Number.isFinite(value)) {
    buf[pos++] = 0;
    return;
  }
  let low: number;
  let high: number;
  const magnitude = Math.abs(value);
  low = magnitude >>> 0;
  high = Math.floor(magnitude / TWO_32) >>> 0;
  if (value < 0) {
    // Two's complement of the 64-bit magnitude.
    low = ~low >>> 0;
    high = ~high >>> 0;
    low = (low + 1) >>> 0;
    if (low === 0) high = (high + 1) >>> 0;
  }
  while (high !== 0 || low >= 0x80) {
    buf[pos++] = (low & 0x7f) | 0x80;
    low = ((low >>> 7) | (high << 25)) >>> 0;
    high >>>= 7;
  }
  buf[pos++] = low;
}

function writeFixed32Field(fieldKey: number, value: number): void {
  ensure(6);
  writeVarint(fieldKey);
  writeUint32(value >>> 0);
}

/** Four bytes little-endian, `value` already a uint32. */
function writeUint32(value: number): void {
  buf[pos++] = value & 0xff;
  buf[pos++] = (value >>> 8) & 0xff;
  buf[pos++] = (value >>> 16) & 0xff;
  buf[pos++] = value >>> 24;
}

/**
 * A string field: key, UTF-8 byte length, bytes. ASCII (nearly every string here) is copied a
 * char at a time straight behind a one-byte length when short enough; anything else is
 * measured and written by Buffer (lone surrogates become U+FFFD, as with TextEncoder).
 */
function writeString(fieldKey: number, value: string): void {
  const length = value.length;
  if (length < 0x80) {
    ensure(length + 2);
    const start = pos;
    buf[pos++] = fieldKey;
    buf[pos++] = length;
    let i = 0;
    for (; i < length; i++) {
      const c = value.charCodeAt(i);
      if (c >= 0x80) break;
      buf[pos++] = c;
    }
    if (i === length) return;
    pos = start; // not ASCII: start again below
  }
  const bytes = Buffer.byteLength(value, 'utf8');
  ensure(bytes + 6);
  buf[pos++] = fieldKey;
  writeVarint(bytes);
  pos += buf.write(value, pos, bytes, 'utf8');
}

// Hex digit values as the library reads them: 0-9, a-f, else the A-F rule (c - 55), which
// only a malformed id reaches; a byte keeps the low eight bits of (high << 4 | low) either way.
const HEX = new Int16Array(128);
for (let c = 0; c < 128; c++) HEX[c] = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c - 55;
const hexValue = (c: number): number => (c < 128 ? HEX[c]! : c - 55);

/** The last id written through it, and its bytes. */
interface IdMemo {
  hex: string;
  readonly bytes: Uint8Array;
}

/**
 * Consecutive spans in a batch usually share their trace id, and often their parent id (the
 * webhook's three spans end one after the other): an id equal to the last one written through
 * its memo is copied from that one's bytes rather than read from hex again.
 */
const lastTrace: IdMemo = { hex: '', bytes: new Uint8Array(16) };
const lastParent: IdMemo = { hex: '', bytes: new Uint8Array(8) };

/** A trace or span id field: its hex string as bytes. */
function writeId(fieldKey: number, hex: string, memo?: IdMemo): void {
  const bytes = hex.length >>> 1;
  ensure(bytes + 6);
  buf[pos++] = fieldKey;
  writeVarint(bytes);
  const remembered = memo !== undefined && memo.bytes.length === bytes ? memo : undefined;
  if (remembered !== undefined && hex === remembered.hex) {
    for (let i = 0; i < bytes; i++) buf[pos++] = remembered.bytes[i]!;
    return;
  }
  const start = pos;
  for (let i = 0; i < bytes; i++) {
    buf[pos++] = (hexValue(hex.charCodeAt(2 * i)) << 4) | hexValue(hex.charCodeAt(2 * i + 1));
  }
  if (remembered === undefined) return;
  remembered.hex = hex;
  for (let i = 0; i < bytes; i++) remembered.bytes[i] = buf[start + i]!;
}

// 1e9 = 2^9 * 1953125, so seconds * 1e9 splits into parts that stay exact in a double.
const FIVE_POW_9 = 1_953_125;
const TWO_23 = 0x80_0000;
const TWO_16 = 0x1_0000;

/** A fixed64 field of nanoseconds since the epoch, from an HrTime's two parts (as the library computes them for any input). */
function writeTime(fieldKey: number, seconds: number, nanos: number): void {
  ensure(10);
  buf[pos++] = fieldKey;
  let low: number;
  let high: number;
  if (Number.isInteger(seconds) && seconds >= 0 && seconds < TWO_32 && Number.isInteger(nanos) && nanos >= 0 && nanos < 1e9) {
    // seconds < 2^32 keeps seconds * 5^9 under 2^53, so exact; split at 2^23 it gives
    // total = high part * 2^32 + (low part * 2^9 + nanos), the second term under 2^33.
    const scaled = seconds * FIVE_POW_9;
    const scaledHigh = Math.floor(scaled / TWO_23);
    const sum = (scaled - scaledHigh * TWO_23) * 512 + nanos;
    const carry = sum >= TWO_32 ? 1 : 0;
    low = sum - carry * TWO_32;
    high = scaledHigh + carry;
  } else {
    // Anything else (negative, fractional or huge seconds, unnormalised or non-finite
    // nanoseconds): the library's 32-bit arithmetic, step for step, so the bytes match. Seconds
    // are split at 2^16; NaN and the infinities fall out as 0 through the uint32 conversions.
    const fromLowSeconds = (seconds & 0xffff) * 1e9;
    const fromHighSeconds = ((seconds / TWO_16) >>> 0) * 1e9;
    const sum = (fromLowSeconds >>> 0) + (((fromHighSeconds & 0xffff) * TWO_16) >>> 0) + nanos;
    low = sum >>> 0;
    high = (Math.floor(fromLowSeconds / TWO_32) + ((fromHighSeconds / TWO_16) >>> 0) + Math.floor(sum / TWO_32)) >>> 0;
  }
  writeUint32(low);
  writeUint32(high);
}
