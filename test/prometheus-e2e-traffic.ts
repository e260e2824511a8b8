/**
 * A metrics source for the Prometheus end-to-end test: the service's real telemetry layer
 * (src/telemetry: instruments, label sets, the OpenTelemetry Prometheus exporter and the
 * /metrics server with prom-client's process metrics) fed with scripted traffic instead of
 * the running service. It stands in until the sandbox and simulator are wired to telemetry;
 * a source built on them implements the same `MetricsSource` interface (see the e2e test).
 */
import type { LogSink } from '../src/telemetry/diagnostics';
import { startMetricsServer, type MetricsServer } from '../src/telemetry/metrics-server';
import { startTelemetry, type TelemetryRuntime } from '../src/telemetry/sdk';

/** Faults the e2e test switches on one at a time; each should raise specific alerts. */
export type Fault = 'bad_signatures' | 'sends_fail' | 'token_expired' | 'database_read_only' | 'sender_stuck';

export interface MetricsSource {
  /** host:port whose /metrics Prometheus scrapes. */
  readonly target: string;
  /** undefined = healthy traffic. */
  setFault(fault: Fault | undefined): Promise<void>;
  close(): Promise<void>;
}

const PACKS = ['starter', 'premium'] as const;
const TICK_MS = 200;

const silent: LogSink = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };

export async function startScriptedTraffic(): Promise<MetricsSource> {
  const runtime: TelemetryRuntime = startTelemetry({ env: { OTEL_SERVICE_NAME: 'click-to-unlock-e2e', OTEL_TRACES_EXPORTER: 'none' }, log: silent });
  const t = runtime.telemetry;
  t.setPackIds(PACKS);
  let fault: Fault | undefined;
  let tick = 0;
  t.observeQueue(() => (fault === 'sender_stuck' ? { depth: 40 + tick, oldestAgeSeconds: 600 + tick } : { depth: 2, oldestAgeSeconds: 0.8 }));
  t.observeWebSocketClients(() => 3);
  t.databaseWritable(true);

  const step = (): void => {
    tick++;
    const pack = PACKS[tick % PACKS.length] as string;
    // Webhook side: taps and status callbacks arrive unless the database refuses commits.
    if (fault === 'bad_signatures') {
      for (let i = 0; i < 5; i++) {
        t.webhookRequest('bad_signature', 0.0004);
        t.signatureFailure('mismatch');
      }
    } else if (fault === 'database_read_only') {
      t.databaseWritable(false);
      for (let i = 0; i < 3; i++) t.webhookRequest('unavailable', 0.02);
    } else {
      t.databaseWritable(true);
      t.webhookRequest('accepted', 0.004 + (tick % 7) * 0.003);
      t.webhookRequest('accepted', 0.012);
      t.webhookRequest('duplicate', 0.002);
      t.commitBatch(2 + (tick % 5));
      t.webhookItem('message', 'new');
      t.webhookItem('status', 'new');
      t.webhookItem('status', 'duplicate');
      t.click(pack);
      t.unlock(pack, tick % 5 === 0 ? 'repeated' : 'started');
      if (tick % 11 === 0) t.unlock(pack, 'expired');
    }
    if (tick % 50 === 0) t.handshake(true);

    // Sender side.
    if (fault === 'sends_fail' || fault === 'token_expired') {
      const errorClass = fault === 'token_expired' ? 'auth' : 'invalid_request';
      for (let i = 0; i < 3; i++) {
        t.sendAttempt('dead_letter', errorClass);
        t.deadLetter('send', errorClass);
        t.graphRequest('error', 0.09);
      }
      t.messageStatus('failed');
      if (tick % 10 === 0) t.deadLetter('webhook', 'other');
    } else if (fault !== 'sender_stuck') {
      for (let i = 0; i < 2; i++) {
        t.sendAttempt('accepted', 'none');
        t.graphRequest('ok', 0.05 + (tick % 4) * 0.02);
        t.messageSent(pack);
        t.messageStatus('sent');
        t.messageStatus('delivered');
      }
      t.messageStatus('read');
      if (tick % 9 === 0) {
        t.sendAttempt('retry', 'rate_limit');
        t.graphRequest('timeout', 10);
      }
      t.clickToSent(0.3 + (tick % 3) * 0.2);
      t.clickToDelivered(1.5 + (tick % 5));
    }
    if (tick % 40 === 0) {
      t.possibleDuplicate();
      t.exportFailure('traces');
    }
  };
  step();
  const timer = setInterval(step, TICK_MS);

  let server: MetricsServer;
  try {
    server = await startMetricsServer({ port: 0, host: '127.0.0.1', appMetricsText: () => runtime.appMetricsText() });
  } catch (error) {
    clearInterval(timer);
    await runtime.shutdown();
    throw error;
  }
  return {
    target: `127.0.0.1:${server.port}`,
    setFault(next) {
      fault = next;
      return Promise.resolve();
    },
    async close() {
      clearInterval(timer);
      await server.close();
      await runtime.shutdown();
    },
  };
}
