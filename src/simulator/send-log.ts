/**
 * What the simulated Meta saw: every accepted send (in arrival order) and every request it
 * did not accept, with a `waitFor` that tests use instead of sleeping. Bounded: past
 * `limit` entries the oldest half is forgotten (counters keep counting).
 */

export interface SimSend {
  readonly seq: number; // arrival order over all accepted sends, from 1
  readonly wamid: string;
  readonly to: string; // as given in the request
  readonly waId: string; // normalised digits, what statuses carry as recipient_id
  readonly type: string;
  readonly body: Readonly<Record<string, unknown>>; // the request JSON as sent
  readonly callbackData: string | undefined;
  readonly acceptedAt: number; // ms, simulator clock
  /** 1 for the first accepted send with this callbackData, 2 for the next, … (1 without callbackData). */
  readonly attempt: number;
  /** False when a timeout fault swallowed the answer: the client never saw this wamid. */
  readonly answered: boolean;
}

export interface SimRejection {
  readonly at: number;
  readonly status: number; // HTTP status answered; 0 = never answered (hang)
  readonly code: number | undefined; // Graph error code
  readonly reason: 'auth' | 'validation' | 'path' | 'fault';
  readonly fault: string | undefined;
  readonly to: string | undefined;
  readonly callbackData: string | undefined;
}

export interface SimStatusDelivery {
  readonly wamid: string;
  readonly status: string;
  readonly recipient: string;
  readonly callbackData: string | undefined;
  readonly deliveredAt: number;
}

interface Waiter {
  check(): boolean; // true when settled
  abort(error: Error): void;
}

export class SendLog {
  readonly sends: SimSend[] = [];
  readonly rejections: SimRejection[] = [];
  readonly statusDeliveries: SimStatusDelivery[] = [];
  duplicateSends = 0;
  private seq = 0;
  private readonly attempts = new Map<string, number>();
  private readonly waiters = new Set<Waiter>();
  private checkScheduled: NodeJS.Immediate | undefined;

  constructor(private readonly limit: number) {}

  accept(send: Omit<SimSend, 'seq' | 'attempt'>): SimSend {
    let attempt = 1;
    if (send.callbackData !== undefined) {
      attempt = (this.attempts.get(send.callbackData) ?? 0) + 1;
      this.attempts.set(send.callbackData, attempt);
      if (attempt > 1) this.duplicateSends += 1;
    }
    const entry: SimSend = { ...send, seq: ++this.seq, attempt };
    push(this.sends, entry, this.limit);
    this.changed();
    return entry;
  }

  reject(rejection: SimRejection): void {
    push(this.rejections, rejection, this.limit);
    this.changed();
  }

  delivered(delivery: SimStatusDelivery): void {
    push(this.statusDeliveries, delivery, this.limit);
    this.changed();
  }

  sendsTo(contact: string): SimSend[] {
    const digits = contact.replace(/^\+/, '');
    return this.sends.filter((s) => s.waId === digits || s.to === contact);
  }

  clear(): void {
    this.sends.length = 0;
    this.rejections.length = 0;
    this.statusDeliveries.length = 0;
    this.attempts.clear();
    this.duplicateSends = 0;
    this.seq = 0;
  }

  /**
   * Resolves with the first truthy value of `check`, evaluated after every change to the log
   * and every `pollMs` (so it can also wait on state outside the simulator); rejects after
   * `timeoutMs` or when the simulator closes.
   */
  waitFor<T>(check: () => T | undefined | null | false, timeoutMs: number, pollMs = 25): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timers: { poll?: NodeJS.Timeout; deadline?: NodeJS.Timeout } = {};
      const finish = (): void => {
        clearInterval(timers.poll);
        clearTimeout(timers.deadline);
        this.waiters.delete(waiter);
      };
      const waiter: Waiter = {
        check: () => {
          let value: T | undefined | null | false;
          try {
            value = check();
          } catch (error) {
            finish();
            reject(error instanceof Error ? error : new Error(String(error)));
            return true;
          }
          if (value === undefined || value === null || value === false) return false;
          finish();
          resolve(value);
          return true;
        },
        abort: (error) => {
          finish();
          reject(error);
        },
      };
      if (waiter.check()) return;
      this.waiters.add(waiter);
      timers.poll = setInterval(() => waiter.check(), pollMs);
      timers.deadline = setTimeout(() => {
        finish();
        reject(new Error(`simulator waitFor: condition not met within ${timeoutMs} ms`));
      }, timeoutMs);
    });
  }

  /** Rejects every pending waitFor: nothing will change any more. */
  closeWaiters(): void {
    clearImmediate(this.checkScheduled);
    for (const waiter of [...this.waiters]) {
      // A closed simulator can still satisfy a predicate over its final log.
      if (!waiter.check()) waiter.abort(new Error('simulator closed before the waitFor condition was met'));
    }
  }

  private changed(): void {
    // Coalesce: at 1,000+ sends/s, re-check waiters once per event-loop turn, not per event.
    if (this.waiters.size === 0 || this.checkScheduled !== undefined) return;
    this.checkScheduled = setImmediate(() => {
      this.checkScheduled = undefined;
      for (const waiter of [...this.waiters]) waiter.check();
    });
  }
}

function push<T>(list: T[], item: T, limit: number): void {
  if (list.length >= limit) list.splice(0, Math.ceil(limit / 2));
  list.push(item);
}
