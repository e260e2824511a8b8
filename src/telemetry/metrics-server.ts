/**
 * GET /metrics on METRICS_PORT: the OpenTelemetry Prometheus exporter's text for the app
 * metrics followed by prom-client's default Node.js process metrics. Each family has exactly
 * one owner: unlock_* and target_info come from OpenTelemetry, process_* and nodejs_* from
 * prom-client (its own registry, never the global one, so two servers in one process never clash).
 */
import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { closeServer, listen } from '../http-listen';

export const METRICS_PATH = '/metrics';
const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export interface MetricsServerOptions {
  readonly port: number;
  readonly host: string;
  /** The app metrics' exposition text (TelemetryRuntime.appMetricsText). */
  readonly appMetricsText: () => Promise<string>;
  readonly onError?: (error: unknown) => void;
}

export interface MetricsServer {
  readonly server: Server;
  readonly port: number;
  readonly url: string;
  /** The full /metrics body, as served. */
  scrape(): Promise<string>;
  close(): Promise<void>;
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const scrape = async (): Promise<string> => {
    const [app, processText] = await Promise.all([options.appMetricsText(), registry.metrics()]);
    const head = app === '' || app.endsWith('\n') ? app : `${app}\n`;
    return head + processText;
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== METRICS_PATH) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    scrape().then(
      (body) => {
        res.writeHead(200, { 'Content-Type': CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body) });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (error: unknown) => {
        options.onError?.(error);
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end('metrics collection failed\n');
      },
    );
  });
  server.keepAliveTimeout = 65_000; // Prometheus reuses its scrape connection

  const port = await listen(server, options.port, options.host);
  const shownHost = options.host === '0.0.0.0' || options.host === '::' ? '127.0.0.1' : options.host;
  return {
    server,
    port,
    url: `http://${shownHost}:${port}${METRICS_PATH}`,
    scrape,
    close: () => {
      registry.clear();
      // A scrape is cheap to lose: no grace, Prometheus simply scrapes again.
      return closeServer(server, 0);
    },
  };
}
