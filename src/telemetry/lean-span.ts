/**
 * Spans for the webhook's hot path at a fraction of the SDK span's cost.
 *
 * Every signed POST makes three spans (the server span, webhook.verify, webhook.commit). Made by
 * the SDK's Tracer they cost the webhook 10–20 % of its throughput: each start validates and
 * copies its attributes three times and allocates a dozen objects. A LeanSpan does the same job with the same
 * parts: it takes its sampler, id generator, span limits, resource, instrumentation scope and
 * span processor from the SDK's own Tracer (so sampling, OTEL_BSP_* batching, OTEL_*_LIMIT
 * limits and the exporter behave exactly as for every other span), is a ReadableSpan the batch
 * processor and exporter take as they are, and differs only in how it keeps its state: plain
 * attributes checked once, the start time converted only when read, shared empty lists.
 *
 * Times follow the SDK's rule: the start is the wall clock (Date.now()), the end is the start
 * plus the monotonic time elapsed, so a span's duration never jumps with the wall clock.
 *
 * Only the webhook's spans are made here (tracing.ts: webhookServerSpan, and childSpan under a
 * LeanSpan). If the SDK's Tracer ever lacks one of the parts (another SDK version), leanTracer()
 * returns undefined and those spans come from the SDK's Tracer as before.
 */
import * as api from '@opentelemetry/api';
import {
  diag,
  SpanKind,
  SpanStatusCode,
  type Attributes,
  type AttributeValue,
  type Context,
  type Exception,
  type HrTime,
  type Link,
  type Span,
  type SpanContext,
  type SpanStatus,
  type TimeInput,
  type Tracer,
} from '@opentelemetry/api';
import * as core from '@opentelemetry/core';
import { isAttributeValue, isTimeInput, isTimeInputHrTime, sanitizeAttributes } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import * as sdkTrace from '@opentelemetry/sdk-trace-base';
import type { IdGenerator, ReadableSpan, Sampler, SpanLimits, SpanProcessor, TimedEvent } from '@opentelemetry/sdk-trace-base';
import { ATTR_EXCEPTION_MESSAGE, ATTR_EXCEPTION_STACKTRACE, ATTR_EXCEPTION_TYPE } from '@opentelemetry/semantic-conventions';

// Read once: under CommonJS an imported binding is a getter call on the exporting module at
// every use, and these are used several times per span on the webhook's hot path.
const { context: contextApi, trace, ROOT_CONTEXT, INVALID_SPAN_CONTEXT, TraceFlags } = api;
const { addHrTimes, hrTime, hrTimeDuration, isTracingSuppressed, millisToHrTime, otperformance } = core;
const { SamplingDecision } = sdkTrace;
/** The performance clock's epoch; constant for the process (the SDK reads it for every span). */
const TIME_ORIGIN = otperformance.timeOrigin;

type Scope = ReadableSpan['instrumentationScope'];

/** The parts of the SDK's Tracer a LeanSpan shares (fields of sdk-trace's Tracer class). */
interface SdkTracerParts {
  readonly _sampler: Sampler;
  readonly _spanLimits: SpanLimits;
  readonly _idGenerator: IdGenerator;
  readonly _resource: Resource;
  readonly _spanProcessor: SpanProcessor;
  readonly instrumentationScope: Scope;
  readonly _tracerMetrics?: TracerMetrics;
}

/** sdk-trace's TracerMetrics: the otel.sdk.span.* instruments, counted on every start and end. */
interface TracerMetrics {
  readonly startedSpans?: unknown;
  readonly liveSpans?: unknown;
  startSpan(parent: SpanContext | undefined, decision: sdkTrace.SamplingDecision): () => void;
}

/**
 * The tracer's own metrics when they count anything. The SDK makes them on a no-op meter unless
 * its span metrics are turned on (OTEL_NODE_EXPERIMENTAL_SDK_METRICS under NodeSDK); the no-op
 * instruments are the API's singletons, so they are recognised by identity, and a span then
 * skips the two label objects and the closure that counting a no-op costs.
 */
function countingTracerMetrics(metrics: TracerMetrics | undefined): TracerMetrics | undefined {
  if (metrics === undefined) return undefined;
  const noop = api.createNoopMeter();
  const silent = metrics.startedSpans === noop.createCounter('noop') && metrics.liveSpans === noop.createUpDownCounter('noop');
  return silent ? undefined : metrics;
}

const NO_LINKS: Link[] = Object.freeze([]) as unknown as Link[];
const NO_EVENTS: TimedEvent[] = Object.freeze([]) as unknown as TimedEvent[];
const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET });

export class LeanTracer {
  private readonly tracerMetrics: TracerMetrics | undefined;

  private constructor(private readonly parts: SdkTracerParts) {
    this.tracerMetrics = countingTracerMetrics(parts._tracerMetrics);
  }

  /** Built from the SDK's Tracer, or undefined when `tracer` is not one (no SDK, or the SDK is disabled). */
  static from(tracer: Tracer): LeanTracer | undefined {
    const parts = tracer as Partial<SdkTracerParts>;
    const ok =
      typeof parts._sampler?.shouldSample === 'function' &&
      typeof parts._idGenerator?.generateSpanId === 'function' &&
      typeof parts._idGenerator.generateTraceId === 'function' &&
      typeof parts._spanProcessor?.onEnd === 'function' &&
      typeof parts._spanProcessor.onStart === 'function' &&
      parts._spanLimits !== undefined &&
      parts._resource !== undefined &&
      parts.instrumentationScope !== undefined;
    return ok ? new LeanTracer(parts as SdkTracerParts) : undefined;
  }

  /**
   * Starts a span under `parent` (a root when there is none), as the SDK's Tracer.startSpan
   * would with the same arguments: same ids, same sampling call, same processor calls.
   * `handedOver`: the caller made `attributes` for this span alone, with valid scalar values,
   * and never touches it again, so it is used as it is instead of copied.
   */
  startSpan(name: string, kind: SpanKind, attributes: Attributes | undefined, parent: Span | undefined, handedOver = false): Span {
    const parts = this.parts;
    // As the SDK's childSpan path: the parent set on the active context (cached when that is the root, as on the webhook).
    const active = parent === undefined ? ROOT_CONTEXT : contextApi.active();
    const parentContext = parent === undefined ? ROOT_CONTEXT : parent instanceof LeanSpan && active === ROOT_CONTEXT ? parent.asContext() : trace.setSpan(active, parent);
    if (parent !== undefined && isTracingSuppressed(parentContext)) return trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
    const parentSpanContext = parent?.spanContext();
    const validParent = parent === undefined ? undefined : validSpanContext(parent);
    const spanId = parts._idGenerator.generateSpanId();
    const traceId = validParent?.traceId ?? parts._idGenerator.generateTraceId();
    // No attributes: the shared frozen object, for the sampler and the span alike (the span
    // makes its own at its first attribute). Our samplers only read what they are given.
    let initial: Attributes = NO_ATTRIBUTES;
    if (attributes !== undefined && handedOver) initial = attributes;
    else if (attributes !== undefined) {
      initial = {};
      for (const key in attributes) {
        if (!Object.prototype.hasOwnProperty.call(attributes, key)) continue;
        const value = attributes[key];
        // Arrays are copied, as sanitizeAttributes copies them: later changes by the caller do not show.
        if (validAttribute(key, value)) initial[key] = Array.isArray(value) ? (value.slice() as AttributeValue) : value;
      }
    }
    const sampling = parts._sampler.shouldSample(parentContext, traceId, name, kind, initial, []);
    const recordEnd = this.tracerMetrics?.startSpan(parentSpanContext, sampling.decision);
    const traceState = sampling.traceState ?? validParent?.traceState;
    const spanContext: SpanContext = {
      traceId,
      spanId,
      traceFlags: sampling.decision === SamplingDecision.RECORD_AND_SAMPLED ? TraceFlags.SAMPLED : TraceFlags.NONE,
      traceState,
    };
    if (sampling.decision === SamplingDecision.NOT_RECORD) return trace.wrapSpanContext(spanContext);
    if (sampling.attributes !== undefined) initial = Object.assign(initial === NO_ATTRIBUTES ? {} : initial, sampling.attributes);
    return new LeanSpan(parts, spanContext, validParent, name, kind, initial, parentContext, recordEnd);
  }
}

/** The span's context when it is valid; a LeanSpan's ids came from the id generator, so it needs no regular-expression check. */
export function validSpanContext(span: Span): SpanContext | undefined {
  const context = span.spanContext();
  return span instanceof LeanSpan || trace.isSpanContextValid(context) ? context : undefined;
}

/**
 * What few spans need: links, events, a status, dropped counts and the tracer's span metrics.
 * A LeanSpan makes this object only when one of them is first set, so the common span is small.
 */
interface SpanExtras {
  links: Link[];
  events: TimedEvent[];
  status: SpanStatus;
  droppedAttributesCount: number;
  droppedEventsCount: number;
  droppedLinksCount: number;
  recordEnd: (() => void) | undefined;
}

/** A span's attributes before the first is set: shared, and replaced by the span's own object on the first write. */
const NO_ATTRIBUTES: Attributes = Object.freeze({}) as Attributes;

const RUNNING = 0;
/** The end is set and onEnding runs; `ended` is still false. */
const ENDING = 1;
const ENDED = 2;

export class LeanSpan implements Span, ReadableSpan {
  /** Read-only to readers (ReadableSpan); replaced, never written, while it is NO_ATTRIBUTES. */
  attributes: Attributes;
  private attributeCount = 0;
  /** Date.now() at the start; the SDK's start time is this, as [seconds, nanoseconds]. */
  private readonly startMs: number;
  private readonly startPerf: number;
  // The end as two numbers, set by end(). HrTime arrays are made only when a reader asks:
  // the protobuf exporter reads the numbers (startSeconds and the others) and needs none.
  private endS = 0;
  private endNs = 0;
  private phase = RUNNING;
  /** The context with this span active, made once (children and the sampler read it). */
  private context: Context | undefined;
  private extras: SpanExtras | undefined;

  constructor(
    private readonly parts: SdkTracerParts,
    private readonly spanContextValue: SpanContext,
    readonly parentSpanContext: SpanContext | undefined,
    public name: string,
    readonly kind: SpanKind,
    attributes: Attributes,
    parentContext: Context,
    recordEnd: (() => void) | undefined,
  ) {
    this.startMs = Date.now();
    this.startPerf = otperformance.now();
    if (recordEnd !== undefined) this.more().recordEnd = recordEnd;
    // Checked again: a sampler may have written into the attributes it was given. LeanTracer
    // made that object for this span, so when it passes as it is, it becomes the span's own.
    if (this.adoptable(attributes)) this.attributes = attributes;
    else {
      this.attributes = NO_ATTRIBUTES;
      for (const key of Object.keys(attributes)) if (validAttribute(key, attributes[key])) this.put(key, attributes[key] as AttributeValue);
    }
    parts._spanProcessor.onStart(this as never, parentContext);
  }

  /** The context with this span active, made once (children and the sampler read it). */
  asContext(): Context {
    this.context ??= trace.setSpan(ROOT_CONTEXT, this);
    return this.context;
  }

  spanContext(): SpanContext {
    return this.spanContextValue;
  }

  get resource(): Resource {
    return this.parts._resource;
  }

  get instrumentationScope(): Scope {
    return this.parts.instrumentationScope;
  }

  // Nearly every span ends without links or events and with the status unset: they read one
  // shared empty list and one status until something is added.
  get links(): Link[] {
    return this.extras?.links ?? NO_LINKS;
  }

  get events(): TimedEvent[] {
    return this.extras?.events ?? NO_EVENTS;
  }

  get status(): SpanStatus {
    return this.extras?.status ?? UNSET;
  }

  get droppedAttributesCount(): number {
    return this.extras?.droppedAttributesCount ?? 0;
  }

  get droppedEventsCount(): number {
    return this.extras?.droppedEventsCount ?? 0;
  }

  get droppedLinksCount(): number {
    return this.extras?.droppedLinksCount ?? 0;
  }

  get startTime(): HrTime {
    return millisToHrTime(this.startMs);
  }

  get endTime(): HrTime {
    return this.phase === RUNNING ? [0, 0] : [this.endS, this.endNs];
  }

  get duration(): HrTime {
    return this.phase === RUNNING ? [-1, -1] : hrTimeDuration(this.startTime, this.endTime);
  }

  // The start as millisToHrTime(startMs) gives it, without the array.
  get startSeconds(): number {
    return Math.trunc(this.startMs / 1000);
  }

  get startNanos(): number {
    return Math.round((this.startMs % 1000) * 1e6);
  }

  /** The end's seconds (0 before the end, as endTime). */
  get endSeconds(): number {
    return this.endS;
  }

  get endNanos(): number {
    return this.endNs;
  }

  get ended(): boolean {
    return this.phase === ENDED;
  }

  setAttribute(key: string, value: AttributeValue | undefined): this {
    if (value == null || this.endedWarning()) return this;
    if (key.length === 0 || !isAttributeValue(value)) {
      diag.warn(`Invalid attribute ${key.length === 0 ? 'key' : `value set for key: ${key}`}`);
      return this;
    }
    this.put(key, value);
    return this;
  }

  setAttributes(attributes: Attributes): this {
    for (const key of Object.keys(attributes)) this.setAttribute(key, attributes[key]);
    return this;
  }

  addEvent(name: string, attributesOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.endedWarning()) return this;
    const limits = this.parts._spanLimits;
    let attributes: Attributes | undefined;
    let at: TimeInput | undefined = time;
    if (isTimeInput(attributesOrTime)) {
      if (!isTimeInput(at)) at = attributesOrTime;
    } else attributes = attributesOrTime;
    const more = this.more();
    if (limits.eventCountLimit === 0) {
      more.droppedEventsCount++;
      return this;
    }
    if (more.events === NO_EVENTS) more.events = [];
    if (limits.eventCountLimit !== undefined && more.events.length >= limits.eventCountLimit) {
      more.events.shift();
      more.droppedEventsCount++;
    }
    const { kept, dropped } = this.limited(attributes, limits.attributePerEventCountLimit);
    more.events.push({ name, attributes: kept, time: this.timeOf(at), droppedAttributesCount: dropped });
    return this;
  }

  addLink(link: Link): this {
    // The webhook's spans carry no links; one added later is kept as the SDK keeps it.
    if (this.endedWarning()) return this;
    const limits = this.parts._spanLimits;
    const more = this.more();
    if (limits.linkCountLimit === 0) {
      more.droppedLinksCount++;
      return this;
    }
    if (more.links === NO_LINKS) more.links = [];
    if (limits.linkCountLimit !== undefined && more.links.length >= limits.linkCountLimit) {
      more.links.shift();
      more.droppedLinksCount++;
    }
    const { kept, count, dropped } = this.limited(link.attributes, limits.attributePerLinkCountLimit);
    more.links.push({ context: link.context, ...(count > 0 ? { attributes: kept } : {}), ...(dropped > 0 ? { droppedAttributesCount: dropped } : {}) });
    return this;
  }

  addLinks(links: Link[]): this {
    for (const link of links) this.addLink(link);
    return this;
  }

  setStatus(status: SpanStatus): this {
    if (this.endedWarning() || status.code === SpanStatusCode.UNSET || this.status.code === SpanStatusCode.OK) return this;
    this.more().status = status.code === SpanStatusCode.ERROR && typeof status.message === 'string' ? { code: status.code, message: status.message } : { code: status.code };
    return this;
  }

  updateName(name: string): this {
    if (!this.endedWarning()) this.name = name;
    return this;
  }

  end(endTime?: TimeInput): void {
    if (this.ended) {
      diag.error(`${this.name} ${this.spanContextValue.traceId}-${this.spanContextValue.spanId} - You can only call end() on a span once.`);
      return;
    }
    if (endTime === undefined) {
      // The common end, "now", in numbers: the start plus the monotonic time elapsed, as the
      // SDK adds millisToHrTime(elapsed) to the start. Never before the start.
      const elapsed = otperformance.now() - this.startPerf;
      let s = this.startSeconds + Math.trunc(elapsed / 1000);
      let ns = this.startNanos + Math.round((elapsed % 1000) * 1e6);
      if (ns >= 1e9) {
        ns -= 1e9;
        s += 1;
      }
      this.endS = s;
      this.endNs = ns;
    } else {
      let end = this.timeOf(endTime);
      if (hrTimeDuration(this.startTime, end)[0] < 0) {
        diag.warn('Inconsistent start and end time, startTime > endTime. Setting span duration to 0ms.', this.startTime, end);
        end = this.startTime;
      }
      this.endS = end[0];
      this.endNs = end[1];
    }
    this.phase = ENDING;
    const processor = this.parts._spanProcessor;
    processor.onEnding?.(this as never);
    this.extras?.recordEnd?.();
    this.phase = ENDED;
    processor.onEnd(this);
  }

  isRecording(): boolean {
    return !this.ended;
  }

  recordException(exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {};
    if (typeof exception === 'string') attributes[ATTR_EXCEPTION_MESSAGE] = exception;
    else if (exception) {
      const type = exception.code ? String(exception.code) : exception.name;
      if (type) attributes[ATTR_EXCEPTION_TYPE] = type;
      if (exception.message) attributes[ATTR_EXCEPTION_MESSAGE] = exception.message;
      if (exception.stack) attributes[ATTR_EXCEPTION_STACKTRACE] = exception.stack;
    }
    if (attributes[ATTR_EXCEPTION_TYPE] || attributes[ATTR_EXCEPTION_MESSAGE]) this.addEvent('exception', attributes, time);
    else diag.warn(`Failed to record an exception ${String(exception)}`);
  }

  private more(): SpanExtras {
    this.extras ??= { links: NO_LINKS, events: NO_EVENTS, status: UNSET, droppedAttributesCount: 0, droppedEventsCount: 0, droppedLinksCount: 0, recordEnd: undefined };
    return this.extras;
  }

  /**
   * Whether the start attributes can be kept as they are: every entry valid, no more than the
   * count limit, and no value-length limit to apply. Counts them when they can.
   */
  private adoptable(attributes: Attributes): boolean {
    const limits = this.parts._spanLimits;
    const lengthLimit = limits.attributeValueLengthLimit;
    if (lengthLimit !== undefined && lengthLimit > 0 && lengthLimit !== Infinity) return false;
    const countLimit = limits.attributeCountLimit;
    let count = 0;
    for (const key in attributes) {
      if (!Object.prototype.hasOwnProperty.call(attributes, key) || !validAttribute(key, attributes[key])) return false;
      if (countLimit !== undefined && count >= countLimit) return false;
      count++;
    }
    this.attributeCount = count;
    return true;
  }

  private put(key: string, value: AttributeValue): void {
    const isNew = !Object.prototype.hasOwnProperty.call(this.attributes, key);
    const limit = this.parts._spanLimits.attributeCountLimit;
    if (isNew && limit !== undefined && this.attributeCount >= limit) {
      this.more().droppedAttributesCount++;
      return;
    }
    if (this.attributes === NO_ATTRIBUTES) this.attributes = {};
    this.attributes[key] = this.truncate(value);
    if (isNew) this.attributeCount++;
  }

  /** An event's or link's attributes, cleaned, truncated and cut at its own count limit, as the SDK does. */
  private limited(attributes: Attributes | undefined, limit: number | undefined): { kept: Attributes; count: number; dropped: number } {
    const kept: Attributes = {};
    let count = 0;
    let dropped = 0;
    const clean = sanitizeAttributes(attributes);
    for (const key in clean) {
      if (limit !== undefined && count >= limit) {
        dropped++;
        continue;
      }
      kept[key] = this.truncate(clean[key] as AttributeValue);
      count++;
    }
    return { kept, count, dropped };
  }

  private truncate(value: AttributeValue): AttributeValue {
    const limit = this.parts._spanLimits.attributeValueLengthLimit;
    if (limit === undefined || limit <= 0 || limit === Infinity) return value;
    if (typeof value === 'string') return value.length <= limit ? value : value.substring(0, limit);
    if (Array.isArray(value)) return value.map((v) => (typeof v === 'string' && v.length > limit ? v.substring(0, limit) : v)) as AttributeValue;
    return value;
  }

  /** A time as the SDK's span reads it: performance timestamps corrected to the wall clock, [s, ns] kept as given, else now. */
  private timeOf(input: TimeInput | undefined): HrTime {
    // A performance timestamp is corrected by Date.now() minus the performance clock's reading at the start, as the SDK does.
    if (typeof input === 'number') return input <= otperformance.now() ? hrTime(input + (this.startMs - (this.startPerf + TIME_ORIGIN))) : millisToHrTime(input);
    if (input instanceof Date) return millisToHrTime(input.getTime());
    if (isTimeInputHrTime(input)) return input;
    return addHrTimes(this.startTime, millisToHrTime(otperformance.now() - this.startPerf));
  }

  private endedWarning(): boolean {
    if (!this.ended) return false;
    diag.warn(`Cannot execute the operation on ended Span {traceId: ${this.spanContextValue.traceId}, spanId: ${this.spanContextValue.spanId}}`);
    return true;
  }
}

/** What sanitizeAttributes keeps, with the common scalar cases decided without a call. */
function validAttribute(key: string, value: unknown): boolean {
  if (key.length === 0) return false;
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
      return true;
    default:
      return value != null && isAttributeValue(value);
  }
}

