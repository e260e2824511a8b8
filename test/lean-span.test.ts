/**
 * LeanSpan against the SDK's own span: the same tracer parts and the same calls must give the
 * same exported span (ids from the same id generator, attributes, limits, status, events,
 * sampling), differing only in the clock readings. Then the webhook helpers under the real SDK:
 * they make LeanSpans, and without an SDK they fall back to the API's no-op spans.
 */
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import { suppressTracing } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  InMemorySpanExporter,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type IdGenerator,
  type ReadableSpan,
  SamplingDecision,
  type Sampler,
  type SpanLimits,
} from '@opentelemetry/sdk-trace-base';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, test, vi } from 'vitest';
import { LeanSpan, LeanTracer } from '../src/telemetry/lean-span';
import { encodeSpans } from '../src/telemetry/otlp-json';
import { otlpProtobufTraceSerializer } from '../src/telemetry/otlp-proto';
import { CountingSpanExporter } from '../src/telemetry/diagnostics';
import { startTelemetry } from '../src/telemetry/sdk';
import { childSpan, endServerSpan, failSpan, SPAN, webhookServerSpan } from '../src/telemetry/tracing';

/** Ids from a counter, so an SDK span and a LeanSpan made in turn can be compared id for id. */
class CountingIds implements IdGenerator {
  private n = 0;
  generateTraceId(): string {
    return (++this.n).toString(16).padStart(32, '0');
  }
  generateSpanId(): string {
    return (++this.n).toString(16).padStart(16, '0');
  }
}

const providers: BasicTracerProvider[] = [];
afterEach(() => {
  vi.restoreAllMocks();
});
afterAll(async () => {
  for (const provider of providers) await provider.shutdown();
});

function setup(options: { sampler?: Sampler; spanLimits?: SpanLimits } = {}) {
  const memory = new InMemorySpanExporter();
  const ids = new CountingIds();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'lean-span-test' }),
    idGenerator: ids,
    spanProcessors: [new SimpleSpanProcessor(memory)],
    ...(options.sampler !== undefined ? { sampler: options.sampler } : {}),
    ...(options.spanLimits !== undefined ? { spanLimits: options.spanLimits } : {}),
  });
  providers.push(provider);
  const sdk = provider.getTracer('lean-test', '1.0.0');
  const lean = LeanTracer.from(sdk);
  if (lean === undefined) throw new Error('LeanTracer.from did not accept the SDK tracer');
  return { memory, ids, sdk, lean };
}

/** What an exporter reads from a span, with the clock readings left out. */
function view(span: ReadableSpan) {
  return {
    name: span.name,
    kind: span.kind,
    spanContext: span.spanContext(),
    parentSpanContext: span.parentSpanContext,
    attributes: span.attributes,
    status: span.status,
    links: span.links,
    events: span.events.map((e) => ({ name: e.name, attributes: e.attributes, droppedAttributesCount: e.droppedAttributesCount })),
    droppedAttributesCount: span.droppedAttributesCount,
    droppedEventsCount: span.droppedEventsCount,
    droppedLinksCount: span.droppedLinksCount,
    resource: span.resource,
    instrumentationScope: span.instrumentationScope,
    ended: span.ended,
    startTime: span.startTime,
    endTime: span.endTime,
    duration: span.duration,
  };
}

/** The OTLP/JSON of spans with every nanosecond timestamp zeroed. */
function timeless(spans: ReadableSpan[]): string {
  return Buffer.from(encodeSpans(spans)).toString('utf8').replace(/"(start|end|time)(TimeUnixNano|UnixNano)":"\d+"/g, '"$1$2":"0"');
}

const hexOf = (bytes: Uint8Array | undefined): string => Buffer.from(bytes ?? []).toString('hex');

/** Scripts end spans at an explicit [seconds, nanoseconds], kept exactly by both. */
const END: [number, number] = [1_764_129_001, 987_654_321];

/** The same script run on one span: attributes set late, an event, a status, the end. */
type Script = (span: Span) => void;

function both(lean: LeanTracer, sdk: Tracer, ids: CountingIds, name: string, kind: SpanKind, attributes: Attributes | undefined, script: Script, nowMs = 1_764_129_000_123) {
  // The same wall clock for both starts, and the same ids: reset the counter between the two.
  vi.spyOn(Date, 'now').mockReturnValue(nowMs);
  const before = (ids as unknown as { n: number }).n;
  const s = sdk.startSpan(name, { kind, ...(attributes !== undefined ? { attributes } : {}) }, ROOT_CONTEXT);
  script(s);
  (ids as unknown as { n: number }).n = before;
  const l = lean.startSpan(name, kind, attributes, undefined);
  script(l);
  return { s: s as unknown as ReadableSpan, l: l as unknown as ReadableSpan };
}

describe('a LeanSpan exports as the SDK span made with the same parts and calls', () => {
  test('the webhook server span and its children', () => {
    const { memory, ids, sdk, lean } = setup();
    const attributes = { 'http.request.method': 'POST', 'url.path': '/webhook', 'http.route': '/webhook', 'url.scheme': 'http', 'server.port': 3000 };
    const { s, l } = both(lean, sdk, ids, 'POST /webhook', SpanKind.SERVER, attributes, (span) => {
      span.setAttribute('http.response.status_code', 200);
      span.end(END);
    });
    expect(l).toBeInstanceOf(LeanSpan);
    expect(view(l)).toEqual(view(s));
    expect(timeless([l])).toBe(timeless([s]));
    expect(memory.getFinishedSpans()).toHaveLength(2);

    // Handed over (as webhookServerSpan does): the same export, and the object is the span's own.
    const owned = { ...attributes };
    vi.spyOn(Date, 'now').mockReturnValue(1_764_129_000_123);
    const before = (ids as unknown as { n: number }).n;
    (ids as unknown as { n: number }).n = before - 2; // the two ids the pair above used
    const h = lean.startSpan('POST /webhook', SpanKind.SERVER, owned, undefined, true);
    expect((h as unknown as ReadableSpan).attributes).toBe(owned);
    h.setAttribute('http.response.status_code', 200);
    h.end(END);
    expect(view(h as unknown as ReadableSpan)).toEqual(view(s));
    (ids as unknown as { n: number }).n = before;

    // Children: same trace, parent id, sampling flag.
    const parent = lean.startSpan('POST /webhook', SpanKind.SERVER, attributes, undefined);
    const verify = lean.startSpan(SPAN.verify, SpanKind.INTERNAL, undefined, parent) as unknown as ReadableSpan;
    expect(verify.spanContext().traceId).toBe(parent.spanContext().traceId);
    expect(verify.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(verify.spanContext().traceFlags).toBe(TraceFlags.SAMPLED);
  });

  test('spans started without attributes share nothing once one is set, and a sampler\'s attributes are kept', () => {
    const { lean } = setup();
    const a = lean.startSpan('a', SpanKind.INTERNAL, undefined, undefined) as unknown as ReadableSpan & Span;
    const b = lean.startSpan('b', SpanKind.INTERNAL, undefined, undefined) as unknown as ReadableSpan & Span;
    const empty = a.attributes;
    expect(empty).toEqual({});
    a.setAttribute('only.a', 1);
    expect(a.attributes).toEqual({ 'only.a': 1 });
    expect(b.attributes).toEqual({});
    expect(empty).toEqual({});
    expect(Object.isFrozen(b.attributes)).toBe(true);
    b.setAttributes({ 'only.b': 'x' });
    expect(b.attributes).toEqual({ 'only.b': 'x' });
    expect(a.attributes).toEqual({ 'only.a': 1 });

    const tagging: Sampler = { shouldSample: () => ({ decision: SamplingDecision.RECORD_AND_SAMPLED, attributes: { 'sampler.tag': 'kept' } }), toString: () => 'tagging' };
    const tagged = setup({ sampler: tagging });
    const c = tagged.lean.startSpan('c', SpanKind.INTERNAL, undefined, undefined) as unknown as ReadableSpan;
    const d = tagged.lean.startSpan('d', SpanKind.INTERNAL, undefined, undefined) as unknown as ReadableSpan;
    expect(c.attributes).toEqual({ 'sampler.tag': 'kept' });
    expect(d.attributes).not.toBe(c.attributes);
    expect(a.attributes).toEqual({ 'only.a': 1 });
  });

  test('a span ended now has the SDK span’s start, end and duration, and protobuf writes them as the library does', () => {
    const { ids, sdk, lean } = setup();
    const perf = vi.spyOn(performance, 'now');
    // Elapsed milliseconds with sub-nanosecond fractions, across a second and a day; starts on a
    // second's last millisecond carry the nanoseconds over.
    for (const [startMs, elapsed] of [
      [1_764_129_000_123, 0],
      [1_764_129_000_123, 0.000_4],
      [1_764_129_000_999, 1.5],
      [1_764_129_000_999, 1.000_000_6],
      [1_764_129_000_999, 999.999_999_6],
      [1_764_129_000_500, 1_234.567_890_1],
      [1_764_129_000_001, 86_400_000.25],
    ] as const) {
      perf.mockReturnValue(5_000.123_456);
      const { s, l } = both(lean, sdk, ids, 'timed', SpanKind.INTERNAL, undefined, () => undefined, startMs);
      expect(l.startTime).toEqual(s.startTime);
      perf.mockReturnValue(5_000.123_456 + elapsed);
      (s as unknown as Span).end();
      (l as unknown as Span).end();
      expect(l.endTime).toEqual(s.endTime);
      expect(l.duration).toEqual(s.duration);
      expect(hexOf(otlpProtobufTraceSerializer.serializeRequest([l]))).toBe(hexOf(ProtobufTraceSerializer.serializeRequest([l])));
    }
  });

  test('errors, events, exceptions, renames and late attributes', () => {
    const { ids, sdk, lean } = setup();
    const { s, l } = both(lean, sdk, ids, 'webhook.commit', SpanKind.INTERNAL, { 'a.string': 'x', 'a.list': ['p', 'q'], 'a.bool': false, 'a.num': 1.5 }, (span) => {
      span.setAttribute('error.type', 'storage_unavailable');
      span.setAttributes({ 'late.one': 1, 'late.two': 'two' });
      span.setAttribute('skipped.undefined', undefined as unknown as string);
      span.addEvent('checkpoint', { 'bytes': 12 });
      span.addEvent('bare');
      span.recordException(new Error('disk full'));
      span.setStatus({ code: SpanStatusCode.ERROR, message: 'database is locked' });
      span.updateName('webhook.commit (failed)');
      span.end(END);
      // Ignored after the end, by both.
      span.setAttribute('after.end', 1);
      span.setStatus({ code: SpanStatusCode.OK });
    });
    const strip = (v: ReturnType<typeof view>) => ({ ...v, events: v.events.map((e) => (e.name === 'exception' ? { ...e, attributes: { ...e.attributes, 'exception.stacktrace': 'stack' } } : e)) });
    expect(strip(view(l))).toEqual(strip(view(s)));
    expect(l.status).toEqual({ code: SpanStatusCode.ERROR, message: 'database is locked' });
  });

  test('OTEL span limits: attribute count, value length, event count', () => {
    const { ids, sdk, lean } = setup({ spanLimits: { attributeCountLimit: 2, attributeValueLengthLimit: 4, eventCountLimit: 1, attributePerEventCountLimit: 1 } });
    const { s, l } = both(lean, sdk, ids, 'limited', SpanKind.INTERNAL, { one: 'abcdefgh', two: ['long value', 'x'], three: 3 }, (span) => {
      span.setAttribute('four', 4);
      span.setAttribute('one', 'replaced value');
      span.addEvent('first', { a: 1, b: 2 });
      span.addEvent('second', { c: 3 });
      span.end(END);
    });
    expect(view(l)).toEqual(view(s));
    expect(l.attributes).toEqual({ one: 'repl', two: ['long', 'x'] });
    expect(l.droppedAttributesCount).toBe(2);
    expect(l.droppedEventsCount).toBe(1);
  });

  test('children of a LeanSpan against children of the SDK span', () => {
    const { ids, sdk, lean } = setup();
    vi.spyOn(Date, 'now').mockReturnValue(1_764_129_000_500);
    const sdkParent = sdk.startSpan('POST /webhook', { kind: SpanKind.SERVER }, ROOT_CONTEXT);
    const sdkChild = sdk.startSpan(SPAN.commit, { attributes: { 'a.list': ['x', 'y'] } }, trace.setSpan(ROOT_CONTEXT, sdkParent));
    (ids as unknown as { n: number }).n = 0;
    const leanParent = lean.startSpan('POST /webhook', SpanKind.SERVER, undefined, undefined);
    const leanChild = lean.startSpan(SPAN.commit, SpanKind.INTERNAL, { 'a.list': ['x', 'y'] }, leanParent);
    for (const span of [sdkChild, leanChild, sdkParent, leanParent]) span.end(END);
    expect(view(leanChild as unknown as ReadableSpan)).toEqual(view(sdkChild as unknown as ReadableSpan));
    expect(view(leanParent as unknown as ReadableSpan)).toEqual(view(sdkParent as unknown as ReadableSpan));
  });

  test('start attributes are copied: a list changed after the start is exported as it was', () => {
    const { lean } = setup();
    const list = ['a'];
    const span = lean.startSpan('copied', SpanKind.INTERNAL, { list }, undefined) as unknown as ReadableSpan & Span;
    list.push('b');
    span.end();
    expect(span.attributes.list).toEqual(['a']);
  });

  test('links added after the start, with link and per-link attribute limits', () => {
    const { ids, sdk, lean } = setup({ spanLimits: { linkCountLimit: 2, attributePerLinkCountLimit: 1 } });
    const linked = (n: number) => ({ traceId: n.toString(16).padStart(32, 'a'), spanId: n.toString(16).padStart(16, 'b'), traceFlags: 1 });
    const { s, l } = both(lean, sdk, ids, 'linked', SpanKind.INTERNAL, undefined, (span) => {
      span.addLink({ context: linked(1), attributes: { a: 1, b: 2 } });
      span.addLinks([{ context: linked(2) }, { context: linked(3), attributes: { c: 'three' } }]);
      span.end(END);
    });
    expect(view(l)).toEqual(view(s));
    expect(l.links).toHaveLength(2);
    expect(l.droppedLinksCount).toBe(1);
    expect(timeless([l])).toBe(timeless([s]));
  });

  test('any attribute set, as a property: same kept attributes and dropped count as the SDK', () => {
    const value = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.array(fc.string(), { maxLength: 3 }), fc.constant(undefined), fc.constant(null));
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 6 }), value, { maxKeys: 6 }), fc.integer({ min: 1, max: 8 }), (attributes, limit) => {
        const { ids, sdk, lean } = setup({ spanLimits: { attributeCountLimit: limit, attributeValueLengthLimit: 3 } });
        const { s, l } = both(lean, sdk, ids, 'prop', SpanKind.INTERNAL, attributes as Attributes, (span) => span.end(END));
        expect(view(l)).toEqual(view(s));
      }),
      { numRuns: 100 },
    );
  });

  test('explicit end times and durations', () => {
    const { lean } = setup();
    const span = lean.startSpan('timed', SpanKind.INTERNAL, undefined, undefined) as unknown as ReadableSpan & Span;
    const before = Date.now();
    span.end(before + 1500);
    const [startS, startNs] = span.startTime;
    const [endS, endNs] = span.endTime;
    const startMs = startS * 1000 + startNs / 1e6;
    const endMs = endS * 1000 + endNs / 1e6;
    expect(Math.abs(startMs - before)).toBeLessThan(50);
    expect(endMs).toBeCloseTo(before + 1500, 3);
    expect(span.duration[0] * 1000 + span.duration[1] / 1e6).toBeCloseTo(endMs - startMs, 3);
    // An end before the start is clamped to the start, never a negative duration.
    const early = lean.startSpan('early', SpanKind.INTERNAL, undefined, undefined) as unknown as ReadableSpan & Span;
    early.end(new Date(Date.now() - 60_000));
    expect(early.duration).toEqual([0, 0]);
    // An [s, ns] end is kept to the nanosecond; a performance timestamp is read as the SDK reads it.
    const exact = lean.startSpan('exact', SpanKind.INTERNAL, undefined, undefined) as unknown as ReadableSpan & Span;
    const later: [number, number] = [Math.floor(Date.now() / 1000) + 10, 987_654_321];
    exact.end(later);
    expect(exact.endTime).toEqual(later);
    const perf = lean.startSpan('perf', SpanKind.INTERNAL, undefined, undefined) as unknown as ReadableSpan & Span;
    const perfNow = performance.now();
    perf.end(perfNow);
    const perfEndMs = perf.endTime[0] * 1000 + perf.endTime[1] / 1e6;
    expect(Math.abs(perfEndMs - Date.now())).toBeLessThan(50);
    // The start is the wall clock's millisecond as [seconds, nanoseconds].
    vi.spyOn(Date, 'now').mockReturnValue(1_700_000_000_123);
    expect((lean.startSpan('start', SpanKind.INTERNAL, undefined, undefined) as unknown as ReadableSpan).startTime).toEqual([1_700_000_000, 123_000_000]);
  });
});

describe('sampling is the SDK sampler’s', () => {
  test('always_off: non-recording spans that still carry ids', () => {
    const { memory, lean } = setup({ sampler: new AlwaysOffSampler() });
    const span = lean.startSpan('POST /webhook', SpanKind.SERVER, undefined, undefined);
    expect(span).not.toBeInstanceOf(LeanSpan);
    expect(span.isRecording()).toBe(false);
    expect(trace.isSpanContextValid(span.spanContext())).toBe(true);
    expect(span.spanContext().traceFlags).toBe(TraceFlags.NONE);
    span.end(END);
    expect(memory.getFinishedSpans()).toHaveLength(0);
  });

  test('ratio 0 drops roots; parent-based children follow their parent', () => {
    const off = setup({ sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0) }) });
    const root = off.lean.startSpan('root', SpanKind.SERVER, undefined, undefined);
    expect(root.isRecording()).toBe(false);
    const on = setup({ sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }) });
    const parent = on.lean.startSpan('root', SpanKind.SERVER, undefined, undefined);
    const child = on.lean.startSpan('child', SpanKind.INTERNAL, undefined, parent);
    expect(child.spanContext().traceFlags).toBe(TraceFlags.SAMPLED);
    child.end();
    parent.end();
    expect(on.memory.getFinishedSpans().map((s) => s.name)).toEqual(['child', 'root']);
  });
});

describe('the webhook helpers', () => {
  test('make LeanSpans under the real SDK, and the API’s spans without one', async () => {
    // No SDK registered yet: the API's no-op tracer, no LeanTracer.
    const noop = webhookServerSpan('POST', '/webhook', 3000);
    expect(noop).not.toBeInstanceOf(LeanSpan);
    expect(noop.isRecording()).toBe(false);

    const runtime = startTelemetry({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_TRACES_SAMPLER: 'always_on', OTEL_BSP_SCHEDULE_DELAY: '60000' }, shutdownTimeoutMs: 500, log: { error() {}, warn() {}, info() {}, debug() {} } });
    try {
      const server = webhookServerSpan('POST', '/webhook', 3000);
      const verify = childSpan(SPAN.verify, server);
      const commit = childSpan(SPAN.commit, server);
      expect(server).toBeInstanceOf(LeanSpan);
      expect(verify).toBeInstanceOf(LeanSpan);
      expect(commit).toBeInstanceOf(LeanSpan);
      failSpan(commit, 'storage_unavailable');
      verify.end();
      commit.end();
      endServerSpan(server, 503);
      const readable = server as unknown as ReadableSpan;
      expect(readable.attributes).toMatchObject({ 'http.request.method': 'POST', 'http.response.status_code': 503, 'error.type': '503' });
      expect(readable.status.code).toBe(SpanStatusCode.ERROR);
      expect((commit as unknown as ReadableSpan).parentSpanContext?.spanId).toBe(server.spanContext().spanId);
      // Tracing suppressed in the active context: no recording child, as with the SDK's tracer.
      const suppressed = context.with(suppressTracing(context.active()), () => childSpan(SPAN.verify, server));
      expect(suppressed.isRecording()).toBe(false);
      // An SDK span under a LeanSpan (the tap span under the commit span) joins its trace.
      const tap = childSpan(SPAN.tap, trace.setSpan(ROOT_CONTEXT, commit));
      expect(tap).not.toBeInstanceOf(LeanSpan);
      expect(tap.spanContext().traceId).toBe(server.spanContext().traceId);
      expect((tap as unknown as ReadableSpan).parentSpanContext?.spanId).toBe(commit.spanContext().spanId);
      expect((tap as unknown as ReadableSpan).resource).toBe(readable.resource);
      tap.end();
    } finally {
      await runtime.shutdown();
    }
  });
});

describe('deferred exports (CountingSpanExporter)', () => {
  test('start after the current turn; flush and shutdown wait for them; failures counted once', async () => {
    const calls: string[] = [];
    let failures = 0;
    const inner = {
      export(spans: ReadableSpan[], done: (r: { code: number; error?: Error }) => void) {
        calls.push(`export ${spans.length}`);
        done({ code: spans.length === 0 ? 1 : 0, ...(spans.length === 0 ? { error: new Error('empty') } : {}) });
        done({ code: 0 }); // a second callback is ignored
      },
      shutdown: async () => void calls.push('shutdown'),
      forceFlush: async () => void calls.push('flush'),
    };
    const exporter = new CountingSpanExporter(inner, () => failures++);
    const results: number[] = [];
    const { memory, lean } = setup();
    lean.startSpan('x', SpanKind.INTERNAL, undefined, undefined).end();
    exporter.export(memory.getFinishedSpans() as ReadableSpan[], (r) => results.push(r.code));
    exporter.export([], (r) => results.push(r.code));
    expect(calls).toEqual([]); // nothing ran inside the caller's turn
    await exporter.forceFlush();
    expect(calls).toEqual(['export 1', 'export 0', 'flush']);
    expect(results).toEqual([0, 1]);
    expect(failures).toBe(1);
    exporter.export([], () => undefined);
    await exporter.shutdown();
    expect(calls.slice(-2)).toEqual(['export 0', 'shutdown']);
  });
});
