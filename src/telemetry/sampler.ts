/**
 * Sampling: the standard OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, wrapped so that while
 * span exports are failing (collector down) almost no spans are recorded. Spans built for a
 * collector that cannot take them would be dropped from the full batch queue anyway; not
 * recording them keeps the webhook's per-request cost at the no-collector level. One new trace
 * in `probeEvery` is still recorded, so a recovered collector is noticed.
 */
import { diag, trace, TraceFlags, type Attributes, type Context, type Link, type SpanKind } from '@opentelemetry/api';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  ParentBasedSampler,
  SamplingDecision,
  TraceIdRatioBasedSampler,
  type Sampler,
  type SamplingResult,
} from '@opentelemetry/sdk-trace-base';

type Env = Readonly<Record<string, string | undefined>>;

/** As the specification defines the variables; an unknown name falls back to the default, parentbased_always_on. */
export function samplerFromEnv(env: Env): Sampler {
  const name = env.OTEL_TRACES_SAMPLER?.trim().toLowerCase() || 'parentbased_always_on';
  const ratio = (): number => {
    const raw = env.OTEL_TRACES_SAMPLER_ARG?.trim();
    const value = raw === undefined || raw === '' ? 1 : Number(raw);
    if (!Number.isFinite(value) || value < 0 || value > 1) {
      diag.warn(`OTEL_TRACES_SAMPLER_ARG="${raw}" is not a ratio in [0, 1]; using 1`);
      return 1;
    }
    return value;
  };
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio());
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio()) });
    default:
      diag.warn(`OTEL_TRACES_SAMPLER="${name}" is not supported here; using parentbased_always_on`);
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

/** Whether the last span export failed; set by the exporter wrapper. */
export class ExportHealth {
  failing = false;
}

export class SheddingSampler implements Sampler {
  private count = 0;

  constructor(
    private readonly inner: Sampler,
    private readonly health: ExportHealth,
    private readonly probeEvery = 100,
  ) {}

  shouldSample(ctx: Context, traceId: string, name: string, kind: SpanKind, attributes: Attributes, links: Link[]): SamplingResult {
    if (!this.health.failing) return this.inner.shouldSample(ctx, traceId, name, kind, attributes, links);
    const parent = trace.getSpanContext(ctx);
    if (parent !== undefined && parent.isRemote !== true) {
      // Inside a local trace, follow its root: probe traces stay whole, shed ones stay empty.
      const sampled = (parent.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED;
      return sampled ? this.inner.shouldSample(ctx, traceId, name, kind, attributes, links) : { decision: SamplingDecision.NOT_RECORD };
    }
    if (++this.count % this.probeEvery === 0) return this.inner.shouldSample(ctx, traceId, name, kind, attributes, links);
    return { decision: SamplingDecision.NOT_RECORD };
  }

  toString(): string {
    return `SheddingSampler{${this.inner.toString()}}`;
  }
}
