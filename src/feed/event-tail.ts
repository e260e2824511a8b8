/**
 * Follows the event log by seq. The log is the only channel between the writer and the feed,
 * so a feed in its own process sees the webhook process's events: it polls every `pollMs`,
 * and in the all-in-one process `notify()` after each COMMIT wakes it at once. Every event is
 * serialised once to its wire text and handed to every subscriber in seq order.
 */
import type { Logger } from '../log';
import type { EventRecord, FeedStore } from '../store/feed-store';

export interface WireEvent {
  readonly seq: number;
  readonly type: string;
  /** `{"seq":…,"type":…,"at":…,"data":…}` exactly as sent, encoded once for every client. */
  readonly text: Buffer;
}

export function wireText(e: EventRecord): string {
  // The stored data is JSON text already; splice it in rather than parse and re-serialise.
  return `{"seq":${e.seq},"type":${JSON.stringify(e.type)},"at":"${new Date(e.at).toISOString()}","data":${e.data}}`;
}

const PAGE = 1000;
const MAX_PAGES_PER_POLL = 50;

export class EventTail {
  private last: number;
  private timer: NodeJS.Timeout | undefined;
  private woken = false;
  private failures = 0;

  constructor(
    private readonly store: FeedStore,
    private readonly deliver: (events: readonly WireEvent[]) => void,
    private readonly log: Logger,
    private readonly pollMs = 50,
    /** Whether any client is live; without one, the tail only moves its head (no reads on the webhook's path). */
    private readonly wanted: () => boolean = () => true,
  ) {
    this.last = store.headSeq();
  }

  /** The newest seq handed to subscribers; nothing at or below it will be delivered live. */
  get head(): number {
    return this.last;
  }

  start(): void {
    this.timer ??= setInterval(() => this.poll(), this.pollMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Wakes the tail now (coalesced: many commits in one turn cost one query). */
  notify(): void {
    if (this.woken) return;
    this.woken = true;
    setImmediate(() => {
      this.woken = false;
      this.poll();
    });
  }

  poll(): void {
    try {
      if (!this.wanted()) {
        // Nobody to deliver to: clients that connect later start from (or replay up to) this head.
        this.last = this.store.headSeq();
        this.failures = 0;
        return;
      }
      for (let page = 0; page < MAX_PAGES_PER_POLL; page++) {
        const { events } = this.store.events(this.last, Number.MAX_SAFE_INTEGER, undefined, PAGE);
        const newest = events[events.length - 1];
        if (newest === undefined) break;
        this.last = newest.seq;
        this.deliver(events.map((e) => ({ seq: e.seq, type: e.type, text: Buffer.from(wireText(e)) })));
        if (events.length < PAGE) break;
      }
      this.failures = 0;
    } catch (error) {
      // A busy or briefly unreadable database: try again on the next tick, say so now and then.
      if (this.failures++ % 100 === 0) this.log.warn({ err: (error as Error).message, failures: this.failures }, 'event tail: reading the event log failed');
    }
  }
}
