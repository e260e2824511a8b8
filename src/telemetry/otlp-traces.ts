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
 * Endpoint, headers, timeout, compression, retries and the bounded queue are the library's HTTP
 * export delegate, configured from the OTEL_EXPORTER_OTLP_* variables as OTLPTraceExporter does.
 */
import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http';
import { TraceExporterMetricsHelper, type IExportTraceServiceResponse, type ISerializer } from '@opentelemetry/otlp-transformer';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { otlpJsonTraceSerializer } from './otlp-json';
import { otlpProtobufTraceSerializer } from './otlp-proto';

export type OtlpProtocol = 'http/protobuf' | 'http/json';

export const DEFAULT_OTLP_PROTOCOL: OtlpProtocol = 'http/protobuf';

/** The component type OTLPTraceExporter reports for its own exporter metrics. */
const COMPONENT_TYPE = 'otlp_http_span_exporter';

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
  const { contentType, serializer } = ENCODINGS[protocol];
  const options = convertLegacyHttpOptions({}, 'TRACES', 'v1/traces', { 'Content-Type': contentType });
  return new OTLPExporterBase(createOtlpHttpExportDelegate(options, serializer, COMPONENT_TYPE, TraceExporterMetricsHelper, undefined));
}
