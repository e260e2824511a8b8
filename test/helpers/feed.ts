/**
 * Test helpers for the dashboard feed: a fresh SQLite file written through the real webhook
 * path (ingest + group commit) for inbound messages and statuses, with taps, unlocks and
 * outbox rows seeded by SQL in `seedUnlock` (the one place to switch to the delivery code's
 * own path), the feed started on ephemeral ports over a read-only handle, and small HTTP/WS
 * clients. Loopback only; every wait is bounded.
 */
import { request } from 'node:http';
import { WebSocket } from 'ws';
import { createFeed, type Feed, type FeedOptions } from '../../src/feed/feed';
import { GroupCommitter } from '../../src/group-commit';
import { createIngest } from '../../src/ingest';
import { createLogger } from '../../src/log';
import { openDatabase, type Db } from '../../src/store/database';
import { createRollupStore } from '../../src/store/rollup-store';
import { createWebhookStore } from '../../src/store/webhook-store';
import { createApiKey } from '../../src/store/key-store';
import { makeTempDir, metaCallback, TEST_PHONE_NUMBER_ID, type TempDir } from './webhook';

export const DASHBOARD_ORIGIN = 'http://dashboard.test:8080';
export const PHONE_NUMBER_ID = TEST_PHONE_NUMBER_ID;

export interface FeedFixture {
  readonly dir: TempDir;
  /** The writable handle (the webhook side). */
  readonly db: Db;
  /** The read-only handle the feed reads. */
  readonly ro: Db;
  readonly committer: GroupCommitter;
  readonly feed: Feed;
  readonly api: string;
  readonly ws: string;
  readonly key: string;
  readonly keyId: number;
  /** Records a webhook body through the real ingest path, in the next group commit. */
  post(body: unknown, receivedAt?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startFeedFixture(options: Partial<Omit<FeedOptions, 'db' | 'config' | 'log'>> = {}): Promise<FeedFixture> {
  const dir = makeTempDir('ctu-feed-');
  const db = openDatabase(dir.dbPath);
  const ro = openDatabase(dir.dbPath, { readonly: true });
  const committer = new GroupCommitter(db);
  const ingest = createIngest(db, createWebhookStore(db));
  const { id: keyId, key } = createApiKey(db, 'test dashboard');
  const feed = createFeed({
    db: ro,
    config: { host: '127.0.0.1', ports: { webhook: 0, api: 0, ws: 0, metrics: 0 }, dashboardOrigins: [DASHBOARD_ORIGIN] },
    log: createLogger('silent'),
    packs: [
      { id: 'starter', trigger: 'unlock:starter', title: 'Starter pack', messages: [{}, {}, {}] },
      { id: 'pro', trigger: 'unlock:pro', messages: [{}, {}] },
    ],
    ...options,
  });
  committer.onCommit(() => feed.notify());
  const ports = await feed.listen();
  return {
    dir,
    db,
    ro,
    committer,
    feed,
    api: `http://127.0.0.1:${ports.api}`,
    ws: `ws://127.0.0.1:${ports.ws}/ws`,
    key,
    keyId,
    post: async (body, receivedAt = Date.now()) => {
      await committer.submit(() => ingest.record({ body: Buffer.from(JSON.stringify(body)), secretIndex: 0, receivedAt }));
    },
    close: async () => {
      await feed.close();
      committer.drain();
      ro.close();
      db.close();
      dir.remove();
    },
  };
}

export function textMessage(contact: string, wamid: string, body: string, atMs: number): unknown {
  return metaCallback({
    contacts: [{ profile: { name: 'Test' }, wa_id: contact }],
    messages: [{ from: contact, id: wamid, timestamp: String(Math.floor(atMs / 1000)), type: 'text', text: { body } }],
  });
}

export function statusUpdate(contact: string, wamid: string, status: string, atMs: number): unknown {
  return metaCallback({ statuses: [{ id: wamid, status, timestamp: String(Math.floor(atMs / 1000)), recipient_id: contact }] });
}

export interface SeededUnlock {
  readonly unlockId: number;
  readonly wamids: string[];
}

/**
 * A tap that started `pack` with `messages` outbox rows, `accepted` of them accepted after
 * `sentAfterMs`, and rollups bumped through the real rollup store — as the delivery code would.
 */
export function seedUnlock(
  db: Db,
  seed: { contact: string; pack: string; at: number; messages: number; accepted: number; sentAfterMs?: number; deliveredAfterMs?: number; failedClass?: string },
): SeededUnlock {
  const rollup = createRollupStore(db);
  return db.transaction((): SeededUnlock => {
    const complete = seed.accepted === seed.messages;
    const unlockId = Number(
      db
        .prepare('INSERT INTO unlocks (contact, pack_id, state, message_count, created_at, completed_at, delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(
          seed.contact,
          seed.pack,
          complete ? 'completed' : 'sending',
          seed.messages,
          seed.at,
          complete ? seed.at + (seed.sentAfterMs ?? 100) * seed.messages : null,
          complete && seed.deliveredAfterMs !== undefined ? seed.at + seed.deliveredAfterMs : null,
        ).lastInsertRowid,
    );
    db.prepare(
      `INSERT INTO clicks (wamid, contact, trigger, pack_id, source, tapped_at, received_at, result, unlock_id)
       VALUES (?, ?, ?, ?, 'button_reply', ?, ?, 'started', ?)`,
    ).run(`wamid.tap.${unlockId}.${seed.contact}`, seed.contact, `unlock:${seed.pack}`, seed.pack, seed.at, seed.at, unlockId);
    rollup.bump(seed.at, seed.pack, 'clicks');
    rollup.bump(seed.at, seed.pack, 'unlocks_started');
    rollup.noteContact(seed.at, seed.contact);
    const wamids: string[] = [];
    for (let position = 0; position < seed.messages; position++) {
      const accepted = position < seed.accepted;
      const acceptedAt = accepted ? seed.at + (seed.sentAfterMs ?? 100) * (position + 1) : null;
      const wamid = accepted ? `wamid.out.${unlockId}.${position}` : null;
      const failed = !accepted && seed.failedClass !== undefined && position === seed.accepted;
      db.prepare(
        `INSERT INTO outbox (kind, unlock_id, contact, pack_id, position, payload, state, attempts, run_at, created_at, accepted_at, wamid, error_class, error_code)
         VALUES ('pack', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        unlockId,
        seed.contact,
        seed.pack,
        position,
        JSON.stringify({ type: 'text', text: { body: `part ${position + 1}` } }),
        accepted ? 'accepted' : failed ? 'dead' : 'pending',
        accepted ? 1 : failed ? 3 : 0,
        seed.at,
        seed.at,
        acceptedAt,
        wamid,
        failed ? (seed.failedClass ?? null) : null,
        failed ? 131026 : null,
      );
      if (acceptedAt !== null) rollup.bump(acceptedAt, seed.pack, 'messages_sent');
      if (failed) rollup.bump(seed.at, seed.pack, 'messages_failed');
      if (wamid !== null) wamids.push(wamid);
    }
    if (complete) rollup.bump(seed.at, seed.pack, 'unlocks_completed');
    db.prepare('INSERT INTO events (type, at, contact, data) VALUES (?, ?, ?, ?)').run(
      'unlock.started',
      seed.at,
      seed.contact,
      JSON.stringify({ contact: seed.contact, pack: seed.pack, unlock_id: unlockId, messages: seed.messages }),
    );
    return { unlockId, wamids };
  })();
}

/** Appends `count` events straight to the log in one transaction (a stand-in for busy ingest). */
export function appendEvents(db: Db, count: number, type = 'message.status', padBytes = 0): void {
  const insert = db.prepare('INSERT INTO events (type, at, contact, data) VALUES (?, ?, NULL, ?)');
  const pad = 'x'.repeat(padBytes);
  const now = Date.now();
  db.transaction(() => {
    for (let i = 0; i < count; i++) insert.run(type, now, JSON.stringify({ sent_ms: now, i, ...(padBytes > 0 ? { pad } : {}) }));
  })();
}

export interface Answer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: string;
  json<T = unknown>(): T;
}

export function call(url: string, options: { method?: string; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: <T>() => JSON.parse(body) as T });
      });
      res.on('error', reject);
    });
    req.setTimeout(options.timeoutMs ?? 10_000, () => req.destroy(new Error(`request to ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

export const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });

export interface WireMessage {
  readonly seq: number;
  readonly type: string;
  readonly at: string;
  readonly data: Record<string, unknown>;
}

// Messages are recorded from the moment a socket exists: replayed events can arrive in the
// same packet as the upgrade answer, before any listener added after `open` would see them.
const inboxes = new WeakMap<WebSocket, { messages: WireMessage[]; taken: number; wake: (() => void) | undefined }>();

/** Opens a socket; resolves once open, or rejects with the HTTP status the upgrade got. */
export function openSocket(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, handshakeTimeout: 5_000 });
    const box = { messages: [] as WireMessage[], taken: 0, wake: undefined as (() => void) | undefined };
    inboxes.set(ws, box);
    ws.on('message', (data: Buffer) => {
      box.messages.push(JSON.parse(data.toString('utf8')) as WireMessage);
      box.wake?.();
    });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      ws.terminate();
      reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode }));
    });
    ws.once('error', reject);
  });
}

/** The messages not yet collected, once `done(them)` is true; rejects after `timeoutMs`. */
export function collect(ws: WebSocket, done: (messages: WireMessage[]) => boolean, timeoutMs = 10_000): Promise<WireMessage[]> {
  const box = inboxes.get(ws);
  if (box === undefined) return Promise.reject(new Error('collect() needs a socket from openSocket()'));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      box.wake = undefined;
      reject(new Error(`collected ${box.messages.length - box.taken} messages, not done within ${timeoutMs} ms`));
    }, timeoutMs);
    const check = (): void => {
      const fresh = box.messages.slice(box.taken);
      if (!done(fresh)) return;
      clearTimeout(timer);
      box.wake = undefined;
      box.taken = box.messages.length;
      resolve(fresh);
    };
    box.wake = check;
    check();
  });
}

export function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (condition()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      setTimeout(check, 10);
    };
    check();
  });
}
