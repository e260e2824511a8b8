/**
 * The WebSocket feed at `/ws` on WS_PORT. Every check happens before the upgrade completes
 * (path, Origin allowlist, query, ticket or Bearer key), answered as plain HTTP on the socket.
 *
 * A client is either catching up (replaying the log from its `after` in pages, paced by its
 * send buffer) or live (fed by the tail). The switch happens synchronously when the replay
 * reaches the tail's head, and the tail only moves inside its own synchronous poll, so no
 * event is skipped and none is sent twice.
 *
 * Policies: ping every `heartbeatMs`, terminate a peer that missed a pong; close 1013 a
 * consumer whose send buffer stays over `softBytes` for `softMs` or ever exceeds `hardBytes`;
 * close 1008 the sockets of a revoked key within `revokeCheckMs`.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import type { Logger } from '../log';
import type { FeedStore } from '../store/feed-store';
import type { KeyReader } from '../store/key-store';
import { authenticate, UNAUTHORIZED, WWW_AUTHENTICATE, type TicketBook } from './auth';
import { wireText, type EventTail, type WireEvent } from './event-tail';
import { PROBLEM_CONTENT_TYPE, problem, type Problem } from './problems';
import { wsQuery } from './queries';

export interface WsPolicy {
  readonly heartbeatMs: number;
  readonly softBytes: number;
  readonly softMs: number;
  readonly hardBytes: number;
  readonly maxPayloadBytes: number;
  readonly revokeCheckMs: number;
}

export const DEFAULT_WS_POLICY: WsPolicy = {
  heartbeatMs: 30_000,
  softBytes: 1024 * 1024,
  softMs: 5_000,
  hardBytes: 8 * 1024 * 1024,
  maxPayloadBytes: 4096,
  revokeCheckMs: 1_000,
};

const REPLAY_PAGE = 500;
const REPLAY_HIGH_WATER = 256 * 1024;
const CLOSE_GRACE_MS = 1_000;
export const CLOSE_SLOW_CONSUMER = 1013;
export const CLOSE_REVOKED = 1008;

interface Client {
  readonly ws: WebSocket;
  readonly keyId: number;
  readonly types: ReadonlySet<string> | undefined;
  readonly typeList: readonly string[] | undefined;
  cursor: number;
  live: boolean;
  alive: boolean;
  overSince: number | undefined;
}

export interface WsDeps {
  readonly store: FeedStore;
  readonly keys: KeyReader;
  readonly tickets: TicketBook;
  readonly tail: EventTail;
  readonly origins: readonly string[];
  readonly log: Logger;
  readonly clock: () => number;
  readonly policy: WsPolicy;
}

export function createWsServer(deps: WsDeps) {
  const { policy } = deps;
  const allowed = new Set(deps.origins);
  const clients = new Set<Client>();
  const wss = new WebSocketServer({ noServer: true, maxPayload: policy.maxPayloadBytes, perMessageDeflate: false, clientTracking: false });
  const server: Server = createServer((_req, res) => {
    res.writeHead(426, { 'Content-Type': PROBLEM_CONTENT_TYPE, Upgrade: 'websocket', Connection: 'close' });
    res.end(JSON.stringify(problem('bad_request', 'This port serves the WebSocket feed at /ws only.')));
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const url = new URL(req.url ?? '/', 'http://feed.invalid');
    if (url.pathname !== '/ws') return refuse(socket, 404, problem('not_found', 'The WebSocket feed is at /ws.'));
    const origin = req.headers.origin;
    if (origin !== undefined && !allowed.has(origin)) return refuse(socket, 403, problem('forbidden_origin'));
    const parsed = wsQuery.safeParse(Object.fromEntries(url.searchParams));
    if (!parsed.success || new Set(url.searchParams.keys()).size !== [...url.searchParams.keys()].length) {
      return refuse(socket, 400, problem('bad_request', 'Query: after=<seq>, types=<a,b>, ticket=<ticket>, each at most once.'));
    }
    const now = deps.clock();
    let keyId: number | undefined;
    if (parsed.data.ticket !== undefined) keyId = deps.tickets.redeem(parsed.data.ticket, now);
    else keyId = authenticate(deps.keys, req.headers.authorization)?.id;
    if (keyId === undefined) return refuse(socket, 401, UNAUTHORIZED, { 'WWW-Authenticate': WWW_AUTHENTICATE });
    const id = keyId;
    wss.handleUpgrade(req, socket, head, (ws) => accept(ws, id, parsed.data.after, parsed.data.types));
  });

  function accept(ws: WebSocket, keyId: number, after: number | undefined, types: readonly string[] | undefined): void {
    const head = deps.tail.head;
    const client: Client = {
      ws,
      keyId,
      types: types === undefined ? undefined : new Set(types),
      typeList: types,
      // A cursor from beyond the head (e.g. a log that was reset) continues from the head.
      cursor: after === undefined ? head : Math.min(after, head),
      live: after === undefined || after >= head,
      alive: true,
      overSince: undefined,
    };
    clients.add(client);
    ws.on('pong', () => {
      client.alive = true;
    });
    ws.on('message', () => {
      // The feed is one-way; client frames are ignored (and kept small by maxPayload).
    });
    ws.on('error', (error) => deps.log.debug({ err: error.message }, 'ws client error'));
    ws.on('close', () => clients.delete(client));
    if (!client.live) replay(client);
  }

  /** Sends the log from the client's cursor in pages, yielding between pages, until it reaches the head. */
  function replay(client: Client): void {
    if (client.ws.readyState !== WebSocket.OPEN) return;
    if (client.ws.bufferedAmount > REPLAY_HIGH_WATER) {
      setTimeout(() => replay(client), 10).unref();
      return;
    }
    try {
      const target = deps.tail.head;
      const page = deps.store.events(client.cursor, target, client.typeList, REPLAY_PAGE);
      for (const e of page.events) client.ws.send(wireText(e));
      client.cursor = page.next;
      if (client.cursor >= target) {
        client.live = true;
        return;
      }
    } catch (error) {
      deps.log.warn({ err: (error as Error).message }, 'ws replay: reading the event log failed');
      setTimeout(() => replay(client), 100).unref();
      return;
    }
    setImmediate(() => replay(client));
  }

  function hasLiveClients(): boolean {
    for (const client of clients) if (client.live) return true;
    return false;
  }

  function dispatch(events: readonly WireEvent[]): void {
    const last = events[events.length - 1];
    if (last === undefined) return;
    const now = deps.clock();
    for (const client of clients) {
      if (!client.live || client.ws.readyState !== WebSocket.OPEN) continue;
      // One write per client for the whole batch; the frame payload is shared by every client.
      const socket = (client.ws as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
      socket?.cork();
      for (const e of events) {
        if (e.seq <= client.cursor) continue;
        if (client.types === undefined || client.types.has(e.type)) client.ws.send(e.text, { binary: false });
      }
      socket?.uncork();
      client.cursor = Math.max(client.cursor, last.seq);
      enforceBuffer(client, now);
    }
  }

  function enforceBuffer(client: Client, now: number): void {
    const buffered = client.ws.bufferedAmount;
    if (buffered > policy.hardBytes) return shut(client, CLOSE_SLOW_CONSUMER, 'slow consumer');
    if (buffered <= policy.softBytes) {
      client.overSince = undefined;
      return;
    }
    client.overSince ??= now;
    if (now - client.overSince >= policy.softMs) shut(client, CLOSE_SLOW_CONSUMER, 'slow consumer');
  }

  /** Closes with a code; the close frame may sit behind a full buffer, so terminate shortly after. */
  function shut(client: Client, code: number, reason: string): void {
    clients.delete(client);
    client.live = false;
    if (client.ws.readyState === WebSocket.OPEN) client.ws.close(code, reason);
    setTimeout(() => client.ws.terminate(), CLOSE_GRACE_MS).unref();
    deps.log.info({ code, reason, keyId: client.keyId }, 'ws client closed by policy');
  }

  const heartbeat = setInterval(() => {
    for (const client of clients) {
      if (!client.alive) {
        clients.delete(client);
        client.ws.terminate();
        continue;
      }
      client.alive = false;
      client.ws.ping();
    }
  }, policy.heartbeatMs);
  heartbeat.unref();

  const watch = setInterval(() => {
    const now = deps.clock();
    for (const client of clients) enforceBuffer(client, now);
  }, Math.min(500, policy.softMs));
  watch.unref();

  const revocations = setInterval(() => {
    if (clients.size === 0) return;
    let revoked: Set<number>;
    try {
      revoked = deps.keys.revokedIds();
    } catch {
      return; // unreadable right now; the next check will see it
    }
    for (const client of clients) if (revoked.has(client.keyId)) shut(client, CLOSE_REVOKED, 'API key revoked');
  }, policy.revokeCheckMs);
  revocations.unref();

  return {
    server,
    wss,
    dispatch,
    hasLiveClients,
    clients: (): number => clients.size,
    /** Stops the timers and closes every client with 1001 (going away). */
    closeClients(): void {
      clearInterval(heartbeat);
      clearInterval(watch);
      clearInterval(revocations);
      for (const client of clients) {
        client.ws.close(1001, 'server shutting down');
        setTimeout(() => client.ws.terminate(), CLOSE_GRACE_MS).unref();
      }
      clients.clear();
    },
  };
}

export type FeedWsServer = ReturnType<typeof createWsServer>;

function refuse(socket: Duplex, status: number, body: Problem, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    `Content-Type: ${PROBLEM_CONTENT_TYPE}`,
    `Content-Length: ${Buffer.byteLength(text)}`,
    'Connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${text}`);
}
