/**
 * Starts the OpenTelemetry Node SDK for this process, from an explicit environment so tests
 * can start it with their own settings (and stop it, and start it again).
 *
 *   traces   OTLP/HTTP (protobuf, or JSON by OTEL_EXPORTER_OTLP_PROTOCOL; otlp-traces.ts) through
 *            a batch processor (span-batcher.ts), only when OTEL_EXPORTER_OTLP_ENDPOINT or
 *            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; otherwise no tracer provider at all, so
 *            manual spans cost a no-op. Sampler, batch sizes and timeouts: the standard OTEL_*
 *            variables. While exports fail, the sampler sheds almost all spans (sampler.ts).
 *   metrics  the Prometheus exporter as a pull reader without its own server; /metrics is served
 *            by metrics-server.ts together with the Node process metrics.
 *   auto     express only. Automatic http instrumentation stays off: on the webhook hot path it
 *            halved throughput; the webhook gets one manual server span instead (tracing.ts).
 *
 * OTEL_SDK_DISABLED=true turns all of it off, as the specification defines: no spans, and the
 * unlock_* metrics are absent from /metrics (the process metrics remain).
 */
import { context, createNoopMeter, diag, DiagLogLevel, metrics, propagation, trace } from '@opentelemetry/api';
import { diagLogLevelFromString } from '@opentelemetry/core';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { ExpressInstrumentation } from '@opentelemetry/instrumentation-express';
import { envDetector } from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { createLogger } from '../log';
import { installContextManager, uninstallContextManager } from './context-manager';
import { CountingSpanExporter, RateLimitedDiagLogger, type LogSink } from './diagnostics';
import { createTelemetry, METER_NAME, type Telemetry } from './metrics';
import { createOtlpTraceExporter, tracesProtocol } from './otlp-traces';
import { SERVICE_VERSION, serviceResource } from './resource';
import { AlwaysOffSampler, ExportHealth, samplerFromEnv, SheddingSampler } from './sampler';
import { SpanBatcher } from './span-batcher';
import { ReplayableIdGenerator } from './tracing';

export type Env = Readonly<Record<string, string | undefined>>;

export interface TelemetryOptions {
  /** Defaults to process.env. Its OTEL_* variables replace process.env's: the SDK reads only process.env. */
  readonly env?: Env;
  /** Where SDK diagnostics go; defaults to a pino logger at LOG_LEVEL, created on first use. */
  readonly log?: LogSink;
  /** Upper bound on shutdown (flushing spans to a slow collector must not hold up exit). */
  readonly shutdownTimeoutMs?: number;
}

export interface TelemetryRuntime {
  /** false when OTEL_SDK_DISABLED=true. */
  readonly enabled: boolean;
  /** true when spans are exported (an OTLP endpoint is configured). */
  readonly tracing: boolean;
  readonly telemetry: Telemetry;
  /** The Prometheus exposition text of the app metrics (target_info and unlock_*), '' when disabled. */
  appMetricsText(): Promise<string>;
  /** Route SDK diagnostics to the service's logger once it exists. */
  setLogger(log: LogSink): void;
  forceFlush(): Promise<void>;
  shutdown(): Promise<void>;
}

let running = false;

/** One runtime per process (the SDK registers process-wide globals); shut it down before starting another. */
export function startTelemetry(options: TelemetryOptions = {}): TelemetryRuntime {
  const env = options.env ?? process.env;
  if (running) throw new Error('telemetry is already started in this process; shut it down before starting it again');
  applyOtelEnv(env);

  let sink: LogSink | undefined = options.log;
  const lazySink: LogSink = {
    error: (o, m) => fallback().error(o, m),
    warn: (o, m) => fallback().warn(o, m),
    info: (o, m) => fallback().info(o, m),
    debug: (o, m) => fallback().debug(o, m),
  };
  function fallback(): LogSink {
    sink ??= createLogger(env.LOG_LEVEL?.trim() || 'info');
    return sink;
  }

  const enabled = !isTrue(env.OTEL_SDK_DISABLED);
  if (!enabled) {
    const telemetry = createTelemetry(createNoopMeter());
    return {
      enabled,
      tracing: false,
      telemetry,
      appMetricsText: () => Promise.resolve(''),
      setLogger: (log) => void (sink = log),
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
    };
  }

  running = true;
  const diagLogger = new RateLimitedDiagLogger(lazySink);
  const diagOptions = { logLevel: diagLogLevelFromString(env.OTEL_LOG_LEVEL) ?? DiagLogLevel.WARN, suppressOverrideMessage: true };
  diag.setLogger(diagLogger, diagOptions);
  // Late-bound: the counter exists only once the meter provider is registered, after sdk.start().
  let countFailure: (signal: 'traces' | 'metrics') => void = () => undefined;

  const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  // Same settings as the exporter's own serializer: one meter, so scope labels would say nothing.
  const serializer = new PrometheusSerializer(undefined, false, undefined, false, true);

  const tracing = tracesWanted(env);
  const spanProcessors: SpanProcessor[] = [];
  const health = new ExportHealth();
  if (tracing) {
    const protocol = tracesProtocol(env, (message) => diagLogger.warn(message));
    const otlp = new CountingSpanExporter(
      createOtlpTraceExporter(protocol),
      (error) => {
        health.failing = true;
        countFailure('traces');
        diagLogger.warn('span export failed; spans dropped, recording 1 trace in 100 until an export succeeds', error);
      },
      () => {
        health.failing = false;
      },
    );
    spanProcessors.push(new SpanBatcher(otlp));
  }

  const instrumentations = [new ExpressInstrumentation()];
  const sdk = new NodeSDK({
    resource: serviceResource(env),
    autoDetectResources: true,
    resourceDetectors: [envDetector],
    metricReaders: [exporter],
    spanProcessors,
    // Without a trace exporter nothing would ever read a recorded span: make none (ids and
    // context still flow, so logs keep their trace ids and stored traceparents stay valid).
    sampler: tracing ? new SheddingSampler(samplerFromEnv(env), health) : new AlwaysOffSampler(),
    idGenerator: new ReplayableIdGenerator(),
    logRecordProcessors: [],
    instrumentations,
    // Contexts follow async continuations only while the REST API holds them (decision 0010).
    contextManager: installContextManager(),
  });
  sdk.start();
  // After start: NodeSDK installs a console diag logger itself when OTEL_LOG_LEVEL is set.
  diag.setLogger(diagLogger, diagOptions);

  const telemetry = createTelemetry(metrics.getMeter(METER_NAME, SERVICE_VERSION));
  countFailure = (signal) => telemetry.exportFailure(signal);

  let stopped: Promise<void> | undefined;
  return {
    enabled,
    tracing,
    telemetry,
    async appMetricsText() {
      try {
        const { resourceMetrics, errors } = await exporter.collect();
        if (errors.length > 0) {
          countFailure('metrics');
          diagLogger.warn('metric collection reported errors', ...errors);
        }
        return serializer.serialize(resourceMetrics);
      } catch (error) {
        countFailure('metrics');
        diagLogger.error('metric collection failed', error);
        return '';
      }
    },
    setLogger(log) {
      sink = log;
    },
    async forceFlush() {
      await Promise.all(spanProcessors.map((p) => p.forceFlush().catch(() => undefined)));
    },
    shutdown() {
      stopped ??= (async () => {
        const timeoutMs = options.shutdownTimeoutMs ?? 5_000;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          sdk.shutdown().catch((error: unknown) => diagLogger.warn('telemetry shutdown failed', error)),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, timeoutMs);
            timer.unref();
          }),
        ]);
        clearTimeout(timer);
        for (const instrumentation of instrumentations) instrumentation.disable();
        // Unregister the globals so a later start (tests, a restart in-process) can register again.
        trace.disable();
        metrics.disable();
        propagation.disable();
        context.disable();
        uninstallContextManager();
        diag.disable();
        running = false;
      })();
      return stopped;
    },
  };
}

function tracesWanted(env: Env): boolean {
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim());
  if (exporters.includes('none')) return false;
  return nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT) || nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/** The SDK and its exporters read process.env only; make it agree with the environment we were given. */
function applyOtelEnv(env: Env): void {
  if (env === process.env) return;
  for (const key of Object.keys(process.env)) {
    if (key.startsWith('OTEL_') && !(key in env)) delete process.env[key];
  }
  for (const [key, value] of Object.entries(env)) {
    if (key.startsWith('OTEL_') && value !== undefined) process.env[key] = value;
  }
}

function nonEmpty(value: string | undefined): boolean {
  return value !== undefined && value.trim() !== '';
}

function isTrue(value: string | undefined): boolean {
  return value?.trim().toLowerCase() === 'true';
}
