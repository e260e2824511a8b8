/**
 * Outbox transitions with their side effects: each moves a row in the queue and, in the same
 * transaction, appends the event-log rows, bumps the rollups and completes or fails the
 * unlock. Every function here runs inside a transaction owned by the caller.
 *
 *   accepted   a wamid came back (or a status webhook echoed our callback data)
 *   failed     a clear failure: retried with backoff, backed off per contact (131056), or dead
 *   ambiguous  the request was written but no answer came: `unknown` until a status resolves
 *              it; if none does within the wait, it is sent once more (a possible duplicate)
 */
import type { Classification, ErrorClass } from './graph-errors';
import { pairBackoffMs, retryDelayMs } from './graph-errors';
import type { DeliveryStore, OutboxRow } from './store/delivery-store';
import type { RollupStore } from './store/rollup-store';
import type { EventRow } from './store/webhook-store';

export type SendAttemptResult = 'accepted' | 'retry' | 'dead_letter' | 'unknown';

/** What telemetry learns from delivery. Method names match the telemetry object. */
export interface DeliveryObserver {
  click?(pack: string): void;
  unlock?(pack: string, result: 'started' | 'repeated' | 'expired' | 'unknown_trigger'): void;
  messageSent?(pack: string): void;
  messageStatus?(status: string): void;
  sendAttempt?(result: SendAttemptResult, errorClass: ErrorClass | 'none'): void;
  deadLetter?(stage: 'webhook' | 'send', errorClass: string): void;
  possibleDuplicate?(): void;
  clickToSent?(seconds: number): void;
  clickToDelivered?(seconds: number): void;
}

export interface OutboxSettings {
  /** How long an ambiguous send waits for a status webhook before it is sent once more. */
  readonly unknownWaitMs: number;
  /** Give up (dead letter) on a message this long after it was queued. */
  readonly maxAgeMs: number;
}

export interface OutboxDeps {
  readonly store: DeliveryStore;
  readonly rollup: RollupStore;
  readonly appendEvent: (row: EventRow) => number;
  readonly observer?: DeliveryObserver;
  readonly random?: () => number;
  readonly settings: OutboxSettings;
}

const DELIVERED_RANK = 3;
const CALLBACK_PREFIX = 'ctu:o:';

export function callbackDataFor(outboxId: number): string {
  return `${CALLBACK_PREFIX}${outboxId}`;
}

export function outboxIdFromCallback(data: string | undefined): number | undefined {
  if (data === undefined || !data.startsWith(CALLBACK_PREFIX)) return undefined;
  const id = Number(data.slice(CALLBACK_PREFIX.length));
  return Number.isSafeInteger(id) && id > 0 ? id : undefined;
}

/** Queues the teaser (the message with the Unlock button) for a contact, through the same outbox. */
export function enqueueTeaser(store: DeliveryStore, contact: string, payload: Record<string, unknown>, packId: string, now: number): number {
  return store.insertOutbox({ kind: 'teaser', unlockId: null, contact, packId, position: 0, payload: JSON.stringify(payload), runAt: now, createdAt: now, traceContext: null });
}

export type Outbox = ReturnType<typeof createOutbox>;

export function createOutbox(deps: OutboxDeps) {
  const { store, rollup, observer, settings } = deps;
  const random = deps.random ?? Math.random;
  const event = (type: string, at: number, row: Pick<OutboxRow, 'contact'>, data: Record<string, unknown>): void => {
    deps.appendEvent({ type, at, contact: row.contact, data: JSON.stringify({ contact: row.contact, ...data }) });
  };
  const describe = (row: OutboxRow) => ({ outbox_id: row.id, unlock_id: row.unlock_id, pack: row.pack_id, position: row.position, kind: row.kind });

  function accepted(row: OutboxRow, wamid: string, now: number, sendTrace: string | null): boolean {
    if (!store.markAccepted(row.id, wamid, now, sendTrace)) return false;
    announceAccepted(row, wamid, now);
    return true;
  }

  function announceAccepted(row: OutboxRow, wamid: string, now: number): void {
    event('message.sent', now, row, { ...describe(row), wamid, attempts: row.attempts });
    rollup.bump(now, row.pack_id, 'messages_sent');
    observer?.messageSent?.(row.pack_id ?? 'unknown');
    if (row.unlock_id === null) return;
    const unlock = store.unlockById(row.unlock_id);
    if (unlock === undefined) return;
    if (row.position === 0) observer?.clickToSent?.(Math.max(0, now - unlock.created_at) / 1000);
    if (store.unacceptedInUnlock(row.unlock_id) === 0 && store.completeUnlock(row.unlock_id, now)) {
      event('unlock.completed', now, row, { unlock_id: row.unlock_id, pack: row.pack_id, messages: unlock.message_count });
      rollup.bump(now, row.pack_id, 'unlocks_completed');
    }
  }

  /**
   * Meta reports a status for a message we dead-lettered as ambiguous: it was sent after all.
   * Accept it and queue again the later messages of its pack that its death had cancelled.
   */
  function revive(row: OutboxRow, wamid: string, now: number): boolean {
    if (!store.revive(row.id, wamid, now)) return false;
    if (row.unlock_id !== null) store.reopenUnlock(row.unlock_id);
    store.requeueCancelled(row.id, now);
    announceAccepted(row, wamid, now);
    return true;
  }

  /**
   * The row is a dead letter, and so are the later open messages of its pack. `attempt`: the
   * verdict is one send attempt's, and counts only while that attempt still holds the row
   * (otherwise it is Meta's, in a status, and counts whatever state the row is in).
   */
  function dead(row: OutboxRow, reason: string, code: number | null, errorClass: string, now: number, attempt = false): boolean {
    const marked = attempt ? store.markAttemptDead(row.id, row.attempts, reason, code, errorClass) : store.markDead(row.id, reason, code, errorClass);
    if (!marked) return false;
    event('delivery.failed', now, row, { ...describe(row), reason, error_code: code, error_class: errorClass });
    rollup.bump(now, row.pack_id, 'messages_failed');
    observer?.deadLetter?.('send', errorClass);
    if (row.unlock_id === null) return true;
    // Later messages of the pack would arrive out of order, or not at all: stop them too.
    for (const later of store.laterOpen(row.unlock_id, row.position)) {
      if (!store.markDead(later.id, `message ${row.position + 1} of the pack failed`, code, errorClass, row.id)) continue;
      event('delivery.failed', now, later, { ...describe(later), reason: 'an earlier message of the pack failed', error_code: code, error_class: errorClass });
      rollup.bump(now, later.pack_id, 'messages_failed');
      observer?.deadLetter?.('send', errorClass);
    }
    store.failUnlock(row.unlock_id);
    return true;
  }

  /**
   * A clear failure of an attempt (the row is `sending`, or `unknown` since its lease ran out).
   * Ignored, and not counted, if that attempt no longer holds the row: it was accepted, dead-
   * lettered or claimed again meanwhile.
   */
  function failed(row: OutboxRow, how: Classification, detail: string, code: number | null, retryAfterMs: number | undefined, now: number): void {
    const tooOld = now - row.created_at > settings.maxAgeMs;
    if (how.disposition === 'permanent' || tooOld) {
      const reason = tooOld && how.disposition !== 'permanent' ? `gave up after ${Math.round((now - row.created_at) / 1000)} s: ${detail}` : detail;
      if (dead(row, reason, code, how.errorClass, now, true)) observer?.sendAttempt?.('dead_letter', how.errorClass);
      return;
    }
    const pair = how.disposition === 'pair_backoff';
    const delay = pair ? Math.max(pairBackoffMs(row.pair_limit_hits + 1), retryAfterMs ?? 0) : retryDelayMs(row.attempts, random(), retryAfterMs);
    if (store.markRetry(row.id, row.attempts, now + delay, detail, code, how.errorClass, pair)) observer?.sendAttempt?.('retry', how.errorClass);
  }

  /** An attempt whose outcome is unknown (the row is `sending`); ignored, and not counted, if that attempt no longer holds it. */
  function ambiguous(row: OutboxRow, reason: string, now: number): void {
    if (store.markUnknown(row.id, row.attempts, now, now + settings.unknownWaitMs, reason)) observer?.sendAttempt?.('unknown', 'timeout');
  }

  /** A status webhook for one of our messages (matched by callback data or wamid). */
  function status(row: OutboxRow, wamid: string, statusName: string, rank: number | undefined, errorCode: number | null, how: Classification | undefined, now: number): void {
    if (row.state !== 'accepted' && row.state !== 'dead' && statusName !== 'failed') {
      // The send went through although we never saw its answer (ambiguous, or the answer is still on its way).
      accepted(row, wamid, now, null);
    }
    if (row.state === 'dead' && statusName !== 'failed') revive(row, wamid, now);
    if (statusName === 'failed' && how !== undefined) {
      // Meta does not retry a failed message. Neither do we, even for a retryable code: a resend
      // could arrive after later messages of the pack. It is a dead letter with its code.
      const note = how.disposition === 'permanent' ? '' : ' (retryable code, not resent after acceptance)';
      dead(row, `failed status: ${how.meaning}${note}`, errorCode, how.errorClass, now);
      return;
    }
    if (rank === undefined || !store.advanceStatus(row.id, statusName, rank, now)) return;
    if (rank >= DELIVERED_RANK && row.status_rank < DELIVERED_RANK) {
      rollup.bump(now, row.pack_id, 'messages_delivered');
      if (row.unlock_id !== null && store.undeliveredInUnlock(row.unlock_id, DELIVERED_RANK) === 0 && store.markUnlockDelivered(row.unlock_id, now)) {
        const unlock = store.unlockById(row.unlock_id);
        if (unlock !== undefined) observer?.clickToDelivered?.(Math.max(0, now - unlock.created_at) / 1000);
      }
    }
    if (statusName === 'read') rollup.bump(now, row.pack_id, 'messages_read');
  }

  /** Sends whose lease ran out (a crash between send and record): maybe sent, so `unknown`. */
  function recoverLeases(now: number): number {
    const rows = store.expiredLeases(now);
    for (const row of rows) ambiguous(row, 'lease expired: the worker stopped during the send', now);
    return rows.length;
  }

  /** Unknown sends that no status resolved in time: send once more, counted as a possible duplicate. */
  function resolveUnknowns(now: number): number {
    const rows = store.dueUnknown(now);
    for (const row of rows) {
      if (row.resent === 0) {
        store.resend(row.id, now);
        observer?.possibleDuplicate?.();
      } else {
        dead(row, 'ambiguous twice and no status arrived', null, 'timeout', now);
      }
    }
    return rows.length;
  }

  return { accepted, failed, ambiguous, status, dead, recoverLeases, resolveUnknowns };
}
