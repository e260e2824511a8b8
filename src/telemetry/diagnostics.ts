/**
 * Telemetry must never break the service: the SDK's own diagnostics go to our pino log at a
 * bounded rate (an unreachable collector would otherwise log on every batch), and a failing
 * span export is counted and swallowed.
 */
import { type DiagLogger } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';

export interface LogSink {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

/** At most `perWindow` lines per window; the next line after a window reports how many were dropped. */
export class RateLimitedDiagLogger implements DiagLogger {
  private windowStart = 0;
  private inWindow = 0;
  private suppressed = 0;

  constructor(
    private sink: LogSink,
    private readonly perWindow = 10,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  setSink(sink: LogSink): void {
    this.sink = sink;
  }

  error(message: string, ...args: unknown[]): void {
    this.emit('error', message, args);
  }
  warn(message: string, ...args: unknown[]): void {
    this.emit('warn', message, args);
  }
  info(message: string, ...args: unknown[]): void {
    this.emit('info', message, args);
  }
  debug(message: string, ...args: unknown[]): void {
    this.emit('debug', message, args);
  }
  verbose(message: string, ...args: unknown[]): void {
    this.emit('debug', message, args);
  }

  private emit(level: keyof LogSink, message: string, args: unknown[]): void {
    const now = this.now();
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.inWindow = 0;
    }
    if (this.inWindow >= this.perWindow) {
      this.suppressed++;
      return;
    }
    this.inWindow++;
    const fields: Record<string, unknown> = { component: 'otel' };
    if (this.suppressed > 0) {
      fields.suppressed = this.suppressed;
      this.suppressed = 0;
    }
    const detail = args.map((arg) => describeDiagArgument(arg)).filter((s) => s !== '');
    if (detail.length > 0) fields.detail = detail.join(' ').slice(0, 500);
    try {
      this.sink[level](fields, `opentelemetry: ${String(message).slice(0, 500)}`);
    } catch {
      // a broken log sink must not turn a diagnostic into a crash
    }
  }
}

/**
 * One diagnostic argument as log text, at most `limit` characters: an error's message, a string
 * as it is, bytes by their length (the library logs whole request bodies at debug level).
 */
export function describeDiagArgument(arg: unknown, limit = 500): string {
  if (arg instanceof Error) return arg.message.slice(0, limit);
  if (typeof arg === 'string') return arg.slice(0, limit);
  if (arg === undefined || arg === null) return '';
  if (ArrayBuffer.isView(arg)) return `<${arg.byteLength} bytes>`;
  try {
    return (JSON.stringify(arg) ?? '').slice(0, limit);
  } catch {
    return String(arg).slice(0, limit);
  }
}

/**
 * Wraps a span exporter so every failed export is counted; the result still reaches the batch
 * processor. The export itself starts on the next turn of the event loop: the batch processor
 * exports from inside the span.end() that fills a batch, which on the webhook is inside a
 * request's reply, and encoding 512 spans there held up the replies still waiting in that turn.
 */
export class CountingSpanExporter implements SpanExporter {
  constructor(
    private readonly inner: SpanExporter,
    private readonly onFailure: (error: Error | undefined) => void,
    private readonly onSuccess: () => void = () => undefined,
  ) {}

  /** Exports scheduled but not yet handed to the inner exporter (flush and shutdown wait for them). */
  private readonly scheduled = new Set<Promise<void>>();

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    let settled = false;
    const done = (result: ExportResult): void => {
      if (settled) return;
      settled = true;
      if (result.code !== ExportResultCode.SUCCESS) this.failed(result.error);
      else this.onSuccess();
      resultCallback(result);
    };
    const started = new Promise<void>((resolve) => {
      setImmediate(() => {
        this.scheduled.delete(started);
        resolve();
        try {
          this.inner.export(spans, done);
        } catch (error) {
          done({ code: ExportResultCode.FAILED, error: error instanceof Error ? error : new Error(String(error)) });
        }
      });
    });
    this.scheduled.add(started);
  }

  async shutdown(): Promise<void> {
    await Promise.all(this.scheduled);
    return this.inner.shutdown();
  }

  async forceFlush(): Promise<void> {
    await Promise.all(this.scheduled);
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }

  private failed(error: Error | undefined): void {
    try {
      this.onFailure(error);
    } catch {
      // counting is best effort
    }
  }
}
