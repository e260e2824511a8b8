/**
 * The samplers the standard variables choose decide as the SDK's own would, for a root and for
 * every kind of parent, and return shared results instead of one object per span.
 */
import { ROOT_CONTEXT, SpanKind, trace, TraceFlags, type Context, type SpanContext } from '@opentelemetry/api';
import {
  AlwaysOffSampler as SdkAlwaysOff,
  AlwaysOnSampler as SdkAlwaysOn,
  ParentBasedSampler,
  type Sampler,
} from '@opentelemetry/sdk-trace-base';
import { describe, expect, test } from 'vitest';
import { AlwaysOffSampler, AlwaysOnSampler, samplerFromEnv } from '../src/telemetry/sampler';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const parent = (flags: number, isRemote: boolean): Context =>
  trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE_ID, spanId: '00f067aa0ba902b7', traceFlags: flags, isRemote } satisfies SpanContext);

const PARENTS: ReadonlyArray<readonly [string, Context]> = [
  ['no parent', ROOT_CONTEXT],
  ['local sampled parent', parent(TraceFlags.SAMPLED, false)],
  ['local unsampled parent', parent(TraceFlags.NONE, false)],
  ['remote sampled parent', parent(TraceFlags.SAMPLED, true)],
  ['remote unsampled parent', parent(TraceFlags.NONE, true)],
];

const SDK: Record<string, Sampler> = {
  always_on: new SdkAlwaysOn(),
  always_off: new SdkAlwaysOff(),
  parentbased_always_on: new ParentBasedSampler({ root: new SdkAlwaysOn() }),
  parentbased_always_off: new ParentBasedSampler({ root: new SdkAlwaysOff() }),
};

describe('samplerFromEnv', () => {
  test.each(Object.keys(SDK))('when OTEL_TRACES_SAMPLER=%s, then every decision is the SDK sampler\'s', (name) => {
    const ours = samplerFromEnv({ OTEL_TRACES_SAMPLER: name });
    const theirs = SDK[name] as Sampler;
    for (const [, ctx] of PARENTS) {
      const a = ours.shouldSample(ctx, TRACE_ID, 'span', SpanKind.INTERNAL, {}, []);
      const b = theirs.shouldSample(ctx, TRACE_ID, 'span', SpanKind.INTERNAL, {}, []);
      expect({ decision: a.decision, attributes: a.attributes, traceState: a.traceState }).toEqual({ decision: b.decision, attributes: b.attributes, traceState: b.traceState });
    }
    expect(ours.toString()).toBe(theirs.toString());
  });

  test('when a span is sampled or not, then the result is one shared frozen object per decision', () => {
    const on = new AlwaysOnSampler();
    const off = new AlwaysOffSampler();
    const first = on.shouldSample();
    expect(on.shouldSample()).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    expect(off.shouldSample()).toBe(off.shouldSample());
    expect(off.shouldSample().decision).not.toBe(first.decision);
  });
});
