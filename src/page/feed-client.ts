/**
 * Follows the WebSocket feed the way docs/integration-checklist.md tells every client to:
 * a fresh one-time ticket per connection, `?after=<highest seq seen>` on every reconnect so
 * the server replays what was missed, dedupe by seq, and — should a hole ever show up in
 * the seqs — a repair read of `/api/events` for exactly that range.
 *
 * Reconnects back off with jitter (250 ms doubling to 10 s) and wait for the browser to be
 * online. Close 1008 means the key was revoked; a refused ticket means it is no longer valid.
 */
import { ApiClient, RateLimited, Unauthorized, type FeedEvent } from './api-client';

export type ConnState = 'connecting' | 'live' | 'reconnecting' | 'offline' | 'stopped';

export interface FeedClientOptions {
  readonly api: ApiClient;
  readonly wsUrl: string;
  /** Start after this seq (the server replays everything above it). */
  readonly after: number;
  /** New events, each seq exactly once; repaired ones may come after higher seqs. */
  onEvents(events: readonly FeedEvent[]): void;
  onState(state: ConnState, detail: string): void;
  onUnauthorized(): void;
}

const CLOSE_REVOKED = 1008;
const BASE_DELAY_MS = 250;
const MAX_DELAY_MS = 10_000;
const STABLE_MS = 5_000;
const SEEN_WINDOW = 20_000;
const REPAIR_PAGE = 1000;
const REPAIR_MAX_PAGES = 20;

export class FeedClient {
  private socket: WebSocket | undefined;
  private highest: number;
  /** Seqs at or below `floor` count as seen; above it, exactly those in `seen`. */
  private floor: number;
  private readonly seen = new Set<number>();
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  /** A ticket request is in flight (so an 'online' event does not start a second one). */
  private connecting = false;
  private everOpened = false;
  private openedAt = 0;
  /** Times a socket reached the open state (shown on the page, read by the e2e test). */
  connects = 0;

  constructor(private readonly o: FeedClientOptions) {
    this.highest = o.after;
    this.floor = o.after;
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
  }

  start(): void {
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    this.socket?.close(1000, 'page closed the feed');
    this.socket = undefined;
    this.o.onState('stopped', 'Feed: stopped');
  }

  private readonly onOnline = (): void => {
    if (this.stopped || this.socket !== undefined || this.connecting) return;
    clearTimeout(this.timer);
    void this.connect();
  };

  /**
   * A socket over a network that just went away may not report its death for minutes, so
   * drop it now; the 'online' event reconnects from the same seq.
   */
  private readonly onOffline = (): void => {
    if (this.stopped) return;
    const socket = this.socket;
    this.socket = undefined;
    socket?.close(1000, 'browser went offline');
    clearTimeout(this.timer);
    void this.connect();
  };

  private async connect(): Promise<void> {
    // One socket (or one ticket request) at a time, whichever timer or event asked.
    if (this.stopped || this.socket !== undefined || this.connecting) return;
    if (!navigator.onLine) {
      // Nothing to try until the browser is back online (the 'online' event); check now and then anyway.
      this.o.onState('offline', 'Feed: offline, waiting for the network');
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.connect(), MAX_DELAY_MS);
      return;
    }
    this.o.onState(this.attempt === 0 ? 'connecting' : 'reconnecting', this.attempt === 0 ? 'Feed: connecting…' : 'Feed: reconnecting…');
    let ticket: string;
    this.connecting = true;
    try {
      ticket = (await this.o.api.ticket()).ticket;
    } catch (error) {
      if (error instanceof Unauthorized) return this.o.onUnauthorized();
      return this.retry(error instanceof RateLimited ? error.retryAfterMs : undefined);
    } finally {
      this.connecting = false;
    }
    if (this.stopped) return;
    const url = new URL(this.o.wsUrl);
    url.searchParams.set('ticket', ticket);
    url.searchParams.set('after', String(this.highest));
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onopen = () => {
      this.everOpened = true;
      this.openedAt = Date.now();
      this.connects += 1;
      this.o.onState('live', this.connects > 1 ? `Feed: live (reconnected ${this.connects - 1}×)` : 'Feed: live');
    };
    socket.onmessage = (message: MessageEvent) => {
      if (typeof message.data === 'string') this.receive(message.data);
    };
    socket.onclose = (event: CloseEvent) => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      if (event.code === CLOSE_REVOKED) return this.o.onUnauthorized();
      if (this.openedAt > 0 && Date.now() - this.openedAt > STABLE_MS) this.attempt = 0;
      this.openedAt = 0;
      this.retry();
    };
  }

  private retry(minDelayMs = 0): void {
    if (this.stopped) return;
    const backoff = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** Math.min(this.attempt, 10));
    const delay = Math.max(minDelayMs, backoff / 2 + Math.random() * (backoff / 2));
    this.attempt += 1;
    if (!this.everOpened && this.attempt >= 3) {
      this.o.onState('reconnecting', 'Feed: cannot open the WebSocket (is this page’s origin in DASHBOARD_ORIGINS?) retrying…');
    } else {
      this.o.onState('reconnecting', `Feed: disconnected, retrying in ${Math.ceil(delay / 1000)} s`);
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.connect(), delay);
  }

  private receive(text: string): void {
    let event: FeedEvent;
    try {
      event = JSON.parse(text) as FeedEvent;
    } catch {
      return;
    }
    if (!Number.isSafeInteger(event.seq)) return;
    const before = this.highest;
    const fresh = this.accept([event]);
    if (fresh.length > 0) this.o.onEvents(fresh);
    if (event.seq > before + 1) void this.repair(before, event.seq);
  }

  /** Keeps the events not seen before, and remembers them. */
  private accept(events: readonly FeedEvent[]): FeedEvent[] {
    const fresh: FeedEvent[] = [];
    for (const e of events) {
      if (e.seq <= this.floor || this.seen.has(e.seq)) continue;
      this.seen.add(e.seq);
      this.highest = Math.max(this.highest, e.seq);
      fresh.push(e);
    }
    if (this.seen.size > SEEN_WINDOW * 2) {
      this.floor = this.highest - SEEN_WINDOW;
      for (const seq of this.seen) if (seq <= this.floor) this.seen.delete(seq);
    }
    return fresh;
  }

  /** Reads the log between two seqs and hands on whatever the socket did not bring. */
  private async repair(after: number, before: number): Promise<void> {
    let cursor = after;
    try {
      for (let page = 0; page < REPAIR_MAX_PAGES && cursor < before - 1; page++) {
        const answer = await this.o.api.events(cursor, Math.min(REPAIR_PAGE, before - 1 - cursor));
        const fresh = this.accept(answer.events.filter((e) => e.seq < before));
        if (fresh.length > 0) this.o.onEvents(fresh);
        if (!answer.has_more || answer.next_after <= cursor) break;
        cursor = answer.next_after;
      }
    } catch (error) {
      if (error instanceof Unauthorized) this.o.onUnauthorized();
      // Otherwise leave it: a hole in a display list is not worth a retry storm.
    }
  }
}
