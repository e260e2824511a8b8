/**
 * The span export thread: sends encoded OTLP span batches to the collector, off the thread that
 * answers webhooks (decision 0011). The main thread encodes a batch (otlp-traces.ts) and hands the
 * bytes over; here the library's OTLP/HTTP export delegate sends them, with its endpoint,
 * headers, timeout, compression, retries and bounded queue configured from the OTEL_EXPORTER_OTLP_*
 * variables of this thread's environment (the process's, as it was when the exporter was made).
 *
 * Protocol (structured-clone messages on the worker port):
 *   in   { type: 'export', id, body, spans }   body: the encoded request, usually transferred
 *        { type: 'shutdown' }                   finish the exports in flight, then exit
 *   out  { type: 'result', id, ok: true } | { type: 'result', id, ok: false, error }
 *        { type: 'diag', level, message, args } the library's diagnostics, for the service's log
 *                                               (each part described and cut to 500 characters)
 */
import { diag, DiagLogLevel, type DiagLogger } from '@opentelemetry/api';
import { diagLogLevelFromString, ExportResultCode } from '@opentelemetry/core';
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http';
import { JsonTraceSerializer, ProtobufTraceSerializer, type IExportTraceServiceResponse, type ISerializer } from '@opentelemetry/otlp-transformer';
import { parentPort, workerData } from 'node:worker_threads';
import { describeDiagArgument } from './diagnostics';
import type { OtlpProtocol } from './otlp-traces';

export interface ExportThreadData {
  readonly contentType: string;
  /** Decodes a collector's response body (JSON or protobuf, as the request was). */
  readonly protocol: OtlpProtocol;
}

export interface EncodedBatch {
  readonly body: Uint8Array;
  /** How many spans the body holds. */
  readonly spans: number;
}

export interface WireError {
  readonly name: string;
  readonly message: string;
  /** An HTTP status (OTLPExporterError) or a system error code such as ECONNREFUSED. */
  readonly code?: number | string | undefined;
  readonly data?: string | undefined;
}

export type ToExportThread = ({ readonly type: 'export'; readonly id: number } & EncodedBatch) | { readonly type: 'shutdown' };

export type FromExportThread =
  | { readonly type: 'result'; readonly id: number; readonly ok: true }
  | { readonly type: 'result'; readonly id: number; readonly ok: false; readonly error: WireError }
  | { readonly type: 'diag'; readonly level: 'error' | 'warn' | 'info' | 'debug'; readonly message: string; readonly args: string[] };

/** The component type OTLPTraceExporter reports for its own exporter metrics. */
const COMPONENT_TYPE = 'otlp_http_span_exporter';

function toWireError(error: unknown): WireError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const { code, data } = error as Error & { code?: unknown; data?: unknown };
  return {
    name: error.name,
    message: error.message,
    code: typeof code === 'number' || typeof code === 'string' ? code : undefined,
    data: typeof data === 'string' ? data : undefined,
  };
}

function passThrough(protocol: ExportThreadData['protocol']): ISerializer<EncodedBatch, IExportTraceServiceResponse> {
  const responses = protocol === 'http/json' ? JsonTraceSerializer : ProtobufTraceSerializer;
  return {
    serializeRequest: (batch) => batch.body,
    deserializeResponse: (data) => responses.deserializeResponse(data),
  };
}

function main(): void {
  const port = parentPort;
  if (port === null) throw new Error('export-thread.ts runs as a worker thread');
  const data = workerData as ExportThreadData;
  const post = (message: FromExportThread): void => port.postMessage(message);

  const forward =
    (level: 'error' | 'warn' | 'info' | 'debug') =>
    (message: string, ...args: unknown[]): void =>
      post({ type: 'diag', level, message: describeDiagArgument(message), args: args.map((arg) => describeDiagArgument(arg)) });
  const logger: DiagLogger = { error: forward('error'), warn: forward('warn'), info: forward('info'), debug: forward('debug'), verbose: forward('debug') };
  diag.setLogger(logger, { logLevel: diagLogLevelFromString(process.env.OTEL_LOG_LEVEL) ?? DiagLogLevel.WARN, suppressOverrideMessage: true });

  const options = convertLegacyHttpOptions({}, 'TRACES', 'v1/traces', { 'Content-Type': data.contentType });
  const helper = { name: 'span' as const, countItems: (batch: EncodedBatch) => batch.spans };
  const delegate = createOtlpHttpExportDelegate(options, passThrough(data.protocol), COMPONENT_TYPE, helper, undefined);

  port.on('message', (message: ToExportThread) => {
    if (message.type === 'shutdown') {
      void delegate
        .shutdown()
        .catch((error: unknown) => diag.warn('span export thread shutdown failed', error))
        .finally(() => process.exit(0));
      return;
    }
    const { id } = message;
    try {
      delegate.export({ body: message.body, spans: message.spans }, (result) => {
        if (result.code === ExportResultCode.SUCCESS) post({ type: 'result', id, ok: true });
        else post({ type: 'result', id, ok: false, error: toWireError(result.error ?? new Error('export failed')) });
      });
    } catch (error) {
      post({ type: 'result', id, ok: false, error: toWireError(error) });
    }
  });
}

main();
