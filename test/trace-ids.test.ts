/**
 * Span and trace ids from the pooled generator: W3C-shaped, unique, never all zeros, and
 * right across pool refills.
 */
import { trace, TraceFlags } from '@opentelemetry/api';
import { describe, expect, test } from 'vitest';
import { traceSeed } from '../src/telemetry/delivery-tracing';
import { seededTraceparent } from '../src/writer-ops';
import { PooledRandomIds, ReplayableIdGenerator, withSpanId } from '../src/telemetry/tracing';

describe('trace and span ids', () => {
  test('when 20,000 ids of each kind are made, then they are lowercase hex of the right length and all distinct', () => {
    const ids = new ReplayableIdGenerator();
    const traces = Array.from({ length: 20_000 }, () => ids.generateTraceId());
    const spans = Array.from({ length: 20_000 }, () => ids.generateSpanId());
    for (const id of traces) expect(id).toMatch(/^[0-9a-f]{32}$/);
    for (const id of spans) expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(new Set(traces).size).toBe(traces.length);
    expect(new Set(spans).size).toBe(spans.length);
    // Every hex digit turns up in every position: the bytes are spread, not stuck.
    for (let position = 0; position < 16; position++) expect(new Set(spans.map((id) => id[position])).size).toBe(16);
  });

  test('when the pool is cut in pieces that do not divide it, then each id is the pool’s next digits and a refill starts a fresh pool', () => {
    let refills = 0;
    const ids = new PooledRandomIds((bytes) => {
      refills++;
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i + refills) & 0xff;
    });
    const first = ids.hex(32, 'x');
    expect(first).toBe('0102030405060708090a0b0c0d0e0f10');
    // 16,384 hex digits per pool: 510 more ids of 32 leave 32 digits; one id of 16 leaves 16,
    // too few for a trace id, so the next one comes from a refilled pool.
    for (let i = 0; i < 510; i++) ids.hex(32, 'x');
    expect(ids.hex(16, 'x')).toBe('f1f2f3f4f5f6f7f8'); // bytes 8176… of the first pool: (i + 1) & 0xff
    expect(refills).toBe(1);
    expect(ids.hex(32, 'x')).toBe('02030405060708090a0b0c0d0e0f1011'); // second pool: (i + 2)
    expect(refills).toBe(2);
  });

  test('when the random bytes are all zeros, then the invalid id is skipped rather than returned', () => {
    let refills = 0;
    const ids = new PooledRandomIds((bytes) => {
      refills++;
      bytes.fill(refills === 1 ? 0 : 0xab);
    });
    expect(ids.hex(32, '0'.repeat(32))).toBe('ab'.repeat(16));
    expect(refills).toBe(2);
  });

  test('when a span id was chosen beforehand, then the generator hands it out once, then random ones again', () => {
    const ids = new ReplayableIdGenerator();
    const chosen = withSpanId('00f067aa0ba902b7', () => [ids.generateSpanId(), ids.generateSpanId()]);
    expect(chosen[0]).toBe('00f067aa0ba902b7');
    expect(chosen[1]).not.toBe('00f067aa0ba902b7');
  });
});

describe('the trace seed handed to the writer thread', () => {
  test('when a span is sampled or not, then the seed names its trace and flags, and the writer\'s traceparents continue it', () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const span = (traceFlags: number) => trace.wrapSpanContext({ traceId, spanId: '00f067aa0ba902b7', traceFlags });
    expect(traceSeed(span(TraceFlags.SAMPLED))).toBe(`${traceId}-01`);
    expect(seededTraceparent(traceSeed(span(TraceFlags.SAMPLED)) as string, 'b7ad6b7169203331')).toBe(`00-${traceId}-b7ad6b7169203331-01`);
    expect(seededTraceparent(traceSeed(span(TraceFlags.NONE)) as string, 'b7ad6b7169203331')).toBe(`00-${traceId}-b7ad6b7169203331-00`);
    expect(traceSeed(trace.wrapSpanContext({ traceId: '0'.repeat(32), spanId: '0'.repeat(16), traceFlags: 1 }))).toBeNull();
  });
});
