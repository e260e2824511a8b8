/**
 * A minimal OTLP/HTTP trace receiver on loopback for tests: accepts JSON-encoded
 * ExportTraceServiceRequest bodies at /v1/traces (the encoding our exporter sends) and keeps
 * the spans, flattened with their resource. Protobuf bodies are answered 415.
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
  /** Raw request bodies, for checks that something never appears anywhere in what was exported. */
  readonly bodies: string[];
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
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    req.on('end', () => {
      if (req.method !== 'POST' || (req.url ?? '').split('?')[0] !== '/v1/traces') return void res.writeHead(404).end();
      if (!(req.headers['content-type'] ?? '').startsWith('application/json')) return void res.writeHead(415).end();
      const text = Buffer.concat(chunks).toString('utf8');
      bodies.push(text);
      try {
        collect(JSON.parse(text), spans);
      } catch {
        return void res.writeHead(400).end();
      }
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    });
  });
  const port = await listen(server, 0, '127.0.0.1');
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    bodies,
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
