/**
 * The batch span processor against the SDK's tracer: batches by size and by delay, one export at
 * a time, a bounded queue that drops and says how many, flush and shutdown that wait, a timeout
 * that frees the next batch, exports with tracing suppressed, and the OTEL_BSP_* settings. The
 * exporter is the one part held by the test, so that it decides when each export finishes.
 */
import { context, diag, DiagLogLevel, ROOT_CONTEXT, type Context, type ContextManager, type DiagLogger } from '@opentelemetry/api';
import { ExportResultCode, isTracingSuppressed, type ExportResult } from '@opentelemetry/core';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import { BasicTracerProvider, SamplingDecision, type ReadableSpan, type Sampler, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { batchSettings, SpanBatcher, type BatchSettings } from '../src/telemetry/span-batcher';

/** Records each export and holds its result until the test releases it. */
class HeldExporter implements SpanExporter {
  readonly batches: string[][] = [];
  readonly suppressed: boolean[] = [];
  private readonly waiting: ((result: ExportResult) => void)[] = [];
  shutdowns = 0;

  /** Once the test is over, exports finish at once. */
  private holding = true;

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.batches.push(spans.map((s) => s.name));
    this.suppressed.push(isTracingSuppressed(context.active()));
    if (this.holding) this.waiting.push(done);
    else done({ code: ExportResultCode.SUCCESS });
  }

  /** Finishes the oldest export still held. */
  release(code = ExportResultCode.SUCCESS): void {
    const done = this.waiting.shift();
    if (done === undefined) throw new Error('no export is held');
    done({ code });
  }

  /** Finishes the newest export still held. */
  releaseNewest(): void {
    const done = this.waiting.pop();
    if (done === undefined) throw new Error('no export is held');
    done({ code: ExportResultCode.SUCCESS });
  }

  stopHolding(): void {
    this.holding = false;
    while (this.waiting.length > 0) this.release();
  }

  shutdown(): Promise<void> {
    this.shutdowns++;
    return Promise.resolve();
  }
}

/** Context for synchronous calls only: enough to see what is active inside context.with. */
class StackContextManager implements ContextManager {
  private stack: Context[] = [];
  active(): Context {
    return this.stack[this.stack.length - 1] ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    this.stack.push(ctx);
    try {
      return fn.call(thisArg, ...args);
    } finally {
      this.stack.pop();
    }
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.stack = [];
    return this;
  }
}

const providers: BasicTracerProvider[] = [];
const exporters: HeldExporter[] = [];
const warnings: string[] = [];
const logger: DiagLogger = {
  error: (m) => void warnings.push(`error ${m}`),
  warn: (m) => void warnings.push(`warn ${m}`),
  info: () => undefined,
  debug: () => undefined,
  verbose: () => undefined,
};

afterEach(async () => {
  for (const exporter of exporters.splice(0)) exporter.stopHolding();
  for (const provider of providers.splice(0)) await provider.shutdown();
  diag.disable();
  context.disable();
  warnings.length = 0;
});

function setup(settings: Partial<BatchSettings>, sampler?: Sampler, resource?: Resource) {
  diag.setLogger(logger, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
  context.setGlobalContextManager(new StackContextManager());
  const exporter = new HeldExporter();
  exporters.push(exporter);
  const batcher = new SpanBatcher(exporter, settings);
  const provider = new BasicTracerProvider({ spanProcessors: [batcher], ...(sampler ? { sampler } : {}), ...(resource ? { resource } : {}) });
  providers.push(provider);
  const tracer = provider.getTracer('batcher-test');
  const end = (...names: string[]): void => {
    for (const name of names) tracer.startSpan(name).end();
  };
  return { exporter, batcher, end };
}

const tick = (ms = 0): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('batches', () => {
  test('when a full batch is queued, then it is exported at once, and a part batch waits for the delay', async () => {
    const { exporter, end } = setup({ maxExportBatchSize: 3, scheduledDelayMillis: 60 });
    end('a', 'b', 'c', 'd');
    expect(exporter.batches).toEqual([['a', 'b', 'c']]);
    exporter.release();
    await tick(20);
    expect(exporter.batches).toHaveLength(1);
    await tick(80);
    expect(exporter.batches).toEqual([['a', 'b', 'c'], ['d']]);
    expect(exporter.suppressed).toEqual([true, true]);
  });

  test('when an export is in flight, then nothing else is exported until it finishes, and then a full batch goes at once', async () => {
    const { exporter, end } = setup({ maxExportBatchSize: 2, scheduledDelayMillis: 10_000 });
    end('a', 'b', 'c', 'd', 'e');
    expect(exporter.batches).toEqual([['a', 'b']]);
    exporter.release();
    await tick();
    expect(exporter.batches).toEqual([['a', 'b'], ['c', 'd']]);
    exporter.release(ExportResultCode.FAILED);
    await tick();
    // A failed export is reported and the queue goes on; 'e' waits for the delay.
    expect(exporter.batches).toHaveLength(2);
    expect(warnings.some((w) => w.startsWith('error span export failed'))).toBe(true);
  });

  test('when spans are not sampled (recorded only), then they are not exported', async () => {
    const recordOnly: Sampler = { shouldSample: () => ({ decision: SamplingDecision.RECORD }), toString: () => 'record-only' };
    const { exporter, batcher, end } = setup({ maxExportBatchSize: 1 }, recordOnly);
    end('a', 'b');
    await batcher.forceFlush();
    expect(exporter.batches).toEqual([]);
  });
});

describe('the queue', () => {
  test('when the queue is full, then spans are dropped, and the next span queued warns how many', async () => {
    const { exporter, end } = setup({ maxExportBatchSize: 2, maxQueueSize: 2, scheduledDelayMillis: 10_000 });
    end('a', 'b'); // exported, held
    end('c', 'd'); // queued: the queue is full
    end('e', 'f', 'g'); // dropped
    expect(warnings).toEqual([]);
    exporter.release();
    await tick();
    expect(exporter.batches).toEqual([['a', 'b'], ['c', 'd']]);
    end('h');
    expect(warnings).toEqual(['warn Dropped 3 spans because maxQueueSize reached']);
  });

  test('when an export never finishes, then the next batch goes after the export timeout', async () => {
    const { exporter, end } = setup({ maxExportBatchSize: 1, scheduledDelayMillis: 10_000, exportTimeoutMillis: 40 });
    end('a', 'b');
    expect(exporter.batches).toEqual([['a']]);
    await tick(10);
    expect(exporter.batches).toEqual([['a']]);
    await tick(100);
    expect(exporter.batches).toEqual([['a'], ['b']]);
    expect(warnings).toContain('error span export timed out');
  });
});

describe('what the exports wait for, and what they survive', () => {
  test('when the resource’s attributes are still being detected, then the export waits for them', async () => {
    let detected: (value: string) => void = () => undefined;
    const late = new Promise<string>((resolve) => (detected = resolve));
    const { exporter, end } = setup({ maxExportBatchSize: 1 }, undefined, resourceFromAttributes({ 'host.late': late as unknown as string }));
    end('a');
    await tick(10);
    expect(exporter.batches).toEqual([]);
    detected('found');
    await tick();
    expect(exporter.batches).toEqual([['a']]);
  });

  test('when something throws before the export starts, then the batch is dropped with a log line, and nothing rejects', async () => {
    const { exporter, batcher } = setup({ maxExportBatchSize: 1 });
    const broken = {
      name: 'broken',
      spanContext: () => ({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 }),
      get resource(): Resource {
        throw new Error('no resource');
      },
    } as unknown as ReadableSpan;
    batcher.onEnd(broken);
    await batcher.forceFlush();
    expect(exporter.batches).toEqual([]);
    expect(warnings.some((w) => w.startsWith('error span export failed before it started'))).toBe(true);
  });
});

describe('flush and shutdown', () => {
  test('when flushed, then everything queued is exported, and the flush waits for every export, the one in flight too', async () => {
    const { exporter, batcher, end } = setup({ maxExportBatchSize: 2, scheduledDelayMillis: 10_000 });
    end('a', 'b', 'c', 'd', 'e');
    let flushed = false;
    const flush = batcher.forceFlush().then(() => void (flushed = true));
    expect(exporter.batches).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
    // The flush's own exports finish first; the one in flight before the flush still holds it.
    exporter.releaseNewest();
    exporter.releaseNewest();
    await tick();
    expect(flushed).toBe(false);
    exporter.release();
    await flush;
    expect(flushed).toBe(true);
  });

  test('when shut down, then queued spans are exported before the exporter shuts down, and later spans are ignored', async () => {
    const { exporter, batcher, end } = setup({ maxExportBatchSize: 10, scheduledDelayMillis: 10_000 });
    end('a', 'b');
    const shutdown = batcher.shutdown();
    expect(exporter.batches).toEqual([['a', 'b']]);
    expect(exporter.shutdowns).toBe(0);
    exporter.release();
    await shutdown;
    expect(exporter.shutdowns).toBe(1);
    end('c');
    await batcher.forceFlush();
    expect(exporter.batches).toEqual([['a', 'b']]);
    expect(batcher.shutdown()).toBe(shutdown);
  });
});

describe('an exporter that fails to shut down', () => {
  test('when the exporter’s shutdown rejects, then the batcher’s shutdown still resolves, and says so in the log', async () => {
    const { exporter, batcher } = setup({});
    exporter.shutdown = () => Promise.reject(new Error('collector gone'));
    await expect(batcher.shutdown()).resolves.toBeUndefined();
    expect(warnings.some((w) => w.startsWith('error span exporter shutdown failed'))).toBe(true);
  });
});

describe('settings', () => {
  const names = ['OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 'OTEL_BSP_MAX_QUEUE_SIZE', 'OTEL_BSP_SCHEDULE_DELAY', 'OTEL_BSP_EXPORT_TIMEOUT'];
  const saved = Object.fromEntries(names.map((name) => [name, process.env[name]]));
  beforeEach(() => {
    for (const name of names) delete process.env[name];
  });
  afterEach(() => {
    for (const name of names) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });

  test('when nothing is set, then the specification’s defaults', () => {
    expect(batchSettings()).toEqual({ maxExportBatchSize: 512, maxQueueSize: 2048, scheduledDelayMillis: 5_000, exportTimeoutMillis: 30_000 });
  });

  test('when OTEL_BSP_* are set, then they are used, a given setting wins, and a batch larger than the queue is cut to it with a warning', () => {
    diag.setLogger(logger, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
    process.env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE = '4096';
    process.env.OTEL_BSP_MAX_QUEUE_SIZE = '1000';
    process.env.OTEL_BSP_SCHEDULE_DELAY = '250';
    process.env.OTEL_BSP_EXPORT_TIMEOUT = '7000';
    expect(batchSettings({ exportTimeoutMillis: 9_000 })).toEqual({ maxExportBatchSize: 1000, maxQueueSize: 1000, scheduledDelayMillis: 250, exportTimeoutMillis: 9_000 });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/maxExportBatchSize must be smaller or equal to maxQueueSize/);
  });

  test('when a setting is zero, negative or fractional, then it is warned about and the default is used (a zero batch would never empty the queue)', async () => {
    diag.setLogger(logger, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
    process.env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE = '0';
    process.env.OTEL_BSP_MAX_QUEUE_SIZE = '-5';
    expect(batchSettings({ scheduledDelayMillis: 2.5 })).toEqual({ maxExportBatchSize: 512, maxQueueSize: 2048, scheduledDelayMillis: 5_000, exportTimeoutMillis: 30_000 });
    expect(warnings).toEqual([
      'warn OTEL_BSP_MAX_EXPORT_BATCH_SIZE (maxExportBatchSize) must be a positive whole number, not 0; using 512',
      'warn OTEL_BSP_MAX_QUEUE_SIZE (maxQueueSize) must be a positive whole number, not -5; using 2048',
      'warn OTEL_BSP_SCHEDULE_DELAY (scheduledDelayMillis) must be a positive whole number, not 2.5; using 5000',
    ]);
    // And a batcher made so still empties its queue on shutdown.
    warnings.length = 0;
    const { exporter, batcher, end } = setup({});
    end('a', 'b');
    exporter.stopHolding();
    await batcher.shutdown();
    expect(exporter.batches).toEqual([['a', 'b']]);
  });
});
