/**
 * The OTLP/HTTP span exporter, in the protocol the standard variables ask for:
 * OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf, the
 * specification's default and what every collector's OTLP/HTTP receiver takes.
 *
 *   http/protobuf  our serializer (otlp-proto.ts), byte for byte the library's protobuf: a batch
 *                  is about a third of its JSON size, which the exporter, the loopback and the
 *                  collector all pay for per byte.
 *   http/json      our serializer (otlp-json.ts), byte for byte the library's JSON.
 *   grpc           not shipped with this service: warned once at start, and http/protobuf is used
 *                  (point the endpoint at the collector's OTLP/HTTP port, 4318 by default).
 *
 * Batches are encoded here and sent from the span export thread (export-thread.ts, decision
 * 0011). Endpoint, headers, timeout, compression, retries and the bounded queue are the library's
 * HTTP export delegate there, configured from the OTEL_EXPORTER_OTLP_* variables as
 * OTLPTraceExporter does.
 */
import { diag } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { IExportTraceServiceResponse, ISerializer } from '@opentelemetry/otlp-transformer';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { Worker } from 'node:worker_threads';
import { RecentEvents, threadScript } from '../threads';
import type { ExportThreadData, FromExportThread, ToExportThread, WireError } from './export-thread';
import { otlpJsonTraceSerializer } from './otlp-json';
import { otlpProtobufTraceSerializer } from './otlp-proto';

export type OtlpProtocol = 'http/protobuf' | 'http/json';

export const DEFAULT_OTLP_PROTOCOL: OtlpProtocol = 'http/protobuf';

const ENCODINGS: Readonly<Record<OtlpProtocol, { readonly contentType: string; readonly serializer: ISerializer<ReadableSpan[], IExportTraceServiceResponse> }>> = {
  'http/protobuf': { contentType: 'application/x-protobuf', serializer: otlpProtobufTraceSerializer },
  'http/json': { contentType: 'application/json', serializer: otlpJsonTraceSerializer },
};

/**
 * The traces protocol from the standard variables. An unknown or unshipped value is named in
 * `warn` and the default is used: telemetry settings never stop the service.
 */
export function tracesProtocol(env: Readonly<Record<string, string | undefined>>, warn: (message: string) => void): OtlpProtocol {
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL?.trim();
  const variable = traces ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL' : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  // Matched exactly, as the SDK matches them: "HTTP/JSON" is not a protocol.
  const wanted = traces || env.OTEL_EXPORTER_OTLP_PROTOCOL?.trim() || DEFAULT_OTLP_PROTOCOL;
  if (wanted === 'http/protobuf' || wanted === 'http/json') return wanted;
  const why = wanted === 'grpc' ? 'OTLP over gRPC is not shipped with this service' : 'it is not an OTLP protocol (http/protobuf, http/json, grpc)';
  warn(`${variable}="${wanted}" ignored: ${why}; exporting traces as ${DEFAULT_OTLP_PROTOCOL} to the OTLP/HTTP endpoint`);
  return DEFAULT_OTLP_PROTOCOL;
}

/** An OTLP/HTTP span exporter in this protocol, configured from the OTEL_EXPORTER_OTLP_* environment. */
export function createOtlpTraceExporter(protocol: OtlpProtocol): SpanExporter {
  return new OffThreadSpanExporter(protocol);
}

/**
 * After this many exits within RESPAWN_WINDOW_MS no new thread is started, and exports fail at
 * once, until the oldest of those exits is a window old.
 */
const MAX_EXITS = 5;
const RESPAWN_WINDOW_MS = 60_000;
/** How long a shut-down thread may take to close its connections before it is terminated. */
const SHUTDOWN_GRACE_MS = 2_000;

function exportError(wire: WireError): Error {
  const error = new Error(wire.message) as Error & { code?: number | string; data?: string };
  error.name = wire.name;
  if (wire.code !== undefined) error.code = wire.code;
  if (wire.data !== undefined) error.data = wire.data;
  return error;
}

export interface OffThreadSpanExporterOptions {
  /** The clock of the respawn limit (tests). */
  readonly now?: () => number;
}

interface PendingExport {
  readonly callback: (result: ExportResult) => void;
  readonly settled: Promise<void>;
  readonly markSettled: () => void;
}

/**
 * Encodes each batch on the calling thread, where the spans are, and sends it from the span
 * export thread (export-thread.ts, decision 0011): the HTTP request, its retries and the
 * collector's answer cost the webhook's thread nothing but one message each way per batch.
 * The thread is spawned with the exporter, referenced only while an export is in flight (an
 * idle exporter never holds the process open), and spawned again if it exits. Nothing here
 * throws: a thread that cannot start or dies fails the exports it had, and the failures are
 * counted and logged like any other.
 */
export class OffThreadSpanExporter implements SpanExporter {
  private readonly serializer: ISerializer<ReadableSpan[], IExportTraceServiceResponse>;
  private readonly data: ExportThreadData;
  /** Every thread starts with the environment the process had when the exporter was made. */
  private readonly env: NodeJS.ProcessEnv = { ...process.env };
  private readonly now: () => number;
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, PendingExport>();
  private readonly exits = new RecentEvents(RESPAWN_WINDOW_MS);
  private stopped: Promise<void> | undefined;

  constructor(protocol: OtlpProtocol, options: OffThreadSpanExporterOptions = {}) {
    const { contentType, serializer } = ENCODINGS[protocol];
    this.serializer = serializer;
    this.data = { contentType, protocol };
    this.now = options.now ?? Date.now;
    this.thread();
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    const fail = (error: Error): void => resultCallback({ code: ExportResultCode.FAILED, error });
    if (this.stopped !== undefined) return fail(new Error('the span exporter is shut down'));
    let body: Uint8Array | undefined;
    try {
      body = this.serializer.serializeRequest(spans);
    } catch (error) {
      return fail(error instanceof Error ? error : new Error(String(error)));
    }
    if (body === undefined) return fail(new Error('Nothing to send'));
    const worker = this.thread();
    if (worker === undefined) return fail(new Error(`the span export thread exited ${MAX_EXITS} times within a minute; spans are dropped until that minute has passed`));
    const id = this.nextId++;
    let markSettled = (): void => undefined;
    const settled = new Promise<void>((resolveSettled) => (markSettled = resolveSettled));
    this.pending.set(id, { callback: resultCallback, settled, markSettled });
    if (this.pending.size === 1) worker.ref();
    try {
      // A body that owns its memory moves to the thread; a view into a shared pool is copied.
      const owned = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength && body.buffer instanceof ArrayBuffer;
      if (!owned) body = new Uint8Array(body);
      const message: ToExportThread = { type: 'export', id, body, spans: spans.length };
      worker.postMessage(message, [body.buffer as ArrayBuffer]);
    } catch (error) {
      this.settle(id, { code: ExportResultCode.FAILED, error: error instanceof Error ? error : new Error(String(error)) });
    }
  }

  /** Waits for the exports in flight when it is called (not for later ones). */
  async forceFlush(): Promise<void> {
    await Promise.all(Array.from(this.pending.values(), (pending) => pending.settled));
  }

  shutdown(): Promise<void> {
    this.stopped ??= this.forceFlush().then(async () => {
      const worker = this.worker;
      if (worker === undefined) return;
      // Referenced until it exits, so that whoever awaits the shutdown sees it end; a thread
      // that does not exit in time is terminated.
      worker.ref();
      const exited = new Promise<void>((resolveExit) => worker.once('exit', () => resolveExit()));
      const stuck = setTimeout(() => void worker.terminate(), SHUTDOWN_GRACE_MS);
      try {
        const message: ToExportThread = { type: 'shutdown' };
        worker.postMessage(message);
      } catch {
        void worker.terminate();
      }
      await exited;
      clearTimeout(stuck);
    });
    return this.stopped;
  }

  /** The running thread, or a new one; undefined while the exit limit holds or when none can start. */
  private thread(): Worker | undefined {
    if (this.worker !== undefined) return this.worker;
    const now = this.now();
    if (this.exits.count(now) >= MAX_EXITS) return undefined;
    let worker: Worker;
    try {
      worker = new Worker(threadScript('telemetry/export-thread.js'), { workerData: this.data, env: this.env });
    } catch (error) {
      this.exits.add(now);
      diag.error('span export thread could not start; spans dropped', error);
      return undefined;
    }
    this.worker = worker;
    worker.on('message', (message: FromExportThread) => {
      try {
        if (message.type === 'diag') diag[message.level](`span export thread: ${message.message}`, ...message.args);
        else if (message.ok) this.settle(message.id, { code: ExportResultCode.SUCCESS });
        else this.settle(message.id, { code: ExportResultCode.FAILED, error: exportError(message.error) });
      } catch (error) {
        // A message of another shape (a thread script from another build) must not throw here.
        diag.error('span export thread: unreadable message ignored', error);
      }
    });
    worker.on('messageerror', (error) => {
      diag.error('span export thread: a message from it could not be read; restarting it', error);
      void worker.terminate();
    });
    worker.on('error', (error) => diag.error('span export thread failed', error));
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = undefined;
      if (this.stopped === undefined) {
        const now = this.now();
        this.exits.add(now);
        const recent = this.exits.count(now);
        const more = recent >= MAX_EXITS ? 'no new thread for a minute, spans are dropped' : 'a new one starts with the next batch';
        diag.warn(`span export thread exited (code ${code}), ${recent} time(s) within a minute; ${more}`);
      }
      const error = new Error(`the span export thread exited (code ${code}) with the export in flight`);
      for (const id of [...this.pending.keys()]) this.settle(id, { code: ExportResultCode.FAILED, error });
    });
    // After the listeners: adding a message listener references the worker again.
    worker.unref();
    return worker;
  }

  private settle(id: number, result: ExportResult): void {
    const pending = this.pending.get(id);
    if (pending === undefined) return;
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker?.unref();
    pending.markSettled();
    pending.callback(result);
  }
}
