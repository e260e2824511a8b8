/**
 * Shared test helpers for the webhook: a temp directory with a fresh SQLite path, the service
 * built in-process on ephemeral ports, signed POSTs over real HTTP, and the compiled CLI as a
 * child process. Loopback only; every wait is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from '../../src/config';
import type { Db } from '../../src/store/database';
import { createLogger } from '../../src/log';
import { startService, type RunningService } from '../../src/service';
import { signBody } from '../../src/signature';
import { createRandom, type Random } from '../../src/simulator/prng';

export const TEST_SECRET = 'test-app-secret';
export const TEST_PREVIOUS_SECRET = 'test-previous-app-secret';
export const TEST_VERIFY_TOKEN = 'test-verify-token';
export const REPO_ROOT = resolve(__dirname, '..', '..');
export const FIXTURES_DIR = join(REPO_ROOT, 'test', 'fixtures', 'meta');
/** The business number of the fixtures (test/fixtures/meta) and of every callback built below. */
export const TEST_PHONE_NUMBER_ID = '106540352242922';

export interface TempDir {
  readonly path: string;
  readonly dbPath: string;
  remove(): void;
}

/** A fresh directory under the OS temp dir; `dbPath` does not exist yet. */
export function makeTempDir(prefix = 'ctu-test-'): TempDir {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, dbPath: join(path, 'ctu.db'), remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** The environment of a sandbox service on ephemeral ports with the test secrets. */
export function testEnv(dbPath: string, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    DATABASE_PATH: dbPath,
    META_APP_SECRET: TEST_SECRET,
    META_VERIFY_TOKEN: TEST_VERIFY_TOKEN,
    WEBHOOK_PORT: '0',
    WS_PORT: '0',
    API_PORT: '0',
    METRICS_PORT: '0',
    LOG_LEVEL: 'silent',
    ...extra,
  };
}

export interface TestService {
  readonly service: RunningService;
  readonly url: string;
  readonly dir: TempDir;
  /** Closes the service and removes its directory. */
  stop(): Promise<void>;
}

/** Starts the service in-process against a fresh SQLite file. */
export async function startTestService(extraEnv: Record<string, string | undefined> = {}): Promise<TestService> {
  const dir = makeTempDir();
  const service = await startService(loadConfig(testEnv(dir.dbPath, extraEnv)), { log: createLogger('silent') });
  const url = service.urls.webhook;
  if (url === undefined) throw new Error('the service did not start a webhook listener');
  return {
    service,
    url,
    dir,
    stop: async () => {
      await service.close();
      dir.remove();
    },
  };
}

export interface HttpAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: string;
}

export interface SendOptions {
  readonly method?: string;
  readonly headers?: Record<string, string | number>;
  /** Send the body with Transfer-Encoding: chunked, without Content-Length. */
  readonly chunked?: boolean;
  readonly timeoutMs?: number;
}

/** One HTTP request with node:http; resolves with whatever the server answered. */
export function send(url: string, body?: Buffer | string, options: SendOptions = {}): Promise<HttpAnswer> {
  const bytes = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body);
  const headers: Record<string, string | number> = { ...options.headers };
  if (bytes !== undefined && options.chunked !== true) headers['content-length'] = bytes.length;
  return new Promise((resolvePromise, reject) => {
    const req = request(url, { method: options.method ?? (bytes === undefined ? 'GET' : 'POST'), headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(options.timeoutMs ?? 20_000, () => req.destroy(new Error(`request to ${url} timed out`)));
    req.on('error', reject);
    if (bytes === undefined) {
      req.end();
      return;
    }
    if (options.chunked === true) {
      // Write in 64 KiB pieces; a server that answers early may reset the socket mid-body.
      const piece = 64 * 1024;
      let offset = 0;
      const writeNext = (): void => {
        while (offset < bytes.length) {
          const slice = bytes.subarray(offset, offset + piece);
          offset += piece;
          if (!req.write(slice)) {
            req.once('drain', writeNext);
            return;
          }
        }
        req.end();
      };
      writeNext();
      return;
    }
    req.end(bytes);
  });
}

/** POSTs `body` signed with `secret` as Meta does (X-Hub-Signature-256 over the raw bytes). */
export function postSigned(url: string, body: Buffer | string, secret = TEST_SECRET, options: SendOptions = {}): Promise<HttpAnswer> {
  return send(url, body, {
    ...options,
    headers: { 'content-type': 'application/json', 'x-hub-signature-256': signBody(body, secret), ...options.headers },
  });
}

/** The raw bytes of a fixture in test/fixtures/meta (signatures are over these bytes). */
/** A Meta callback with one `messages` change: `value` (messages, statuses, contacts) beside the test number's metadata. */
export function metaCallback(value: Record<string, unknown>): { object: string; entry: unknown[] } {
  return {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: '102290129340398',
        changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550783881', phone_number_id: TEST_PHONE_NUMBER_ID }, ...value } }],
      },
    ],
  };
}

export function fixtureBytes(name: string): Buffer {
  return readFileSync(join(FIXTURES_DIR, `${name}.json`));
}

export const WEBHOOK_TABLES = ['inbox', 'inbound_messages', 'statuses', 'message_status', 'webhook_changes', 'dead_letters', 'events'] as const;
/** The webhook tables, plus `message_events`: the events the webhook itself appends (one per new message or status). */
export type WebhookCounts = Record<(typeof WEBHOOK_TABLES)[number] | 'message_events', number>;

/** The event types ingest appends for new inbound messages and statuses (taps add others, e.g. `click`). */
export const MESSAGE_EVENT_TYPES = "('message.inbound', 'message.status')";

/** Row counts of every webhook table, to assert exactly what one request wrote. */
export function tableCounts(db: Db): WebhookCounts {
  const counts = {} as WebhookCounts;
  for (const table of WEBHOOK_TABLES) counts[table] = db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
  counts.message_events = db.prepare(`SELECT count(*) FROM events WHERE type IN ${MESSAGE_EVENT_TYPES}`).pluck().get() as number;
  return counts;
}

/** Runs `tasks` with at most `limit` in flight; results in task order. */
export async function runConcurrently<T>(tasks: ReadonlyArray<() => Promise<T>>, limit: number): Promise<T[]> {
  const results = new Array<T>(tasks.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const index = next++;
      const task = tasks[index];
      if (task !== undefined) results[index] = await task();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, () => worker()));
  return results;
}

/** The simulator's seedable PRNG (mulberry32) in [0, 1), so a failing random test can be replayed from its seed. */
export function seededRandom(seed: number): Random {
  return createRandom(seed);
}

/** A TCP port that was free a moment ago (listen on 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolvePromise(port));
    });
  });
}

export interface CliProcess {
  readonly child: ChildProcess;
  /** The webhook URL from the "click-to-unlock started" log line. */
  readonly url: string;
  /** stdout and stderr so far, for failure messages. */
  output(): string;
  /** Resolves with the exit code or signal once the process is gone. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Exactly `env` on top of PATH/HOME/TMPDIR/LANG: nothing else of the test's environment leaks into the CLI. */
export function cliChildEnv(env: Record<string, string | undefined>): Record<string, string> {
  const childEnv: Record<string, string> = {};
  for (const key of ['PATH', 'HOME', 'TMPDIR', 'LANG']) {
    const value = process.env[key];
    if (value !== undefined) childEnv[key] = value;
  }
  for (const [key, value] of Object.entries(env)) if (value !== undefined) childEnv[key] = value;
  return childEnv;
}

/**
 * Starts the compiled CLI (`node bin/ctu.cjs start`; run `npm run build` first) with exactly
 * `env` on top of PATH/HOME, and waits for its "started" log line.
 */
export function startCli(env: Record<string, string | undefined>, readyTimeoutMs = 15_000): Promise<CliProcess> {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'ctu.cjs'), 'start'], {
    cwd: REPO_ROOT,
    env: cliChildEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
    child.once('exit', (code, signal) => resolveExit({ code, signal }));
  });
  return new Promise((resolvePromise, reject) => {
    let pending = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`ctu start was not ready within ${readyTimeoutMs} ms:\n${output}`));
    }, readyTimeoutMs);
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
    });
    child.stdout?.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      output += text;
      pending += text;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        const url = startedUrl(line);
        if (url === undefined) continue;
        clearTimeout(timer);
        resolvePromise({ child, url, output: () => output, exited });
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`ctu start exited (code ${String(code)}, signal ${String(signal)}) before it was ready:\n${output}`));
    });
  });
}

function startedUrl(line: string): string | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const parsed = JSON.parse(line) as { msg?: unknown; webhook?: unknown };
    return parsed.msg === 'click-to-unlock started' && typeof parsed.webhook === 'string' ? parsed.webhook : undefined;
  } catch {
    return undefined;
  }
}
