/**
 * Our OTLP span serializers, JSON and protobuf, against the library's JsonTraceSerializer and
 * ProtobufTraceSerializer on spans made by the real SDK (and a few hand-built ones with values
 * the SDK never produces), then through the library's HTTP transport to a loopback collector.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { gunzipSync } from 'node:zlib';
import { diag, DiagLogLevel, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type DiagLogger, type HrTime, type SpanContext } from '@opentelemetry/api';
import { ExportResultCode, TraceState, type ExportResult } from '@opentelemetry/core';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { closeServer, listen } from '../src/http-listen';
import { describeDiagArgument } from '../src/telemetry/diagnostics';
import { otlpJsonTraceSerializer } from '../src/telemetry/otlp-json';
import { otlpProtobufTraceSerializer } from '../src/telemetry/otlp-proto';
import { createOtlpTraceExporter, OffThreadSpanExporter } from '../src/telemetry/otlp-traces';
import { REPO_ROOT } from './helpers/webhook';
import { startOtlpReceiver } from './helpers/otlp-receiver';

const memory = new InMemorySpanExporter();
const service = new BasicTracerProvider({
  resource: resourceFromAttributes(
    { 'service.name': 'otlp-json-test', 'service.version': '1.2.3', 'deployment.environment.name': 'test "env"\n', 'host.cpu.count': 2 },
    { schemaUrl: 'https://opentelemetry.io/schemas/1.30.0' },
  ),
  spanProcessors: [new SimpleSpanProcessor(memory)],
});
// A second resource, with limits tight enough that spans drop attributes, events and links.
const limited = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'limited' }),
  spanLimits: { attributeCountLimit: 2, eventCountLimit: 1, linkCountLimit: 1, attributePerEventCountLimit: 1, attributePerLinkCountLimit: 1 },
  spanProcessors: [new SimpleSpanProcessor(memory)],
});

afterAll(async () => {
  await service.shutdown();
  await limited.shutdown();
});

const TEXTS = [
  'plain',
  '',
  'ünïcödé — 日本語 · Ελληνικά',
  'emoji 😀👍🏽👨‍👩‍👧',
  'say "hi" \\ back\\slash / slash',
  'line\nbreak\r\ttab \u0000 nul \u001f unit \u007f del',
  '\u2028 line separator \u2029',
  'lone \ud800 high and \udc00 low surrogates',
];

const EVERY_TYPE: Attributes = {
  'str': 'value',
  'str.empty': '',
  'str.unicode': TEXTS[2],
  'str.emoji': TEXTS[3],
  'str.quotes': TEXTS[4],
  'str.controls': TEXTS[5],
  'str.separators': TEXTS[6],
  'str.surrogates': TEXTS[7],
  'key "quoted"\n😀': 'key needs escaping',
  '42': 'integer-like key',
  'int': 42,
  'int.zero': 0,
  'int.negative': -17,
  'int.max_safe': Number.MAX_SAFE_INTEGER,
  'int.huge': 1e21,
  'double': 3.14159,
  'double.negative': -0.5,
  'double.tiny': 1e-7,
  'double.nan': NaN,
  'double.infinity': Infinity,
  'double.negative_zero': -0,
  'bool.true': true,
  'bool.false': false,
  'array.str': ['a', 'b "c"', '😀', ''],
  'array.int': [1, 2, 3],
  'array.mixed_numbers': [1, 2.5, -3],
  'array.bool': [true, false],
  'array.empty': [],
  'array.with_nulls': ['a', null, undefined, 'b'],
};

const REMOTE_PARENT: SpanContext = {
  traceId: '0af7651916cd43dd8448eb211c80319c',
  spanId: 'b7ad6b7169203331',
  traceFlags: 1,
  isRemote: true,
  traceState: new TraceState('vendor=abc,other=1'),
};
const LINKED: SpanContext = {
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  spanId: '00f067aa0ba902b7',
  traceFlags: 0,
  isRemote: false,
  traceState: new TraceState('linked=yes'),
};

/** One of everything: all kinds, root and children, events, links, statuses, two scopes, two resources. */
function variedSpans(): ReadableSpan[] {
  memory.reset();
  const webhook = service.getTracer('ctu.webhook', '0.1.0', { schemaUrl: 'https://opentelemetry.io/schemas/1.30.0' });
  const sender = service.getTracer('ctu.sender');

  const root = webhook.startSpan('POST /webhook', { kind: SpanKind.SERVER, attributes: EVERY_TYPE });
  root.addEvent('received', { 'bytes': 1234, 'note': TEXTS[4], 'list': ['x', 'y'] });
  root.addEvent('no attributes');
  root.addEvent('timed', { at: 'explicit' }, [1_700_000_000, 5]);
  const inRoot = trace.setSpan(ROOT_CONTEXT, root);
  for (const kind of [SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER]) {
    webhook.startSpan(`child kind ${kind}`, { kind, attributes: { kind } }, inRoot).end();
  }
  const failed = sender.startSpan('send "pack"\n😀', { kind: SpanKind.CLIENT, links: [{ context: LINKED, attributes: { 'link.reason': 'retry', 'link.n': 2 } }, { context: REMOTE_PARENT }] }, inRoot);
  failed.recordException(new Error('boom: "quoted"\nsecond line'));
  failed.setStatus({ code: SpanStatusCode.ERROR, message: 'Graph API said "no"\n😀' });
  failed.end();
  const fromRemote = sender.startSpan('from remote parent', {}, trace.setSpanContext(ROOT_CONTEXT, REMOTE_PARENT));
  fromRemote.setStatus({ code: SpanStatusCode.OK });
  fromRemote.end();
  root.end();

  const dropping = limited.getTracer('ctu.limited', '9.9.9').startSpan('drops things', {
    attributes: { a: 1, b: 2, c: 3, d: 4 },
    links: [{ context: LINKED, attributes: { x: 1, y: 2 } }, { context: REMOTE_PARENT }],
  });
  dropping.addEvent('kept', { one: 1, two: 2 });
  dropping.addEvent('dropped');
  dropping.end();

  // A second tracer object with the same name, version and schema URL joins the first scope.
  webhook.startSpan('same scope, other order').end();
  service.getTracer('ctu.webhook', '0.1.0', { schemaUrl: 'https://opentelemetry.io/schemas/1.30.0' }).startSpan('same scope, new tracer').end();
  return memory.getFinishedSpans();
}

/** Span data the SDK sanitises away but the library still encodes: bytes, maps, nulls, odd times. */
function handBuiltSpan(): ReadableSpan {
  const context: SpanContext = { traceId: '5b8aa5a2d2c872e8321cf37308d69df2', spanId: '051581bf3cb55c13', traceFlags: 0x1ff };
  const attributes = {
    bytes: new Uint8Array([0, 1, 2, 250, 255]),
    map: { inner: 'v', n: 1, nested: { deep: [true, 'x'] } },
    'null': null,
    'undefined': undefined,
    nested: [[1, 2], ['a'], []],
    big: 10n,
  } as unknown as Attributes;
  return {
    name: 'hand built',
    kind: undefined as unknown as SpanKind,
    spanContext: () => context,
    parentSpanContext: { ...context, spanId: '' },
    startTime: [0, 123],
    endTime: [1, 1_500_000_000],
    status: { code: SpanStatusCode.UNSET },
    attributes,
    links: [{ context }],
    events: [{ name: 'bare', time: [2, 0] }],
    duration: [0, 0],
    ended: true,
    resource: resourceFromAttributes({ 'service.name': 'hand' }, { schemaUrl: '' }),
    instrumentationScope: { name: 'scoped', schemaUrl: '', attributes: { 'scope.attr': 'yes' } } as ReadableSpan['instrumentationScope'],
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}

function text(bytes: Uint8Array | undefined): string {
  if (bytes === undefined) throw new Error('serializer returned no bytes');
  return new TextDecoder().decode(bytes);
}

function expectSameAsLibrary(spans: ReadableSpan[]): void {
  const ours = text(otlpJsonTraceSerializer.serializeRequest(spans));
  const library = text(JsonTraceSerializer.serializeRequest(spans));
  expect(JSON.parse(ours)).toStrictEqual(JSON.parse(library));
  // Same key order and number formatting too, so any difference is easy to see.
  expect(ours).toBe(library);
  // Protobuf: the same bytes (as hex, so a difference shows where it starts).
  expect(hex(otlpProtobufTraceSerializer.serializeRequest(spans))).toBe(hex(ProtobufTraceSerializer.serializeRequest(spans)));
}

function hex(bytes: Uint8Array | undefined): string {
  if (bytes === undefined) throw new Error('serializer returned no bytes');
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

describe('OTLP span serializers, JSON and protobuf', () => {
  test('when spans of every kind, attribute type, event, link and status are serialized, then the JSON and the protobuf equal the library’s', () => {
    const spans = variedSpans();
    expect(spans.length).toBe(10);
    expectSameAsLibrary(spans);

    const request = JSON.parse(text(otlpJsonTraceSerializer.serializeRequest(spans))) as {
      resourceSpans: { schemaUrl?: string; scopeSpans: { scope: { name: string }; spans: unknown[] }[] }[];
    };
    expect(request.resourceSpans.map((r) => r.schemaUrl)).toEqual(['https://opentelemetry.io/schemas/1.30.0', undefined]);
    expect(request.resourceSpans[0]!.scopeSpans.map((s) => [s.scope.name, s.spans.length])).toEqual([
      ['ctu.webhook', 7],
      ['ctu.sender', 2],
    ]);
  });

  test('when a span carries values the SDK would never store (bytes, maps, nulls, unnormalised times, scope attributes), then the JSON and the protobuf still equal the library’s', () => {
    expectSameAsLibrary([handBuiltSpan()]);
    expectSameAsLibrary([...variedSpans(), handBuiltSpan()]);
  });

  test('when consecutive spans repeat, change or garble their trace and parent ids, then every id is written as the library writes it', () => {
    // The serializer copies a trace or parent id equal to the previous span's from that span's
    // bytes: same string object, equal strings built apart, a new id, upper case, non-hex and
    // short ids in a row must all come out as the library reads them.
    const base = handBuiltSpan();
    const trace = base.spanContext().traceId;
    const ids: [string, string][] = [
      [trace, '051581bf3cb55c13'],
      [trace, '051581bf3cb55c13'],
      [trace.slice(0, 16) + trace.slice(16), '051581bf3cb55c13'.slice(0, 8) + '3cb55c13'],
      ['0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331'],
      ['0AF7651916CD43DD8448EB211C80319C', 'B7AD6B7169203331'],
      ['0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331'],
      ['zz', 'xyz-not-hex!'],
      ['0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331'],
      ['0af7651916cd43dd', 'b7ad'],
      ['0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331'],
    ];
    const spans = ids.map(([traceId, parentId], i): ReadableSpan => {
      const context: SpanContext = { traceId, spanId: (i + 1).toString(16).padStart(16, '0'), traceFlags: 1 };
      return { ...base, spanContext: () => context, parentSpanContext: { ...context, spanId: parentId }, links: [], events: [] };
    });
    expect(hex(otlpProtobufTraceSerializer.serializeRequest(spans))).toBe(hex(ProtobufTraceSerializer.serializeRequest(spans)));
  });

  test('when there are no spans, then the request is an empty resourceSpans list like the library’s (no bytes at all in protobuf)', () => {
    expect(text(otlpJsonTraceSerializer.serializeRequest([]))).toBe('{"resourceSpans":[]}');
    expect(otlpProtobufTraceSerializer.serializeRequest([])).toHaveLength(0);
    expectSameAsLibrary([]);
  });

  test('when arbitrary names, attribute maps, events, kinds, statuses and times are serialized, then the JSON and the protobuf equal the library’s', () => {
    const tricky = fc.constantFrom('"', '\\', '\n', '\u0000', '\u2028', '\ud800', '\udc00', '😀', 'é', 'a');
    const anyText = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.string({ unit: 'grapheme', maxLength: 6 }), fc.string({ unit: tricky, maxLength: 8 }));
    const value = fc.oneof(
      anyText,
      fc.integer(),
      fc.maxSafeInteger(),
      fc.double(),
      fc.boolean(),
      fc.array(anyText, { maxLength: 4 }),
      fc.array(fc.integer(), { maxLength: 4 }),
      fc.array(fc.double(), { maxLength: 4 }),
      fc.array(fc.boolean(), { maxLength: 4 }),
    );
    const attributes = fc.dictionary(anyText, value, { maxKeys: 8 });
    const hrTime = fc.tuple(fc.integer({ min: 0, max: 2 ** 33 }), fc.integer({ min: 0, max: 999_999_999 }));
    const spanSpec = fc.record({
      name: anyText,
      kind: fc.constantFrom(SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER),
      attributes,
      events: fc.array(fc.record({ name: anyText, attributes }), { maxLength: 3 }),
      status: fc.record({ code: fc.constantFrom(SpanStatusCode.UNSET, SpanStatusCode.OK, SpanStatusCode.ERROR), message: fc.option(anyText, { nil: undefined }) }),
      start: hrTime,
      end: hrTime,
      scope: fc.constantFrom('scope.a', 'scope.b'),
    });
    const tracers = { 'scope.a': service.getTracer('scope.a', '1.0.0'), 'scope.b': service.getTracer('scope.b') };

    fc.assert(
      fc.property(fc.array(spanSpec, { minLength: 1, maxLength: 4 }), (specs) => {
        memory.reset();
        for (const spec of specs) {
          const span = tracers[spec.scope].startSpan(spec.name, { kind: spec.kind, attributes: spec.attributes, startTime: spec.start });
          for (const event of spec.events) span.addEvent(event.name, event.attributes);
          span.setStatus(spec.status);
          span.end(spec.end);
        }
        expectSameAsLibrary(memory.getFinishedSpans());
      }),
      { numRuns: 150 },
    );
  });

  test('when strings, messages and the whole request outgrow one-byte lengths and the first buffer, then the protobuf still equals the library’s', () => {
    memory.reset();
    const tracer = service.getTracer('ctu.big');
    const big = tracer.startSpan('x'.repeat(300), { attributes: { ascii: 'a'.repeat(200), wide: 'é'.repeat(10_000), list: Array.from({ length: 300 }, (_, i) => `item ${i}`) } });
    big.addEvent('e'.repeat(127), { n: 2 ** 40, negative: -(2 ** 40), min: Number.MIN_SAFE_INTEGER });
    big.end();
    const upper: SpanContext = { traceId: '0AF7651916CD43DD8448EB211C80319C', spanId: 'B7AD6B7169203331', traceFlags: 1, isRemote: true };
    tracer.startSpan('uppercase ids', {}, trace.setSpanContext(ROOT_CONTEXT, upper)).end();
    for (let i = 0; i < 1_000; i++) tracer.startSpan(`filler ${i}`, { attributes: { i, text: 'y'.repeat(i % 150) } }).end();
    const spans = memory.getFinishedSpans();
    expect(otlpProtobufTraceSerializer.serializeRequest(spans)!.length).toBeGreaterThan(128 * 1024);
    expectSameAsLibrary(spans);
    // And again, into the buffer the first call grew: nothing of it leaks into the next request.
    expectSameAsLibrary(spans.slice(0, 3));
  });

  test('when times are odd (negative, fractional, beyond 2^32 s, unnormalised, NaN, infinite), then the protobuf still equals the library’s', () => {
    const odd: HrTime[] = [
      [0, 0], [1, 999_999_999], [2 ** 32 - 1, 999_999_999], [2 ** 32, 0], [2 ** 33 + 7, 5], [2 ** 48 + 3, 1], [1e12, 123],
      [-1, 0], [-5, -0.5], [0, -0.5], [5, 0.5], [1.75, 3], [1, 1.5e9], [1, 1e300], [NaN, NaN], [1, NaN], [Infinity, 0], [0, -Infinity],
    ];
    const base = handBuiltSpan();
    const spans = odd.map((time, i): ReadableSpan => ({ ...base, name: `odd ${i}`, spanContext: base.spanContext, startTime: time, endTime: odd[(i + 1) % odd.length]!, events: [{ name: 'at', time }] }));
    for (const span of spans) expect(hex(otlpProtobufTraceSerializer.serializeRequest([span])), span.name).toBe(hex(ProtobufTraceSerializer.serializeRequest([span])));
    fc.assert(
      fc.property(fc.tuple(fc.double(), fc.double()), fc.tuple(fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), fc.integer()), (a, b) => {
        const span: ReadableSpan = { ...base, spanContext: base.spanContext, startTime: a as HrTime, endTime: b as HrTime, events: [] };
        expect(hex(otlpProtobufTraceSerializer.serializeRequest([span]))).toBe(hex(ProtobufTraceSerializer.serializeRequest([span])));
      }),
      { numRuns: 300 },
    );
  });

  test('when the collector answers, then the response is parsed like the library’s (empty and malformed bodies give {})', () => {
    const encode = (s: string) => new TextEncoder().encode(s);
    const partial = '{"partialSuccess":{"rejectedSpans":2,"errorMessage":"too old"}}';
    expect(otlpJsonTraceSerializer.deserializeResponse(encode(partial))).toEqual({ partialSuccess: { rejectedSpans: 2, errorMessage: 'too old' } });
    for (const body of [partial, '', '{not json', '{}']) {
      expect(otlpJsonTraceSerializer.deserializeResponse(encode(body))).toEqual(JsonTraceSerializer.deserializeResponse(encode(body)));
    }
    // ExportTraceServiceResponse.partial_success (1) { rejected_spans (1) = 2, error_message (2) = "too old" }
    const protobufPartial = Uint8Array.from([0x0a, 0x0b, 0x08, 0x02, 0x12, 0x07, ...encode('too old')]);
    expect(otlpProtobufTraceSerializer.deserializeResponse(protobufPartial)).toEqual(ProtobufTraceSerializer.deserializeResponse(protobufPartial));
    expect(otlpProtobufTraceSerializer.deserializeResponse(new Uint8Array(0))).toEqual(ProtobufTraceSerializer.deserializeResponse(new Uint8Array(0)));
  });

  test('when 2,000 spans are serialized, then ours and the library’s agree (timings printed, not asserted)', () => {
    const tracer = service.getTracer('ctu.webhook', '0.1.0');
    memory.reset();
    for (let i = 0; i < 2_000; i++) {
      const span = tracer.startSpan('POST /webhook', {
        kind: SpanKind.SERVER,
        attributes: { 'http.request.method': 'POST', 'http.route': '/webhook', 'http.response.status_code': 200, 'ctu.items': 3, 'ctu.signature.valid': true, 'ctu.pack': 'quick-tips' },
      });
      span.end();
    }
    const spans = memory.getFinishedSpans();
    expectSameAsLibrary(spans);

    // CPU time rather than wall time, best of three interleaved passes: the machine is shared.
    const ROUNDS = 10;
    const cpuMicrosPerSpan = (serialize: (s: ReadableSpan[]) => Uint8Array | undefined): number => {
      serialize(spans);
      const before = process.cpuUsage();
      for (let i = 0; i < ROUNDS; i++) serialize(spans);
      const used = process.cpuUsage(before);
      return (used.user + used.system) / (ROUNDS * spans.length);
    };
    const best = { json: Infinity, jsonLibrary: Infinity, protobuf: Infinity, protobufLibrary: Infinity };
    for (let pass = 0; pass < 3; pass++) {
      best.jsonLibrary = Math.min(best.jsonLibrary, cpuMicrosPerSpan((s) => JsonTraceSerializer.serializeRequest(s)));
      best.json = Math.min(best.json, cpuMicrosPerSpan((s) => otlpJsonTraceSerializer.serializeRequest(s)));
      best.protobufLibrary = Math.min(best.protobufLibrary, cpuMicrosPerSpan((s) => ProtobufTraceSerializer.serializeRequest(s)));
      best.protobuf = Math.min(best.protobuf, cpuMicrosPerSpan((s) => otlpProtobufTraceSerializer.serializeRequest(s)));
    }
    const bytesPerSpan = (bytes: Uint8Array | undefined) => ((bytes?.length ?? 0) / spans.length).toFixed(0);
    console.log(
      `OTLP serialize, ${spans.length} spans x ${ROUNDS}, CPU µs/span (bytes/span): ` +
        `JSON ours ${best.json.toFixed(2)}, library ${best.jsonLibrary.toFixed(2)} (${bytesPerSpan(otlpJsonTraceSerializer.serializeRequest(spans))}); ` +
        `protobuf ours ${best.protobuf.toFixed(2)}, library ${best.protobufLibrary.toFixed(2)} (${bytesPerSpan(otlpProtobufTraceSerializer.serializeRequest(spans))})`,
    );
    expect(best.json).toBeGreaterThan(0);
    expect(best.protobuf).toBeGreaterThan(0);
  });
});

describe('OTLP/HTTP span exporter', () => {
  interface Received {
    readonly url: string | undefined;
    readonly headers: IncomingHttpHeaders;
    readonly body: Buffer;
  }

  test.each([
    { protocol: 'http/protobuf', contentType: 'application/x-protobuf', library: ProtobufTraceSerializer },
    { protocol: 'http/json', contentType: 'application/json', library: JsonTraceSerializer },
  ] as const)('when spans are exported as $protocol to a loopback collector, then it receives the library’s bytes with the library’s endpoint, headers and compression', async ({ protocol, contentType, library }) => {
    const received: Received[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ url: req.url, headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    const port = await listen(server, 0, '127.0.0.1');
    const spans = variedSpans();
    const saved = Object.entries(process.env).filter(([key]) => key.startsWith('OTEL_'));
    try {
      for (const [key] of saved) delete process.env[key];
      process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = `http://127.0.0.1:${port}/custom/traces`;
      process.env.OTEL_EXPORTER_OTLP_TRACES_HEADERS = 'x-otlp-test=round-trip';
      for (const compression of ['none', 'gzip']) {
        process.env.OTEL_EXPORTER_OTLP_TRACES_COMPRESSION = compression;
        const exporter = createOtlpTraceExporter(protocol);
        try {
          const result = await new Promise<ExportResult>((resolve) => exporter.export(spans, resolve));
          expect(result.code).toBe(ExportResultCode.SUCCESS);
        } finally {
          await exporter.shutdown();
        }
      }
    } finally {
      for (const key of Object.keys(process.env)) if (key.startsWith('OTEL_')) delete process.env[key];
      for (const [key, value] of saved) process.env[key] = value;
      await closeServer(server, 1_000);
    }

    const expected = hex(library.serializeRequest(spans));
    expect(received).toHaveLength(2);
    const [plain, gzipped] = received as [Received, Received];
    for (const request of [plain, gzipped]) {
      expect(request.url).toBe('/custom/traces');
      expect(request.headers['content-type']).toBe(contentType);
      expect(request.headers['x-otlp-test']).toBe('round-trip');
    }
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(hex(plain.body)).toBe(expected);
    expect(gzipped.headers['content-encoding']).toBe('gzip');
    expect(hex(gunzipSync(gzipped.body))).toBe(expected);
  });
});

describe('the span export thread', () => {
  /** A loopback collector whose answer to each request is decided by `answer`; it can also hold a request unanswered. */
  async function collector(answer: (n: number) => { status: number; body?: string; type?: string } | 'hold') {
    let requests = 0;
    const held: Array<() => void> = [];
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const reply = answer(++requests);
        if (reply === 'hold') {
          held.push(() => res.destroy());
          return;
        }
        res.writeHead(reply.status, { 'content-type': reply.type ?? 'application/json' }).end(reply.body ?? '{}');
      });
    });
    const port = await listen(server, 0, '127.0.0.1');
    return {
      url: `http://127.0.0.1:${port}/v1/traces`,
      requests: () => requests,
      close: async () => {
        for (const release of held) release();
        await closeServer(server, 1_000);
      },
    };
  }

  async function withOtelEnv<T>(vars: Record<string, string>, run: () => Promise<T>): Promise<T> {
    const saved = Object.entries(process.env).filter(([key]) => key.startsWith('OTEL_'));
    for (const [key] of saved) delete process.env[key];
    Object.assign(process.env, vars);
    try {
      return await run();
    } finally {
      for (const key of Object.keys(process.env)) if (key.startsWith('OTEL_')) delete process.env[key];
      for (const [key, value] of saved) process.env[key] = value;
    }
  }

  async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error('timed out waiting for the collector');
      await new Promise((wake) => setTimeout(wake, 10));
    }
  }

  const exportOnce = (exporter: SpanExporter, spans: ReadableSpan[]): Promise<ExportResult> => new Promise((resolve) => exporter.export(spans, resolve));
  /** The exporter's thread, for tests that must make it die. */
  const threadOf = (exporter: SpanExporter): Worker => (exporter as unknown as { worker: Worker }).worker;

  test('when the collector refuses a batch or answers a partial success, then the export fails with the HTTP status, and the partial success reaches the service’s diagnostics', async () => {
    const warnings: string[] = [];
    const logger: DiagLogger = { error: () => undefined, warn: (m: string, ...args: unknown[]) => void warnings.push([m, ...args].join(' ')), info: () => undefined, debug: () => undefined, verbose: () => undefined };
    const server = await collector((n) =>
      n === 1 ? { status: 400, body: '{"code":3,"message":"bad batch"}' } : { status: 200, body: '{"partialSuccess":{"rejectedSpans":"2","errorMessage":"spans too old"}}' },
    );
    try {
      diag.setLogger(logger, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
      await withOtelEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: server.url }, async () => {
        const exporter = createOtlpTraceExporter('http/json');
        try {
          const refused = await exportOnce(exporter, variedSpans());
          expect(refused.code).toBe(ExportResultCode.FAILED);
          expect((refused.error as Error & { code?: number }).code).toBe(400);
          expect(refused.error?.message).toMatch(/Bad Request/);
          const partial = await exportOnce(exporter, variedSpans());
          expect(partial.code).toBe(ExportResultCode.SUCCESS);
        } finally {
          await exporter.shutdown();
        }
      });
      expect(server.requests()).toBe(2);
      expect(warnings.join('\n')).toMatch(/span export thread: .*Partial Success.*spans too old/s);
    } finally {
      diag.disable();
      await server.close();
    }
  });

  test('when the thread exits with an export in flight, then that export fails, the next export respawns it; after 5 exits within a minute exports fail at once, until the minute has passed', async () => {
    const server = await collector((n) => (n === 1 ? 'hold' : { status: 200 }));
    const warnings: string[] = [];
    const logger: DiagLogger = { error: () => undefined, warn: (m: string) => void warnings.push(m), info: () => undefined, debug: () => undefined, verbose: () => undefined };
    diag.setLogger(logger, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
    let clock = 1_000_000;
    try {
      await withOtelEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: server.url }, async () => {
        const exporter = new OffThreadSpanExporter('http/protobuf', { now: () => clock });
        try {
          const inFlight = exportOnce(exporter, variedSpans());
          await until(() => server.requests() === 1);
          await threadOf(exporter).terminate();
          const lost = await inFlight;
          expect(lost.code).toBe(ExportResultCode.FAILED);
          expect(lost.error?.message).toMatch(/span export thread exited/);
          const threadWarnings = (): string[] => warnings.filter((w) => w.startsWith('span export thread exited'));
          expect(threadWarnings()).toEqual([expect.stringMatching(/span export thread exited \(code 1\), 1 time\(s\) within a minute; a new one starts/)]);

          expect((await exportOnce(exporter, variedSpans())).code).toBe(ExportResultCode.SUCCESS);
          expect(server.requests()).toBe(2);

          for (let exits = 2; exits <= 5; exits++) {
            clock += 1_000;
            const thread = threadOf(exporter);
            const exited = new Promise((resolve) => thread.once('exit', resolve));
            await thread.terminate();
            await exited;
            if (exits < 5) expect((await exportOnce(exporter, variedSpans())).code).toBe(ExportResultCode.SUCCESS);
          }
          expect(threadWarnings()).toHaveLength(5);
          expect(threadWarnings().at(-1)).toMatch(/5 time\(s\) within a minute; no new thread for a minute/);
          const refused = await exportOnce(exporter, variedSpans());
          expect(refused.code).toBe(ExportResultCode.FAILED);
          expect(refused.error?.message).toMatch(/exited 5 times within a minute/);
          expect(server.requests()).toBe(5);

          // A minute after the first exit, one slot is free again.
          clock += 60_000 - 4_000;
          const back = await exportOnce(exporter, variedSpans());
          expect(back.code).toBe(ExportResultCode.SUCCESS);
          expect(server.requests()).toBe(6);

          // An hour later an exit is counted alone.
          clock += 3_600_000;
          await threadOf(exporter).terminate();
          await until(() => threadWarnings().length === 6);
          expect(threadWarnings().at(-1)).toMatch(/1 time\(s\) within a minute; a new one starts/);
        } finally {
          await exporter.shutdown();
        }
      });
    } finally {
      diag.disable();
      await server.close();
    }
  });

  test('when the exporter shuts down with an export in flight, then the export settles first, the thread exits, and later exports are refused', async () => {
    const server = await collector(() => 'hold');
    try {
      await withOtelEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: server.url, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '300' }, async () => {
        const exporter = createOtlpTraceExporter('http/json');
        const order: string[] = [];
        const inFlight = exportOnce(exporter, variedSpans()).then((result) => {
          order.push(`export ${result.code}`);
          return result;
        });
        await until(() => server.requests() === 1);
        const thread = threadOf(exporter);
        const threadExit = new Promise<void>((resolve) => thread.once('exit', () => resolve()));
        await exporter.shutdown().then(() => order.push('shutdown'));
        await threadExit;
        expect(order).toEqual([`export ${ExportResultCode.FAILED}`, 'shutdown']);
        expect((await inFlight).error?.message).toMatch(/timed out/i);
        const late = await exportOnce(exporter, variedSpans());
        expect(late.error?.message).toMatch(/shut down/);
      });
    } finally {
      await server.close();
    }
  });

  test('when the library logs whole request bodies (OTEL_LOG_LEVEL=debug), then each forwarded part is cut to 500 characters and bytes are named by their length', async () => {
    expect(describeDiagArgument(new Uint8Array(70_000))).toBe('<70000 bytes>');
    expect(describeDiagArgument('x'.repeat(2_000))).toHaveLength(500);
    expect(describeDiagArgument(new Error('y'.repeat(900)))).toHaveLength(500);
    const lines: Array<[string, unknown[]]> = [];
    const logger: DiagLogger = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: (m: string, ...args: unknown[]) => void lines.push([m, args]), verbose: () => undefined };
    const server = await collector(() => ({ status: 200 }));
    try {
      diag.setLogger(logger, { logLevel: DiagLogLevel.DEBUG, suppressOverrideMessage: true });
      await withOtelEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: server.url, OTEL_LOG_LEVEL: 'debug' }, async () => {
        const exporter = createOtlpTraceExporter('http/json');
        try {
          expect((await exportOnce(exporter, variedSpans())).code).toBe(ExportResultCode.SUCCESS);
        } finally {
          await exporter.shutdown();
        }
      });
      const forwarded = lines.filter(([m]) => m.startsWith('span export thread: '));
      const itemsLine = forwarded.find(([, args]) => args.some((a) => String(a).includes('items to be sent')));
      expect(itemsLine, JSON.stringify(forwarded).slice(0, 2_000)).toBeDefined();
      for (const [message, args] of forwarded) {
        expect(message.length).toBeLessThanOrEqual('span export thread: '.length + 500);
        for (const arg of args) expect(String(arg).length).toBeLessThanOrEqual(500);
      }
    } finally {
      diag.disable();
      await server.close();
    }
  });

  test('when an exporter is idle, then its thread does not hold the process open; with an export in flight it does until the answer, and a shutdown is seen to its end', async () => {
    const server = await collector(() => ({ status: 200 }));
    const steps = {
      idle: '',
      exporting: "exporter.export([], (r) => console.log('export', r.code));",
      'shutting down': "exporter.export([], (r) => { console.log('export', r.code); exporter.shutdown().then(() => console.log('shut down')); });",
    };
    const expected = { idle: 'made\n', exporting: 'made\nexport 0\n', 'shutting down': 'made\nexport 0\nshut down\n' };
    try {
      for (const step of ['idle', 'exporting', 'shutting down'] as const) {
        const script = `
          const { createOtlpTraceExporter } = require(${JSON.stringify(join(REPO_ROOT, 'dist', 'src', 'telemetry', 'otlp-traces.js'))});
          const exporter = createOtlpTraceExporter('http/json');
          ${steps[step]}
          console.log('made');`;
        // Asynchronously: the collector answers from this process.
        const child = await promisify(execFile)(process.execPath, ['-e', script], { env: { PATH: process.env.PATH, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: server.url }, encoding: 'utf8', timeout: 15_000 });
        expect(child.stderr, step).toBe('');
        expect(child.stdout, step).toBe(expected[step]);
      }
      expect(server.requests()).toBe(2);
    } finally {
      await server.close();
    }
  });
});

describe('the test OTLP receiver', () => {
  test('when the library’s protobuf and JSON encodings of the same spans are posted, then it collects the same spans from both', async () => {
    const receiver = await startOtlpReceiver();
    try {
      const spans = variedSpans();
      const post = async (contentType: string, body: Uint8Array): Promise<number> =>
        (await fetch(`${receiver.url}/v1/traces`, { method: 'POST', headers: { 'content-type': contentType }, body })).status;
      expect(await post('application/x-protobuf', ProtobufTraceSerializer.serializeRequest(spans)!)).toBe(200);
      const fromProtobuf = receiver.spans.splice(0);
      expect(await post('application/json', JsonTraceSerializer.serializeRequest(spans)!)).toBe(200);
      expect(fromProtobuf).toHaveLength(spans.length);
      // What only one encoding can carry aside: JSON has no NaN or ±Infinity (null), UTF-8 no lone surrogates (U+FFFD).
      expect(comparable(fromProtobuf)).toStrictEqual(comparable(receiver.spans));
      expect(receiver.contentTypes).toStrictEqual(['application/x-protobuf', 'application/json']);
      // Truncated protobuf is refused, not half-collected.
      const whole = ProtobufTraceSerializer.serializeRequest(spans)!;
      expect(await post('application/x-protobuf', whole.subarray(0, whole.length - 3))).toBe(400);
      expect(await post('text/plain', whole)).toBe(415);
      expect(receiver.spans).toHaveLength(spans.length);
    } finally {
      await receiver.close();
    }
  });
});

function comparable(value: unknown): unknown {
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'string') return value.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
  if (Array.isArray(value)) return value.map(comparable);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, comparable(v)]));
  return value;
}
