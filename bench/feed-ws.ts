/**
 * Benchmark: 1,000 WebSocket clients following the feed while events are committed at
 * 100/s. The feed runs in a child process (bench/feed-ws-server.ts); the clients run here.
 * Figures: commit → client receipt p99 over every message of every client, for the
 * all-in-one process (notify after commit) and for a feed in its own process (polling), and
 * the feed process's memory per connected client. Target (issue 5): p99 ≤ 50 ms.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import type { Benchmark, Figure } from './harness';

const CLIENTS = 1000;
const RATE = 100;
const CONNECT_CONCURRENCY = 50;

interface Ready {
  ready: true;
  ws: number;
  key: string;
}
interface Memory {
  memory: NodeJS.MemoryUsage;
  clients: number;
}

function nextMessage<T>(child: ChildProcess, accept: (m: unknown) => m is T, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('message', on);
      reject(new Error('the feed child did not answer in time'));
    }, timeoutMs);
    const on = (m: unknown): void => {
      if (!accept(m)) return;
      clearTimeout(timer);
      child.off('message', on);
      resolve(m);
    };
    child.on('message', on);
  });
}

const has = <K extends string>(key: K) => (m: unknown): m is Record<K, unknown> & never => typeof m === 'object' && m !== null && key in m;

async function round(mode: 'notify' | 'poll', seconds: number, log: (line: string) => void) {
  const dir = mkdtempSync(join(tmpdir(), 'ctu-bench-ws-'));
  const child = fork(join(__dirname, 'feed-ws-server.js'), [], {
    env: { ...process.env, CTU_BENCH_DB: join(dir, 'feed.db'), CTU_BENCH_MODE: mode },
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const sockets: WebSocket[] = [];
  try {
    const ready = (await nextMessage(child, has('ready'), 20_000)) as unknown as Ready;
    const before = (await (async () => {
      child.send({ op: 'memory' });
      return nextMessage(child, has('memory'), 10_000);
    })()) as unknown as Memory;
    const latencies = new Float64Array(CLIENTS * RATE * seconds * 2);
    let received = 0;
    const stamp = /"t":(\d+)/;
    for (let i = 0; i < CLIENTS; i += CONNECT_CONCURRENCY) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(CONNECT_CONCURRENCY, CLIENTS - i) }, () =>
          new Promise<WebSocket>((resolve, reject) => {
            const ws = new WebSocket(`ws://127.0.0.1:${ready.ws}/ws`, { headers: { authorization: `Bearer ${ready.key}` } });
            ws.on('message', (data: Buffer) => {
              const t = stamp.exec(data.toString('latin1'))?.[1];
              if (t !== undefined && received < latencies.length) latencies[received++] = Date.now() - Number(t);
            });
            ws.once('open', () => resolve(ws));
            ws.once('error', reject);
          }),
        ),
      );
      sockets.push(...batch);
    }
    child.send({ op: 'memory' });
    const after = (await nextMessage(child, has('memory'), 10_000)) as unknown as Memory;
    child.send({ op: 'write', perSecond: RATE, seconds });
    const { written } = (await nextMessage(child, has('written'), (seconds + 30) * 1000)) as unknown as { written: number };
    const deadline = Date.now() + 5_000;
    while (received < written * CLIENTS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const sorted = Array.from(latencies.subarray(0, received)).sort((a, b) => a - b);
    const p = (q: number): number => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
    const perClientKiB = (after.memory.rss - before.memory.rss) / after.clients / 1024;
    const heapPerClientKiB = (after.memory.heapUsed - before.memory.heapUsed) / after.clients / 1024;
    log(`  ${mode}: ${received}/${written * CLIENTS} messages, p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${p(1)} ms; RSS ${perClientKiB.toFixed(1)} KiB/client, heap ${heapPerClientKiB.toFixed(1)} KiB/client`);
    return { p50: p(0.5), p99: p(0.99), complete: received === written * CLIENTS, missing: written * CLIENTS - received, perClientKiB, heapPerClientKiB };
  } finally {
    for (const ws of sockets) ws.terminate();
    child.send({ op: 'stop' });
    await new Promise((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(undefined);
      }, 10_000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
    rmSync(dir, { recursive: true, force: true });
  }
}

export const benchmark: Benchmark = {
  name: 'feed-ws',
  title: 'Dashboard WebSocket: 1,000 clients at 100 events/s',
  async run({ rounds, seconds, log }) {
    const results = { notify: [] as Awaited<ReturnType<typeof round>>[], poll: [] as Awaited<ReturnType<typeof round>>[] };
    for (let r = 0; r < rounds; r++) {
      results.notify.push(await round('notify', seconds, log));
      results.poll.push(await round('poll', seconds, log));
    }
    const figures: Figure[] = [
      { label: 'commit → receipt p99, all-in-one (notify after commit)', unit: 'ms', values: results.notify.map((x) => x.p99), target: { op: '<=', value: 50 } },
      { label: 'commit → receipt p50, all-in-one', unit: 'ms', values: results.notify.map((x) => x.p50) },
      { label: 'commit → receipt p99, feed-only process (polling)', unit: 'ms', values: results.poll.map((x) => x.p99), target: { op: '<=', value: 50 } },
      { label: 'commit → receipt p50, feed-only process', unit: 'ms', values: results.poll.map((x) => x.p50) },
      { label: 'feed process RSS per connected client', unit: 'KiB', values: results.notify.map((x) => x.perClientKiB) },
      { label: 'feed process heap per connected client', unit: 'KiB', values: results.notify.map((x) => x.heapPerClientKiB) },
    ];
    const all = [...results.notify, ...results.poll];
    return {
      method:
        `The real feed runs in a child process on a fresh database; ${CLIENTS} clients in this process connect with a Bearer key, then the child ` +
        `commits ${RATE} events/s for ${seconds} s, one transaction each, stamping each event with the time just before its COMMIT. ` +
        'Latency is the client\'s receipt time minus that stamp, over every message of every client. "All-in-one" wakes the tail after each ' +
        'commit (feed.notify(), as in `ctu start`); "feed-only" relies on the tail\'s poll timer (as in `ctu start --role feed`). Memory is ' +
        'the feed process\'s RSS and heap after a forced GC, with all clients connected minus before any, divided by the clients.',
      figures,
      checks: [{ label: 'every client received every event', ok: all.every((x) => x.complete), detail: `missing ${all.map((x) => x.missing).join(', ')}` }],
    };
  },
};
