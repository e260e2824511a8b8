/**
 * Sampling: the standard OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, wrapped so that while
 * span exports are failing (collector down) almost no spans are recorded. Spans built for a
 * collector that cannot take them would be dropped from the full batch queue anyway; not
 * recording them keeps the webhook's per-request cost at the no-collector level. One new trace
 * in `probeEvery` is still recorded, so a recovered collector is noticed.
 */
import { diag, trace, TraceFlags, type Attributes, type Context, type Link, type SpanKind } from '@opentelemetry/api';
import {
  ParentBasedSampler,
  SamplingDecision,
  TraceIdRatioBasedSampler,
  type Sampler,
  type SamplingResult,
} from '@opentelemetry/sdk-trace-base';

type Env = Readonly<Record<string, string | undefined>>;

// One frozen result per decision: the SDK's always-on and always-off samplers allocate a result
// for every span (three per webhook request); readers only read it.
const SAMPLED: SamplingResult = Object.freeze({ decision: SamplingDecision.RECORD_AND_SAMPLED });
const NOT_RECORDED: SamplingResult = Object.freeze({ decision: SamplingDecision.NOT_RECORD });

/** The specification's always_on sampler: every span recorded and sampled. */
export class AlwaysOnSampler implements Sampler {
  shouldSample(): SamplingResult {
    return SAMPLED;
  }

  toString(): string {
    return 'AlwaysOnSampler';
  }
}

/** The specification's always_off sampler: no span recorded. */
export class AlwaysOffSampler implements Sampler {
  shouldSample(): SamplingResult {
    return NOT_RECORDED;
  }

  toString(): string {
    return 'AlwaysOffSampler';
  }
}

const ALWAYS_ON = new AlwaysOnSampler();
const ALWAYS_OFF = new AlwaysOffSampler();

/** ParentBased with the specification's default delegates for parents, as ours. */
function parentBased(root: Sampler): Sampler {
  return new ParentBasedSampler({
    root,
    remoteParentSampled: ALWAYS_ON,
    remoteParentNotSampled: ALWAYS_OFF,
    localParentSampled: ALWAYS_ON,
    localParentNotSampled: ALWAYS_OFF,
  });
}

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
      return ALWAYS_ON;
    case 'always_off':
      return ALWAYS_OFF;
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio());
    case 'parentbased_always_on':
      return parentBased(ALWAYS_ON);
    case 'parentbased_always_off':
      return parentBased(ALWAYS_OFF);
    case 'parentbased_traceidratio':
      return parentBased(new TraceIdRatioBasedSampler(ratio()));
    default:
      diag.warn(`OTEL_TRACES_SAMPLER="${name}" is not supported here; using parentbased_always_on`);
      return parentBased(ALWAYS_ON);
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
      return sampled ? this.inner.shouldSample(ctx, traceId, name, kind, attributes, links) : NOT_RECORDED;
    }
    if (++this.count % this.probeEvery === 0) return this.inner.shouldSample(ctx, traceId, name, kind, attributes, links);
    return NOT_RECORDED;
  }

  toString(): string {
    return `SheddingSampler{${this.inner.toString()}}`;
  }
}
