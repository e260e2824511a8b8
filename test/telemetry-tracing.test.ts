/**
 * The OpenTelemetry SDK is process-global, so tracing tests live in this file alone and start
 * and stop the SDK explicitly, each with its own environment.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { trace } from '@opentelemetry/api';
import { GroupCommitter } from '../src/group-commit';
import { openDatabase, type Db } from '../src/store/database';
import { createTelemetryLogger } from '../src/telemetry/log';
import { samplerFromEnv } from '../src/telemetry/sampler';
import { startTelemetry, type TelemetryRuntime } from '../src/telemetry/sdk';
import {
  bindContext,
  childSpan,
  endClientSpan,
  endServerSpan,
  failSpan,
  graphRequestSpan,
  httpServerSpans,
  injectTraceparent,
  SPAN,
  SpanKind,
  startSpanFromTraceparent,
  startSpanWithLink,
  webhookServerSpan,
  withSpan,
} from '../src/telemetry/tracing';
import { parseExposition, sampleValue } from './helpers/prometheus';
import { startOtlpReceiver, type CollectedSpan, type OtlpReceiver } from './helpers/otlp-receiver';
import { freePort } from './helpers/webhook';

const KIND = { internal: 1, server: 2, client: 3 };
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/;

let receiver: OtlpReceiver;
let runtime: TelemetryRuntime | undefined;
let dir: string;
let db: Db;
let committer: GroupCommitter;

function start(env: Record<string, string>): TelemetryRuntime {
  runtime = startTelemetry({ env: { OTEL_BSP_SCHEDULE_DELAY: '20', ...env }, log: silentLog(), shutdownTimeoutMs: 3_000 });
  return runtime;
}

function silentLog(lines: string[] = []) {
  const push = (level: string) => (obj: object, msg: string) => void lines.push(JSON.stringify({ level, ...obj, msg }));
  return { error: push('error'), warn: push('warn'), info: push('info'), debug: push('debug') };
}

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  dir = mkdtempSync(join(tmpdir(), 'ctu-telemetry-tracing-'));
  db = openDatabase(join(dir, 'test.db'));
  committer = new GroupCommitter(db);
});

afterEach(async () => {
  await runtime?.shutdown();
  runtime = undefined;
  receiver.spans.length = 0;
  receiver.bodies.length = 0;
  receiver.contentTypes.length = 0;
});

afterAll(async () => {
  await receiver?.close();
  db?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

function byName(spans: readonly CollectedSpan[], name: string): CollectedSpan[] {
  return spans.filter((s) => s.name === name);
}

/**
 * Taps' journeys, as the lead wires them: webhook → tap (inside the real group commit) → N sends
 * (each with a Graph call) → N status webhooks. Several requests are in flight at once, so
 * their taps share one commit batch, run later on the committer's own stack.
 */
async function tapJourneys(requests: number, sends: number): Promise<void> {
  const stored: string[] = [];
  await Promise.all(
    Array.from({ length: requests }, (_, n) => {
      const request = webhookServerSpan('POST', '/webhook', 3000);
      return withSpan(request, () => {
        childSpan(SPAN.verify).end();
        const commit = childSpan(SPAN.commit);
        return committer
          .submit(
            bindContext(() => {
              const tap = childSpan(SPAN.tap, undefined, { 'unlock.pack': 'starter', 'unlock.request': n });
              for (let i = 0; i < sends; i++) stored.push(injectTraceparent(tap) as string);
              tap.end();
            }),
          )
          .then(() => {
            commit.end();
            endServerSpan(request, 200);
          });
      });
    }),
  );

  const sendContexts: string[] = [];
  for (const traceparent of stored) {
    expect(traceparent).toMatch(TRACEPARENT);
    const send = startSpanFromTraceparent(SPAN.send, traceparent, SpanKind.INTERNAL, { 'unlock.pack': 'starter' });
    const graph = graphRequestSpan('https://graph.example.test/v23.0/100000000000001/messages?access_token=SECRET', send);
    endClientSpan(graph, { statusCode: 200 });
    sendContexts.push(injectTraceparent(send) as string);
    send.end();
  }

  for (const sendTraceparent of sendContexts) {
    const statusRequest = webhookServerSpan('POST', '/webhook', 3000);
    withSpan(statusRequest, () => startSpanWithLink(SPAN.status, sendTraceparent, { 'messaging.message.status': 'delivered' }).end());
    endServerSpan(statusRequest, 200);
  }
}

describe('tracing with an OTLP/HTTP collector', () => {
  test('when taps are traced end to end, then the collector receives webhook → tap → sends → Graph calls, and statuses linked to their sends', async () => {
    const rt = start({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SERVICE_NAME: 'ctu-test' });
    expect(rt.tracing).toBe(true);
    const R = 2;
    const N = 3;
    await tapJourneys(R, N);
    await rt.forceFlush();
    const spans = await receiver.waitFor((s) => byName(s, SPAN.status).length === R * N && byName(s, 'POST /webhook').length === R + R * N);

    const taps = byName(spans, SPAN.tap);
    expect(taps).toHaveLength(R);
    const requestTraces = new Set<string>();
    for (const tap of taps) {
      const request = spans.find((s) => s.spanId === tap.parentSpanId);
      expect(request?.name).toBe('POST /webhook');
      const r = request as CollectedSpan;
      requestTraces.add(r.traceId);
      expect(r.parentSpanId).toBeUndefined();
      expect(r.kind).toBe(KIND.server);
      expect(r.attributes).toMatchObject({ 'http.request.method': 'POST', 'url.path': '/webhook', 'http.route': '/webhook', 'http.response.status_code': 200, 'server.port': 3000 });
      expect(r.resource).toMatchObject({ 'service.name': 'ctu-test', 'service.version': expect.any(String), 'service.instance.id': expect.stringMatching(/^[0-9a-f-]{36}$/) });
      const children = spans.filter((s) => s.parentSpanId === r.spanId).map((s) => s.name).sort();
      expect(children).toEqual([SPAN.tap, SPAN.commit, SPAN.verify].sort());

      const sends = spans.filter((s) => s.name === SPAN.send && s.parentSpanId === tap.spanId);
      expect(sends).toHaveLength(N);
      for (const send of sends) {
        expect(send.traceId).toBe(r.traceId);
        const graph = spans.filter((s) => s.parentSpanId === send.spanId);
        expect(graph).toHaveLength(1);
        expect(graph[0]).toMatchObject({
          name: 'POST /{version}/{phone_number_id}/messages',
          kind: KIND.client,
          traceId: r.traceId,
          attributes: {
            'http.request.method': 'POST',
            'server.address': 'graph.example.test',
            'server.port': 443,
            'url.full': 'https://graph.example.test/v23.0/100000000000001/messages',
            'http.response.status_code': 200,
          },
        });
        // … and exactly one status webhook, in its own request's trace, links back to this send.
        const statuses = byName(spans, SPAN.status).filter((s) => s.links.some((l) => l.spanId === send.spanId && l.traceId === r.traceId));
        expect(statuses).toHaveLength(1);
        const statusParent = spans.find((p) => p.spanId === statuses[0]?.parentSpanId);
        expect(statusParent?.name).toBe('POST /webhook');
        expect(statusParent?.traceId).not.toBe(r.traceId);
      }
    }
    expect(requestTraces.size).toBe(R);
    expect(receiver.bodies.join('')).not.toContain('SECRET');
  });

  test('when the REST API (express) answers a request, then it has a server span named by route, continuing an incoming traceparent', async () => {
    const rt = start({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
    // Required after the SDK started, as cli.ts does, so the express instrumentation patches it.
    const express = createRequire(__filename)('express') as typeof import('express');
    const app = express();
    app.use(httpServerSpans(3002));
    // An awaiting middleware: the handler after it is traced only if the context followed the await.
    app.use(async (_req: unknown, _res: unknown, next: () => void) => {
      await new Promise((r) => setTimeout(r, 2));
      next();
    });
    let afterAwait: string | undefined;
    app.get('/api/packs/:id', async (_req, res) => {
      await new Promise((r) => setImmediate(r));
      afterAwait = trace.getActiveSpan()?.spanContext().traceId;
      res.json({ ok: true });
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const caller = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/packs/starter?x=1`, { headers: { traceparent: caller } });
      expect(res.status).toBe(200);
      await res.text();
    } finally {
      await new Promise((r) => server.close(r));
    }
    await rt.forceFlush();
    const spans = await receiver.waitFor((s) => s.some((x) => x.kind === KIND.server));
    const serverSpan = spans.find((x) => x.kind === KIND.server) as CollectedSpan;
    expect(serverSpan).toMatchObject({
      name: 'GET /api/packs/:id',
      traceId: '0af7651916cd43dd8448eb211c80319c',
      parentSpanId: 'b7ad6b7169203331',
      attributes: { 'http.request.method': 'GET', 'url.path': '/api/packs/starter', 'http.route': '/api/packs/:id', 'http.response.status_code': 200, 'server.port': 3002 },
    });
    // The express instrumentation's spans hang under it, the handler's too (it runs after an await).
    const expressSpans = await receiver.waitFor((s) => s.some((x) => x.name.startsWith('request handler')));
    const handler = expressSpans.find((x) => x.name.startsWith('request handler'));
    expect(handler).toMatchObject({ traceId: serverSpan.traceId, parentSpanId: serverSpan.spanId });
    expect(expressSpans.filter((x) => x.parentSpanId === serverSpan.spanId && x.scope.includes('express')).length).toBeGreaterThan(1);
    expect(afterAwait).toBe(serverSpan.traceId);
  });

  test('when a span is given a phone-number-like attribute, then it is exported redacted', async () => {
    const rt = start({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.url}/v1/traces` });
    childSpan(SPAN.tap, undefined, { 'unlock.contact': '+1 555 123 4567', 'unlock.pack': 'starter', 'unlock.count': 6 }).end();
    await rt.forceFlush();
    const [tap] = byName(await receiver.waitFor((s) => byName(s, SPAN.tap).length === 1), SPAN.tap);
    expect(tap?.attributes).toMatchObject({ 'unlock.contact': '[redacted]', 'unlock.pack': 'starter', 'unlock.count': 6 });
    expect(receiver.bodies.join('')).not.toContain('555 123 4567');
  });

  test('when no OTLP protocol is set, then spans go as http/protobuf; OTEL_EXPORTER_OTLP_PROTOCOL=http/json sends JSON, the traces variable wins, and grpc is warned about and protobuf used', async () => {
    const cases: Array<{ env: Record<string, string>; contentType: string; warning?: RegExp }> = [
      { env: {}, contentType: 'application/x-protobuf' },
      { env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }, contentType: 'application/json' },
      { env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' }, contentType: 'application/x-protobuf' },
      { env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, contentType: 'application/x-protobuf', warning: /OTEL_EXPORTER_OTLP_PROTOCOL=\\?"grpc\\?" ignored: OTLP over gRPC is not shipped/ },
      { env: { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'thrift' }, contentType: 'application/x-protobuf', warning: /OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=\\?"thrift\\?" ignored/ },
      { env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'HTTP/JSON' }, contentType: 'application/x-protobuf', warning: /OTEL_EXPORTER_OTLP_PROTOCOL=\\?"HTTP\/JSON\\?" ignored/ },
    ];
    for (const { env, contentType, warning } of cases) {
      const lines: string[] = [];
      runtime = startTelemetry({ env: { OTEL_BSP_SCHEDULE_DELAY: '20', OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, ...env }, log: silentLog(lines), shutdownTimeoutMs: 3_000 });
      const tap = childSpan(SPAN.tap, undefined, { 'unlock.pack': 'starter', 'unlock.count': 6, 'unlock.ratio': 0.5, 'unlock.fresh': true, 'unlock.tags': ['a', 'b'] });
      failSpan(tap, 'recipient', 'undeliverable');
      tap.end();
      startSpanWithLink(SPAN.status, injectTraceparent(tap), {}).end();
      await runtime.forceFlush();
      const spans = await receiver.waitFor((s) => s.length === 2);
      const [exportedTap] = byName(spans, SPAN.tap);
      const [status] = byName(spans, SPAN.status);
      expect(receiver.contentTypes.length, JSON.stringify(env)).toBeGreaterThan(0);
      expect(new Set(receiver.contentTypes), JSON.stringify(env)).toStrictEqual(new Set([contentType]));
      expect(exportedTap?.attributes).toMatchObject({ 'unlock.pack': 'starter', 'unlock.count': 6, 'unlock.ratio': 0.5, 'unlock.fresh': true, 'unlock.tags': ['a', 'b'], 'error.type': 'recipient' });
      expect(exportedTap?.status).toStrictEqual({ code: 2, message: 'undeliverable' });
      expect(status?.links).toStrictEqual([{ traceId: exportedTap?.traceId, spanId: exportedTap?.spanId }]);
      const warned = lines.filter((line) => line.includes('ignored'));
      if (warning === undefined) expect(warned, JSON.stringify(env)).toStrictEqual([]);
      else expect(warned.some((line) => warning.test(line)), warned.join('\n')).toBe(true);
      await runtime.shutdown();
      runtime = undefined;
      receiver.spans.length = 0;
      receiver.contentTypes.length = 0;
    }
  });

  test('when 1,000 distinct phone numbers pass through the span helpers and the logger, then none is exported or logged', async () => {
    const rt = start({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_MAX_QUEUE_SIZE: '10000', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '2000' });
    const lines: string[] = [];
    const log = createTelemetryLogger(
      'info',
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          lines.push(chunk.toString('utf8'));
          cb();
        },
      }),
    );
    const numbers = Array.from({ length: 1000 }, (_, i) => `4479${String(10_000_000 + i * 7919).padStart(8, '0')}`);
    for (const n of numbers) {
      const request = webhookServerSpan('POST', '/webhook', 3000);
      withSpan(request, () => {
        const tap = childSpan(SPAN.tap, undefined, { 'unlock.contact': n, 'unlock.recipient': `+${n}` });
        failSpan(tap, 'recipient', `(#131026) Message undeliverable to ${n}`);
        tap.end();
        startSpanWithLink(SPAN.status, injectTraceparent(tap), { 'messaging.destination': `+${n.slice(0, 2)} ${n.slice(2)}` }).end();
        log.info({ contact: n, status: { recipient_id: n } }, 'status recorded');
      });
      endServerSpan(request, 200);
    }
    await rt.forceFlush();
    await receiver.waitFor((s) => byName(s, SPAN.status).length === numbers.length, 20_000);
    // Timestamps are digit runs too: a start time of …7.910 s reads "…7910000000", the first
    // number's tail. Scan everything but them.
    // The bodies are protobuf (the default), so the decoded spans are scanned too: a number
    // exported as an integer attribute would be a varint there, not digits.
    const exported = receiver.bodies.join('\n').replace(/"(?:start|end)?[tT]imeUnixNano":"\d+"/g, '') + JSON.stringify(receiver.spans);
    const logged = lines.join('').replace(/"time":\d+/g, '');
    expect(exported).toContain('[redacted]');
    for (const n of numbers) {
      expect(exported.includes(n.slice(2)), n).toBe(false);
      expect(logged.includes(n.slice(2)), n).toBe(false);
    }
    expect(logged.match(/"trace_id"/g)).toHaveLength(numbers.length);
  });

  test('when a server span answers 5xx, then it is marked as an error with error.type', async () => {
    const rt = start({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
    endServerSpan(webhookServerSpan('POST', '/webhook', 3000), 503);
    await rt.forceFlush();
    const [span] = await receiver.waitFor((s) => s.length === 1);
    expect(span?.status.code).toBe(2);
    expect(span?.attributes['error.type']).toBe('503');
  });

  test('when logging inside a span, then the line carries its trace_id and span_id and number fields are censored', async () => {
    start({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString('utf8'));
        cb();
      },
    });
    const log = createTelemetryLogger('info', sink);
    const span = webhookServerSpan('POST', '/webhook', 3000);
    withSpan(span, () => log.info({ contact: '15551234567', event: { from: '15557654321' } }, 'tap recorded'));
    log.info('outside any span');
    span.end();
    const [inside, outside] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(inside).toMatchObject({ trace_id: span.spanContext().traceId, span_id: span.spanContext().spanId, trace_flags: '01', contact: '[redacted]', event: { from: '[redacted]' } });
    expect(outside?.trace_id).toBeUndefined();
    expect(lines.join('')).not.toMatch(/555\d{7}/);
  });

  test('when OTEL_TRACES_SAMPLER is always_off, then nothing is exported and the stored traceparent says not sampled', async () => {
    const rt = start({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_TRACES_SAMPLER: 'always_off' });
    const span = webhookServerSpan('POST', '/webhook', 3000);
    const traceparent = injectTraceparent(span);
    endServerSpan(span, 200);
    await rt.forceFlush();
    await new Promise((r) => setTimeout(r, 100));
    expect(receiver.spans).toHaveLength(0);
    expect(traceparent === null || traceparent.endsWith('-00')).toBe(true);
  });

  test('when the standard sampler variables are set, then the sampler follows them', () => {
    expect(samplerFromEnv({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' }).toString()).toMatch(/ParentBased.*TraceIdRatioBased\{0\.25\}/);
    expect(samplerFromEnv({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '7' }).toString()).toMatch(/TraceIdRatioBased\{1\}/);
    expect(samplerFromEnv({}).toString()).toMatch(/ParentBased\{root=AlwaysOnSampler/);
    expect(samplerFromEnv({ OTEL_TRACES_SAMPLER: 'always_off' }).toString()).toBe('AlwaysOffSampler');
  });

  test('when no OTLP endpoint is set, then no spans are made and there is no traceparent to store', () => {
    const rt = start({});
    expect(rt.tracing).toBe(false);
    const span = webhookServerSpan('POST', '/webhook', 3000);
    expect(span.isRecording()).toBe(false);
    expect(injectTraceparent(span)).toBeNull();
    // A missing or malformed stored traceparent starts a fresh (here: no-op) span instead of throwing.
    expect(() => startSpanFromTraceparent(SPAN.send, 'garbage', SpanKind.INTERNAL).end()).not.toThrow();
    expect(() => startSpanWithLink(SPAN.status, null).end()).not.toThrow();
    span.end();
  });

  test('when telemetry is started twice without a shutdown, then the second start fails loudly', async () => {
    const rt = start({});
    expect(() => startTelemetry({ env: {} })).toThrow(/already started/);
    await rt.shutdown();
    runtime = startTelemetry({ env: {}, log: silentLog() });
    expect(runtime.enabled).toBe(true);
  });

  test('when OTEL_SDK_DISABLED=true, then telemetry is inert: no spans, no app metrics, no errors', async () => {
    const rt = start({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
    expect(rt.enabled).toBe(false);
    const span = webhookServerSpan('POST', '/webhook', 3000);
    expect(injectTraceparent(span)).toBeNull();
    span.end();
    rt.telemetry.click('starter');
    expect(await rt.appMetricsText()).toBe('');
  });

  test('when the collector port is closed, then nothing throws and failed exports are counted and logged', async () => {
    const closed = await freePort();
    const lines: string[] = [];
    runtime = startTelemetry({
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${closed}`, OTEL_BSP_SCHEDULE_DELAY: '20', OTEL_EXPORTER_OTLP_TIMEOUT: '500' },
      log: silentLog(lines),
      shutdownTimeoutMs: 2_000,
    });
    const rt = runtime;
    for (let i = 0; i < 20; i++) {
      const span = webhookServerSpan('POST', '/webhook', 3000);
      withSpan(span, () => childSpan(SPAN.verify).end());
      endServerSpan(span, 200);
    }
    await expect(rt.forceFlush()).resolves.toBeUndefined();
    const deadline = Date.now() + 15_000;
    let failures = 0;
    while (Date.now() < deadline) {
      failures = sampleValue(parseExposition(await rt.appMetricsText()), 'unlock_telemetry_export_failures_total', { signal: 'traces' }) ?? 0;
      if (failures >= 1) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(failures).toBeGreaterThanOrEqual(1);
    expect(lines.some((l) => l.includes('span export failed'))).toBe(true);
    // While the collector is unreachable, new traces are mostly not recorded (cheap): 1 in 100 probes.
    const recorded = Array.from({ length: 200 }, () => {
      const span = webhookServerSpan('POST', '/webhook', 3000);
      const child = childSpan(SPAN.verify, span);
      const both = [span.isRecording(), child.isRecording()];
      child.end();
      span.end();
      return both;
    });
    expect(recorded.filter(([root]) => root === true).length).toBe(2);
    for (const [root, child] of recorded) expect(child).toBe(root); // probe traces stay whole
    expect(lines.length).toBeLessThanOrEqual(11); // rate-limited: at most 10 diagnostics a minute (plus the suppression note)
  });
});
