/**
 * A minimal OTLP/HTTP trace receiver on loopback for tests: accepts ExportTraceServiceRequest
 * bodies at /v1/traces, protobuf (the default encoding) or JSON, and keeps the spans,
 * flattened with their resource. Protobuf is decoded here from the OTLP field numbers, into
 * the JSON mapping's shape, so both encodings are checked by the same assertions. Other
 * content types are answered 415.
 */
import { createServer, type Server } from 'node:http';
import { closeServer, listen } from '../../src/http-listen';

export type AttrValue = string | number | boolean | null | AttrValue[];

export interface CollectedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number;
  readonly attributes: Readonly<Record<string, AttrValue>>;
  readonly links: ReadonlyArray<{ readonly traceId: string; readonly spanId: string }>;
  readonly status: { readonly code: number; readonly message?: string };
  readonly resource: Readonly<Record<string, AttrValue>>;
  readonly scope: string;
}

export interface OtlpReceiver {
  /** Base URL, suitable for OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly url: string;
  readonly spans: CollectedSpan[];
  /** Raw request bodies as UTF-8 text (protobuf strings are UTF-8 too), for checks that something never appears anywhere in what was exported. */
  readonly bodies: string[];
  /** The Content-Type of each accepted request, in order. */
  readonly contentTypes: string[];
  waitFor(predicate: (spans: readonly CollectedSpan[]) => boolean, timeoutMs?: number): Promise<readonly CollectedSpan[]>;
  close(): Promise<void>;
}

interface JsonKeyValue {
  key: string;
  value?: JsonAnyValue;
}
interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
  arrayValue?: { values?: JsonAnyValue[] };
}

function value(v: JsonAnyValue | undefined): AttrValue {
  if (v === undefined) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(value);
  return null;
}

function attrs(list: JsonKeyValue[] | undefined): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const kv of list ?? []) out[kv.key] = value(kv.value);
  return out;
}

const MAX_BODY = 16 * 1024 * 1024;

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: CollectedSpan[] = [];
  const bodies: string[] = [];
  const contentTypes: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    req.on('end', () => {
      if (req.method !== 'POST' || (req.url ?? '').split('?')[0] !== '/v1/traces') return void res.writeHead(404).end();
      const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
      if (contentType !== 'application/json' && contentType !== 'application/x-protobuf') return void res.writeHead(415).end();
      const body = Buffer.concat(chunks);
      let request: ExportRequest;
      try {
        request = contentType === 'application/json' ? (JSON.parse(body.toString('utf8')) as ExportRequest) : decodeExportRequest(body);
      } catch {
        return void res.writeHead(400).end();
      }
      bodies.push(body.toString('utf8'));
      contentTypes.push(contentType);
      collect(request, spans);
      // An empty ExportTraceServiceResponse in the request's encoding.
      res.writeHead(200, { 'Content-Type': contentType }).end(contentType === 'application/json' ? '{}' : '');
    });
  });
  const port = await listen(server, 0, '127.0.0.1');
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    bodies,
    contentTypes,
    async waitFor(predicate, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(spans)) {
        if (Date.now() > deadline) throw new Error(`OTLP receiver: condition not met within ${timeoutMs} ms (${spans.length} spans: ${spans.map((s) => s.name).join(', ')})`);
        await new Promise((r) => setTimeout(r, 25));
      }
      return spans;
    },
    close: () => closeServer(server, 0),
  };
}

interface ExportRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans?: Array<{
      scope?: { name?: string };
      spans?: Array<{
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind?: number;
        attributes?: JsonKeyValue[];
        links?: Array<{ traceId: string; spanId: string }>;
        status?: { code?: number; message?: string };
      }>;
    }>;
  }>;
}

function collect(body: ExportRequest, into: CollectedSpan[]): void {
  for (const rs of body.resourceSpans ?? []) {
    const resource = attrs(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        into.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId === undefined || s.parentSpanId === '' ? undefined : s.parentSpanId,
          name: s.name,
          kind: s.kind ?? 0,
          attributes: attrs(s.attributes),
          links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
          status: { code: s.status?.code ?? 0, ...(s.status?.message !== undefined ? { message: s.status.message } : {}) },
          resource,
          scope: ss.scope?.name ?? '',
        });
      }
    }
  }
}

// --- OTLP protobuf, decoded into the JSON mapping's shape (ids as hex, enums as numbers) ---

type Field = { readonly n: number; readonly wire: number; readonly varint: bigint; readonly bytes: Buffer };

/** The fields of one protobuf message, in order; throws on a truncated or malformed message. */
function fields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let pos = 0;
  const varint = (): bigint => {
    let value = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (pos >= buf.length || shift > 63n) throw new Error('bad varint');
      const byte = buf[pos++]!;
      value |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return value;
    }
  };
  const take = (length: number): Buffer => {
    if (pos + length > buf.length) throw new Error('truncated field');
    pos += length;
    return buf.subarray(pos - length, pos);
  };
  while (pos < buf.length) {
    const key = Number(varint());
    const n = key >>> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ n, wire, varint: varint(), bytes: Buffer.alloc(0) });
    else if (wire === 1) out.push({ n, wire, varint: 0n, bytes: take(8) });
    else if (wire === 2) out.push({ n, wire, varint: 0n, bytes: take(Number(varint())) });
    else if (wire === 5) out.push({ n, wire, varint: 0n, bytes: take(4) });
    else throw new Error(`wire type ${wire}`);
  }
  return out;
}

const all = (fs: Field[], n: number): Field[] => fs.filter((f) => f.n === n);
const one = (fs: Field[], n: number): Field | undefined => fs.findLast((f) => f.n === n);
const str = (fs: Field[], n: number): string | undefined => one(fs, n)?.bytes.toString('utf8');
const hex = (fs: Field[], n: number): string => one(fs, n)?.bytes.toString('hex') ?? '';

function anyValue(buf: Buffer): JsonAnyValue {
  const fs = fields(buf);
  const last = fs[fs.length - 1];
  if (last === undefined) return {};
  switch (last.n) {
    case 1:
      return { stringValue: last.bytes.toString('utf8') };
    case 2:
      return { boolValue: last.varint !== 0n };
    case 3:
      return { intValue: String(BigInt.asIntN(64, last.varint)) };
    case 4:
      return { doubleValue: last.bytes.readDoubleLE(0) };
    case 5:
      return { arrayValue: { values: all(fields(last.bytes), 1).map((f) => anyValue(f.bytes)) } };
    default:
      return {};
  }
}

function keyValues(fs: Field[], n: number): JsonKeyValue[] {
  return all(fs, n).map((f) => {
    const kv = fields(f.bytes);
    const value = one(kv, 2);
    return { key: str(kv, 1) ?? '', ...(value === undefined ? {} : { value: anyValue(value.bytes) }) };
  });
}

function decodeExportRequest(body: Buffer): ExportRequest {
  return {
    resourceSpans: all(fields(body), 1).map((rs) => {
      const rsf = fields(rs.bytes);
      const resource = one(rsf, 1);
      return {
        resource: { attributes: resource === undefined ? [] : keyValues(fields(resource.bytes), 1) },
        scopeSpans: all(rsf, 2).map((ss) => {
          const ssf = fields(ss.bytes);
          const scope = one(ssf, 1);
          return {
            scope: { name: scope === undefined ? '' : (str(fields(scope.bytes), 1) ?? '') },
            spans: all(ssf, 2).map((sp) => {
              const f = fields(sp.bytes);
              const status = one(f, 15);
              const sf = status === undefined ? [] : fields(status.bytes);
              const message = str(sf, 2);
              return {
                traceId: hex(f, 1),
                spanId: hex(f, 2),
                parentSpanId: hex(f, 4),
                name: str(f, 5) ?? '',
                kind: Number(one(f, 6)?.varint ?? 0n),
                attributes: keyValues(f, 9),
                links: all(f, 13).map((l) => {
                  const lf = fields(l.bytes);
                  return { traceId: hex(lf, 1), spanId: hex(lf, 2) };
                }),
                status: { code: Number(one(sf, 3)?.varint ?? 0n), ...(message === undefined ? {} : { message }) },
              };
            }),
          };
        }),
      };
    }),
  };
}
