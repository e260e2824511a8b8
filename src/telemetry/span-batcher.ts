/**
 * The batch span processor spans are exported through: the SDK's BatchSpanProcessor behaviour
 * (sdk-trace 2.x), kept to the letter where an operator or a collector can see it, with less
 * work per span.
 *
 *   settings   OTEL_BSP_MAX_EXPORT_BATCH_SIZE (512), OTEL_BSP_MAX_QUEUE_SIZE (2048),
 *              OTEL_BSP_SCHEDULE_DELAY (5000 ms), OTEL_BSP_EXPORT_TIMEOUT (30000 ms); a batch
 *              size above the queue size is cut to it, with a warning.
 *   queue      sampled spans wait in a bounded queue; a full queue drops the span, and the next
 *              span queued after a drop warns how many were dropped.
 *   export     a batch goes as soon as the queue holds a full one, else when the schedule delay
 *              has passed since the timer started (at the first span queued while no export
 *              runs, or when an export ends with spans left). One export at a time, except that
 *              an export given up on at the export timeout may still be running beside the next,
 *              and a flush sends all its batches at once. Exports run with tracing suppressed,
 *              so an instrumented transport cannot trace its own requests, and wait for
 *              resources whose attributes are still being detected.
 *   flush      forceFlush exports everything queued and waits for it and for an export in
 *              flight; shutdown flushes, then shuts the exporter down; spans ended after
 *              shutdown are ignored. Neither rejects: a failed export is logged (diag.error).
 *
 * Why not the SDK's own: on every span it queues, it allocates the closure that would start an
 * export, about a tenth of what the webhook's three spans allocated beyond the spans themselves
 * (allocation sampling of the service at 3,000 webhooks/s). This processor keeps one bound
 * timer callback and decides without allocating.
 */
import { context, diag, TraceFlags } from '@opentelemetry/api';
import { ExportResultCode, getNumberFromEnv, suppressTracing } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-base';

export interface BatchSettings {
  readonly maxExportBatchSize: number;
  readonly maxQueueSize: number;
  readonly scheduledDelayMillis: number;
  readonly exportTimeoutMillis: number;
}

const DEFAULTS: BatchSettings = { maxExportBatchSize: 512, maxQueueSize: 2048, scheduledDelayMillis: 5_000, exportTimeoutMillis: 30_000 };

const ENV: Readonly<Record<keyof BatchSettings, string>> = {
  maxExportBatchSize: 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE',
  maxQueueSize: 'OTEL_BSP_MAX_QUEUE_SIZE',
  scheduledDelayMillis: 'OTEL_BSP_SCHEDULE_DELAY',
  exportTimeoutMillis: 'OTEL_BSP_EXPORT_TIMEOUT',
};

/**
 * Each setting: given, else its OTEL_BSP_* variable (read as the SDK reads it), else the default.
 * A value that is not a positive whole number (a zero batch would never empty the queue) is
 * warned about and the default used.
 */
export function batchSettings(given: Partial<BatchSettings> = {}): BatchSettings {
  const pick = (name: keyof BatchSettings): number => {
    const value = given[name] ?? getNumberFromEnv(ENV[name]);
    if (value === undefined) return DEFAULTS[name];
    if (Number.isSafeInteger(value) && value > 0) return value;
    diag.warn(`${ENV[name]} (${name}) must be a positive whole number, not ${value}; using ${DEFAULTS[name]}`);
    return DEFAULTS[name];
  };
  const settings = {
    maxExportBatchSize: pick('maxExportBatchSize'),
    maxQueueSize: pick('maxQueueSize'),
    scheduledDelayMillis: pick('scheduledDelayMillis'),
    exportTimeoutMillis: pick('exportTimeoutMillis'),
  };
  if (settings.maxExportBatchSize > settings.maxQueueSize) {
    diag.warn('BatchSpanProcessor: maxExportBatchSize must be smaller or equal to maxQueueSize, setting maxExportBatchSize to match maxQueueSize');
    settings.maxExportBatchSize = settings.maxQueueSize;
  }
  return settings;
}

export class SpanBatcher implements SpanProcessor {
  private readonly settings: BatchSettings;
  private queue: ReadableSpan[] = [];
  private exporting = false;
  private timer: NodeJS.Timeout | undefined;
  private dropped = 0;
  private stopped: Promise<void> | undefined;
  /** Exports not yet settled, so that flush and shutdown can wait for them. */
  private readonly inFlight = new Set<Promise<void>>();
  /** The timer's callback, made once. */
  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.exportNext();
  };

  constructor(
    private readonly exporter: SpanExporter,
    settings: Partial<BatchSettings> = {},
  ) {
    this.settings = batchSettings(settings);
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if (this.stopped !== undefined || (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.queue.length >= this.settings.maxQueueSize) {
      if (this.dropped++ === 0) diag.debug('maxQueueSize reached, dropping spans');
      return;
    }
    if (this.dropped > 0) {
      diag.warn(`Dropped ${this.dropped} spans because maxQueueSize reached`);
      this.dropped = 0;
    }
    this.queue.push(span);
    if (this.exporting) return;
    if (this.queue.length >= this.settings.maxExportBatchSize) this.exportNext();
    else this.startTimer();
  }

  forceFlush(): Promise<void> {
    return this.stopped ?? this.flushAll();
  }

  shutdown(): Promise<void> {
    this.stopped ??= this.flushAll()
      .then(() => this.exporter.shutdown())
      .catch((error: unknown) => diag.error('span exporter shutdown failed', error));
    return this.stopped;
  }

  /** Exports one batch, and when it settles the next one if a full batch (or any span, once the delay is due) waits. */
  private exportNext(): void {
    this.clearTimer();
    if (this.queue.length === 0) return;
    this.exporting = true;
    void this.exportBatch().finally(() => {
      this.exporting = false;
      if (this.queue.length >= this.settings.maxExportBatchSize) this.exportNext();
      else if (this.queue.length > 0 && this.stopped === undefined) this.startTimer();
    });
  }

  /** Starts the schedule delay's timer unless it is running. */
  private startTimer(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(this.onTimer, this.settings.scheduledDelayMillis);
    this.timer.unref();
  }

  private async flushAll(): Promise<void> {
    this.clearTimer();
    const batches: Promise<void>[] = [...this.inFlight];
    while (this.queue.length > 0) batches.push(this.exportBatch());
    await Promise.all(batches);
  }

  /** Takes the next batch off the queue and exports it; settles when the export does or times out, never rejects. */
  private exportBatch(): Promise<void> {
    const { maxExportBatchSize, exportTimeoutMillis } = this.settings;
    let spans: ReadableSpan[];
    if (this.queue.length <= maxExportBatchSize) {
      spans = this.queue;
      this.queue = [];
    } else spans = this.queue.splice(0, maxExportBatchSize);
    const done = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        diag.error('span export timed out', exportTimeoutMillis);
        resolve();
      }, exportTimeoutMillis);
      // A stuck collector must not hold up the process's exit (shutdown has its own limit).
      timer.unref();
      const failed = (what: string, error: unknown): void => {
        clearTimeout(timer);
        diag.error(what, error);
        resolve();
      };
      const send = (): void =>
        context.with(suppressTracing(context.active()), () => {
          try {
            this.exporter.export(spans, (result) => {
              clearTimeout(timer);
              if (result.code !== ExportResultCode.SUCCESS) diag.error('span export failed', result.error ?? 'BatchSpanProcessor: span export failed');
              resolve();
            });
          } catch (error) {
            failed('span export threw', error);
          }
        });
      // Telemetry never breaks the service: whatever throws here (a malformed span, a
      // detector) drops this batch with a log line, never an unhandled rejection.
      try {
        const pending = pendingResources(spans);
        if (pending === undefined) send();
        else Promise.all(pending).then(send, (error: unknown) => failed('resource attributes could not be detected; spans dropped', error));
      } catch (error) {
        failed('span export failed before it started; spans dropped', error);
      }
    });
    this.inFlight.add(done);
    void done.then(() => this.inFlight.delete(done));
    return done;
  }

  private clearTimer(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** The detections still running for these spans' resources (undefined when none is). */
function pendingResources(spans: readonly ReadableSpan[]): Promise<unknown>[] | undefined {
  let pending: Promise<unknown>[] | undefined;
  let last: ReadableSpan['resource'] | undefined;
  for (const span of spans) {
    const resource = span.resource;
    if (resource === last) continue;
    last = resource;
    if (resource.asyncAttributesPending && resource.waitForAsyncAttributes) (pending ??= []).push(resource.waitForAsyncAttributes());
  }
  return pending;
}
