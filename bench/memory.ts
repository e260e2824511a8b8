/**
 * Benchmark: steady-state memory of the whole service (`node dist/src/cli.js start`, sandbox
 * mode: the built-in Meta simulator sends and calls back) with 1,000 WebSocket clients
 * connected while contacts tap Unlock. Figures: RSS (from /proc/<pid>/status) at rest, with
 * the clients connected, and in steady state under load (target ≤ 250 MB, issue 8), and the
 * RSS each connected client costs.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { WebSocket } from 'ws';
import { SANDBOX_APP_SECRET } from '../src/config';
import { loadCatalog } from '../src/packs';
import { driveTaps, syntheticContacts } from '../src/simulator';
import { SANDBOX_KEY } from '../src/store/key-store';
import { freePort, sleep, startChild, waitForHttp, type Benchmark, type BenchResult, type Figure } from './harness';

const CLIENTS = 1000;
const CONNECT_CONCURRENCY = 50;
const TAPS_PER_SECOND = 50;
// Dashboards follow taps and finished unlocks; the full stream (every send and status of every
// pack, ~25 events per tap) to 1,000 clients would measure the two cores, not the memory.
const TYPES = 'click,unlock.completed';
const SAMPLE_EVERY_MS = 250;
const SETTLE_MS = 2_000;
const MB = 1024 * 1024;

function rssBytes(pid: number): number {
  const kib = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  if (kib === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kib) * 1024;
}

interface Round {
  readonly idleMB: number;
  readonly connectedMB: number;
  readonly steadyMB: number;
  readonly peakMB: number;
  readonly perClientKiB: number;
  readonly tapsPerSecond: number;
  readonly clientsOpenAtEnd: number;
  readonly minMessagesPerClient: number;
  readonly undeliveredTaps: number;
}

async function round(seconds: number, log: (line: string) => void): Promise<Round> {
  const root = resolve(__dirname, '..', '..');
  const dir = mkdtempSync(join(tmpdir(), 'ctu-bench-memory-'));
  const [webhookPort, wsPort, apiPort, metricsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const service = startChild('service', [join(root, 'dist', 'src', 'cli.js'), 'start'], {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? dir,
    NODE_ENV: 'production',
    DATABASE_PATH: join(dir, 'memory.db'),
    HOST: '127.0.0.1',
    WEBHOOK_PORT: String(webhookPort),
    WS_PORT: String(wsPort),
    API_PORT: String(apiPort),
    METRICS_PORT: String(metricsPort),
    SEND_RATE_PER_SECOND: '1000', // the sender keeps up: memory is measured at a steady state, not with a growing backlog
    LOG_LEVEL: 'warn',
  });
  const sockets: WebSocket[] = [];
  const received = new Uint32Array(CLIENTS);
  try {
    const webhookUrl = `http://127.0.0.1:${webhookPort}/webhook`;
    await waitForHttp(webhookUrl, service);
    const pid = service.process.pid as number;
    await sleep(SETTLE_MS);
    const idle = rssBytes(pid);

    for (let i = 0; i < CLIENTS; i += CONNECT_CONCURRENCY) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(CONNECT_CONCURRENCY, CLIENTS - i) }, (_, j) =>
          new Promise<WebSocket>((resolvePromise, reject) => {
            const ws = new WebSocket(`ws://127.0.0.1:${wsPort}/ws?types=${TYPES}`, { headers: { authorization: `Bearer ${SANDBOX_KEY}` } });
            ws.on('message', () => {
              received[i + j] = (received[i + j] ?? 0) + 1;
            });
            ws.once('open', () => resolvePromise(ws));
            ws.once('error', reject);
          }),
        ),
      );
      sockets.push(...batch);
    }
    await sleep(SETTLE_MS);
    const connected = rssBytes(pid);

    const samples: Array<{ at: number; rss: number }> = [];
    const sampler = setInterval(() => samples.push({ at: performance.now(), rss: rssBytes(pid) }), SAMPLE_EVERY_MS);
    const started = performance.now();
    const catalog = loadCatalog();
    const taps = await driveTaps({
      webhookUrl,
      appSecret: SANDBOX_APP_SECRET,
      contacts: syntheticContacts(TAPS_PER_SECOND * seconds),
      triggers: catalog.packs.map((p) => p.trigger),
      ratePerSecond: TAPS_PER_SECOND,
      durationMs: seconds * 1000,
    });
    clearInterval(sampler);
    const half = started + (performance.now() - started) / 2;
    const steady = samples.filter((s) => s.at >= half).map((s) => s.rss).sort((a, b) => a - b);
    const result: Round = {
      idleMB: idle / MB,
      connectedMB: connected / MB,
      steadyMB: (steady[Math.floor(steady.length / 2)] ?? Number.NaN) / MB,
      peakMB: samples.reduce((m, s) => Math.max(m, s.rss), 0) / MB,
      perClientKiB: (connected - idle) / CLIENTS / 1024,
      tapsPerSecond: taps.achievedRatePerSecond,
      clientsOpenAtEnd: sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length,
      minMessagesPerClient: received.reduce((m, n) => Math.min(m, n), Number.MAX_SAFE_INTEGER),
      undeliveredTaps: taps.undelivered,
    };
    log(
      `  idle ${result.idleMB.toFixed(1)} MB, ${CLIENTS} clients ${result.connectedMB.toFixed(1)} MB (${result.perClientKiB.toFixed(1)} KiB/client), ` +
        `under load steady ${result.steadyMB.toFixed(1)} MB, peak ${result.peakMB.toFixed(1)} MB; ${result.tapsPerSecond} taps/s, ` +
        `${result.clientsOpenAtEnd} clients open, fewest messages per client ${result.minMessagesPerClient}`,
    );
    return result;
  } finally {
    for (const ws of sockets) ws.terminate();
    await service.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export const benchmark: Benchmark = {
  name: 'memory',
  title: 'Memory: 1,000 WebSocket clients under ingest load',
  async run({ rounds, seconds, log }): Promise<BenchResult> {
    const results: Round[] = [];
    for (let r = 0; r < rounds; r++) results.push(await round(seconds, log));
    const figures: Figure[] = [
      { label: `steady-state RSS, ${CLIENTS} clients, ${TAPS_PER_SECOND} taps/s`, unit: 'MB', values: results.map((x) => x.steadyMB), target: { op: '<=', value: 250 } },
      { label: 'peak RSS under load', unit: 'MB', values: results.map((x) => x.peakMB) },
      { label: 'RSS at rest, no clients', unit: 'MB', values: results.map((x) => x.idleMB) },
      { label: `RSS with ${CLIENTS} clients connected, no load`, unit: 'MB', values: results.map((x) => x.connectedMB) },
      { label: 'RSS per connected client', unit: 'KiB', values: results.map((x) => x.perClientKiB) },
      { label: 'taps/s achieved', unit: 'count', values: results.map((x) => x.tapsPerSecond) },
    ];
    const expectedClicks = TAPS_PER_SECOND * seconds;
    return {
      method:
        `The service runs as \`node dist/src/cli.js start\` in sandbox mode (its built-in Meta simulator accepts the sends and calls the ` +
        `webhook back with statuses), on a fresh database, with SEND_RATE_PER_SECOND=1000 so the outbox does not pile up. ${CLIENTS} WebSocket ` +
        `clients in the bench process connect with the sandbox Bearer key, subscribed to \`${TYPES}\`; then synthetic contacts tap Unlock ` +
        `at ${TAPS_PER_SECOND}/s for ${seconds} s (each tap: a signed webhook, a pack of sends, their status webhooks). RSS is VmRSS from ` +
        `/proc/<pid>/status, sampled every ${SAMPLE_EVERY_MS} ms; steady state is the median of the second half of the load. Per-client ` +
        `memory is (RSS with the clients connected − RSS at rest) / ${CLIENTS}, without forcing a GC. The built-in simulator (send log, ` +
        'pending status callbacks) lives in the same process, so these figures include it and overstate the service alone a little.',
      figures,
      checks: [
        { label: `all ${CLIENTS} clients stayed connected`, ok: results.every((x) => x.clientsOpenAtEnd === CLIENTS), detail: `open at the end: ${results.map((x) => x.clientsOpenAtEnd).join(', ')}` },
        {
          label: 'every client received the click stream',
          ok: results.every((x) => x.minMessagesPerClient >= 0.9 * expectedClicks),
          detail: `fewest messages per client: ${results.map((x) => x.minMessagesPerClient).join(', ')} (≈${expectedClicks} clicks each round)`,
        },
        { label: 'every tap acknowledged', ok: results.every((x) => x.undeliveredTaps === 0), detail: `undelivered: ${results.map((x) => x.undeliveredTaps).join(', ')}` },
      ],
    };
  },
};
