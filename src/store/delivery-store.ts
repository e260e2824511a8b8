/**
 * SQL for taps, unlocks and the outbox queue. One prepared statement per function; the
 * queue's semantics (lease, attempts, run_at, last error, dedupe keys) live in the table.
 */
import type { Db } from './database';

export type OutboxState = 'pending' | 'sending' | 'unknown' | 'accepted' | 'dead';

export interface OutboxRow {
  readonly id: number;
  readonly kind: 'pack' | 'teaser';
  readonly unlock_id: number | null;
  readonly contact: string;
  readonly pack_id: string | null;
  readonly position: number;
  readonly payload: string;
  readonly state: OutboxState;
  readonly attempts: number;
  readonly pair_limit_hits: number;
  readonly run_at: number;
  readonly created_at: number;
  readonly wamid: string | null;
  readonly trace_context: string | null;
  readonly send_trace: string | null;
  readonly resent: number;
  readonly status_rank: number;
  readonly accepted_at: number | null;
  readonly error_class: string | null;
  readonly error_code: number | null;
}

export interface NewOutboxRow {
  readonly kind: 'pack' | 'teaser';
  readonly unlockId: number | null;
  readonly contact: string;
  readonly packId: string | null;
  readonly position: number;
  readonly payload: string;
  readonly runAt: number;
  readonly createdAt: number;
  readonly traceContext: string | null;
}

export interface NewClick {
  readonly wamid: string;
  readonly contact: string;
  readonly trigger: string;
  readonly packId: string | null;
  readonly source: string;
  readonly tappedAt: number;
  readonly receivedAt: number;
  readonly result: 'started' | 'repeated' | 'expired' | 'unknown_trigger';
  readonly unlockId: number | null;
}

export interface UnlockRow {
  readonly id: number;
  readonly contact: string;
  readonly pack_id: string;
  readonly state: string;
  readonly message_count: number;
  readonly created_at: number;
  readonly completed_at: number | null;
  readonly delivered_at: number | null;
}

export type DeliveryStore = ReturnType<typeof createDeliveryStore>;

export function createDeliveryStore(db: Db) {
  const s = {
    insertUnlock: db.prepare<[string, string, number, number]>(
      `INSERT INTO unlocks (contact, pack_id, state, message_count, created_at) VALUES (?, ?, 'sending', ?, ?)
       ON CONFLICT (contact, pack_id) DO NOTHING`,
    ),
    findUnlock: db.prepare<[string, string], UnlockRow>('SELECT * FROM unlocks WHERE contact = ? AND pack_id = ?'),
    unlockById: db.prepare<[number], UnlockRow>('SELECT * FROM unlocks WHERE id = ?'),
    insertClick: db.prepare(
      `INSERT INTO clicks (wamid, contact, trigger, pack_id, source, tapped_at, received_at, result, unlock_id)
       VALUES (@wamid, @contact, @trigger, @packId, @source, @tappedAt, @receivedAt, @result, @unlockId)
       ON CONFLICT (wamid) DO NOTHING`,
    ),
    insertOutbox: db.prepare(
      `INSERT INTO outbox (kind, unlock_id, contact, pack_id, position, payload, state, run_at, created_at, trace_context)
       VALUES (@kind, @unlockId, @contact, @packId, @position, @payload, 'pending', @runAt, @createdAt, @traceContext)`,
    ),
    // Due rows whose contact has no earlier unfinished row: one in flight per contact, in order.
    due: db.prepare<[number, number], OutboxRow>(
      `SELECT o.* FROM outbox o
       WHERE o.state = 'pending' AND o.run_at <= ?
         AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.contact = o.contact AND p.id < o.id
                         AND p.state IN ('pending', 'sending', 'unknown'))
       ORDER BY o.run_at, o.id LIMIT ?`,
    ),
    lease: db.prepare<[number, number]>(
      `UPDATE outbox SET state = 'sending', attempts = attempts + 1, locked_until = ? WHERE id = ? AND state = 'pending'`,
    ),
    accept: db.prepare<[string, number, string | null, number]>(
      `UPDATE outbox SET state = 'accepted', wamid = ?, accepted_at = ?, send_trace = COALESCE(?, send_trace),
         locked_until = NULL, unknown_since = NULL, last_error = NULL
       WHERE id = ? AND state IN ('sending', 'unknown', 'pending')`,
    ),
    // The outcome of one attempt applies only while that attempt holds the row: not claimed
    // again since (attempts counts claims), and still sending, or `unknown` because its lease
    // ran out or the service stopped before the answer was recorded. A clear failure then still
    // says that this attempt did not go out. Accepted, dead or re-sent rows are left alone.
    retry: db.prepare<[number, string, number | null, string, number, number, number]>(
      `UPDATE outbox SET state = 'pending', run_at = ?, last_error = ?, error_code = ?, error_class = ?,
         pair_limit_hits = pair_limit_hits + ?, locked_until = NULL, unknown_since = NULL
       WHERE id = ? AND state IN ('sending', 'unknown') AND attempts = ?`,
    ),
    unknown: db.prepare<[number, number, string, number, number]>(
      `UPDATE outbox SET state = 'unknown', unknown_since = ?, run_at = ?, last_error = ?, error_class = 'timeout', locked_until = NULL
       WHERE id = ? AND state = 'sending' AND attempts = ?`,
    ),
    attemptDead: db.prepare<[string, number | null, string, number, number]>(
      `UPDATE outbox SET state = 'dead', last_error = ?, error_code = ?, error_class = ?, locked_until = NULL, unknown_since = NULL
       WHERE id = ? AND state IN ('sending', 'unknown') AND attempts = ?`,
    ),
    dead: db.prepare<[string, number | null, string, number | null, number]>(
      `UPDATE outbox SET state = 'dead', last_error = ?, error_code = ?, error_class = ?, cancelled_by = ?, locked_until = NULL
       WHERE id = ? AND state <> 'dead'`,
    ),
    revive: db.prepare<[string, number, number]>(
      `UPDATE outbox SET state = 'accepted', wamid = ?, accepted_at = ?, last_error = NULL, error_code = NULL, error_class = NULL
       WHERE id = ? AND state = 'dead' AND error_class = 'timeout' AND cancelled_by IS NULL`,
    ),
    requeueCancelled: db.prepare<[number, number]>(
      `UPDATE outbox SET state = 'pending', run_at = ?, last_error = NULL, error_code = NULL, error_class = NULL, cancelled_by = NULL
       WHERE cancelled_by = ? AND state = 'dead'`,
    ),
    reopenUnlock: db.prepare<[number]>(`UPDATE unlocks SET state = 'sending' WHERE id = ? AND state = 'failed'`),
    laterOpen: db.prepare<[number, number], OutboxRow>(
      `SELECT * FROM outbox WHERE unlock_id = ? AND position > ? AND state IN ('pending', 'sending', 'unknown') ORDER BY position`,
    ),
    byId: db.prepare<[number], OutboxRow>('SELECT * FROM outbox WHERE id = ?'),
    byWamid: db.prepare<[string], OutboxRow>('SELECT * FROM outbox WHERE wamid = ?'),
    // The state IN (…) term lets SQLite use the partial index outbox_leased (it must appear verbatim).
    expiredLeases: db.prepare<[number], OutboxRow>(
      `SELECT * FROM outbox WHERE state IN ('sending', 'unknown') AND state = 'sending' AND locked_until < ?`,
    ),
    dueUnknown: db.prepare<[number], OutboxRow>(`SELECT * FROM outbox WHERE state = 'unknown' AND run_at <= ?`),
    resend: db.prepare<[number, number]>(
      `UPDATE outbox SET state = 'pending', resent = 1, run_at = ?, unknown_since = NULL WHERE id = ? AND state = 'unknown'`,
    ),
    openInUnlock: db.prepare<[number], { n: number }>(
      `SELECT COUNT(*) AS n FROM outbox WHERE unlock_id = ? AND state <> 'accepted'`,
    ),
    undeliveredInUnlock: db.prepare<[number, number], { n: number }>(
      `SELECT COUNT(*) AS n FROM outbox WHERE unlock_id = ? AND status_rank < ?`,
    ),
    completeUnlock: db.prepare<[number, number]>(`UPDATE unlocks SET state = 'completed', completed_at = ? WHERE id = ? AND state = 'sending'`),
    failUnlock: db.prepare<[number]>(`UPDATE unlocks SET state = 'failed' WHERE id = ? AND state = 'sending'`),
    deliveredUnlock: db.prepare<[number, number]>(`UPDATE unlocks SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL`),
    advanceStatus: db.prepare<[string, number, number, number, number]>(
      `UPDATE outbox SET status = ?, status_rank = ?, status_at = ? WHERE id = ? AND status_rank < ?`,
    ),
    queue: db.prepare<[], { depth: number; oldest: number | null }>(
      `SELECT COUNT(*) AS depth, MIN(created_at) AS oldest FROM outbox WHERE state IN ('pending', 'sending', 'unknown')`,
    ),
    pullForward: db.prepare<[number, number]>(
      `UPDATE outbox SET run_at = ? WHERE state = 'pending' AND run_at > ? AND error_class IN ('server', 'network')`,
    ),
    // One MIN per state, each on its partial index (outbox_due, outbox_unknown_due).
    nextRunAt: db.prepare<[], { at: number | null }>(
      `SELECT MIN(at) AS at FROM (SELECT MIN(run_at) AS at FROM outbox WHERE state = 'pending'
                                  UNION ALL SELECT MIN(run_at) FROM outbox WHERE state = 'unknown')`,
    ),
  };

  return {
    /** The new unlock's id, or undefined when this contact already unlocked this pack. */
    insertUnlock(contact: string, packId: string, messageCount: number, createdAt: number): number | undefined {
      const info = s.insertUnlock.run(contact, packId, messageCount, createdAt);
      return info.changes === 1 ? Number(info.lastInsertRowid) : undefined;
    },
    findUnlock: (contact: string, packId: string): UnlockRow | undefined => s.findUnlock.get(contact, packId),
    unlockById: (id: number): UnlockRow | undefined => s.unlockById.get(id),
    insertClick(click: NewClick): number | undefined {
      const info = s.insertClick.run(click);
      return info.changes === 1 ? Number(info.lastInsertRowid) : undefined;
    },
    insertOutbox(row: NewOutboxRow): number {
      return Number(s.insertOutbox.run(row).lastInsertRowid);
    },
    /** Claims up to `limit` due rows with a lease until `leaseUntil`. Call inside a transaction. */
    claimDue(now: number, limit: number, leaseUntil: number): OutboxRow[] {
      const rows = s.due.all(now, limit);
      return rows.filter((row) => s.lease.run(leaseUntil, row.id).changes === 1).map((row) => ({ ...row, state: 'sending' as const, attempts: row.attempts + 1 }));
    },
    markAccepted: (id: number, wamid: string, now: number, sendTrace: string | null): boolean => s.accept.run(wamid, now, sendTrace, id).changes === 1,
    /** Attempt `attempts` of row `id` failed and is retried later; false if that attempt no longer holds the row. */
    markRetry: (id: number, attempts: number, runAt: number, error: string, code: number | null, errorClass: string, pairHit: boolean): boolean =>
      s.retry.run(runAt, error, code, errorClass, pairHit ? 1 : 0, id, attempts).changes === 1,
    /** Attempt `attempts` of row `id` may or may not have been sent; false if that attempt no longer holds the row. */
    markUnknown: (id: number, attempts: number, now: number, resolveBy: number, reason: string): boolean =>
      s.unknown.run(now, resolveBy, reason, id, attempts).changes === 1,
    /** Attempt `attempts` of row `id` failed for good; false if that attempt no longer holds the row. */
    markAttemptDead: (id: number, attempts: number, reason: string, code: number | null, errorClass: string): boolean =>
      s.attemptDead.run(reason, code, errorClass, id, attempts).changes === 1,
    markDead: (id: number, reason: string, code: number | null, errorClass: string, cancelledBy: number | null = null): boolean =>
      s.dead.run(reason, code, errorClass, cancelledBy, id).changes === 1,
    /** A message dead-lettered as ambiguous that Meta reports as sent after all. */
    revive: (id: number, wamid: string, now: number): boolean => s.revive.run(wamid, now, id).changes === 1,
    /** Queues again the rows that `id`'s death cancelled; returns how many. */
    requeueCancelled: (id: number, now: number): number => s.requeueCancelled.run(now, id).changes,
    reopenUnlock: (unlockId: number): boolean => s.reopenUnlock.run(unlockId).changes === 1,
    laterOpen: (unlockId: number, position: number): OutboxRow[] => s.laterOpen.all(unlockId, position),
    byId: (id: number): OutboxRow | undefined => s.byId.get(id),
    byWamid: (wamid: string): OutboxRow | undefined => s.byWamid.get(wamid),
    expiredLeases: (now: number): OutboxRow[] => s.expiredLeases.all(now),
    dueUnknown: (now: number): OutboxRow[] => s.dueUnknown.all(now),
    resend: (id: number, runAt: number): boolean => s.resend.run(runAt, id).changes === 1,
    unacceptedInUnlock: (unlockId: number): number => s.openInUnlock.get(unlockId)?.n ?? 0,
    undeliveredInUnlock: (unlockId: number, deliveredRank: number): number => s.undeliveredInUnlock.get(unlockId, deliveredRank)?.n ?? 0,
    completeUnlock: (unlockId: number, now: number): boolean => s.completeUnlock.run(now, unlockId).changes === 1,
    failUnlock: (unlockId: number): boolean => s.failUnlock.run(unlockId).changes === 1,
    markUnlockDelivered: (unlockId: number, now: number): boolean => s.deliveredUnlock.run(now, unlockId).changes === 1,
    advanceStatus: (id: number, status: string, rank: number, at: number): boolean => s.advanceStatus.run(status, rank, at, id, rank).changes === 1,
    queueStats(now: number): { depth: number; oldestAgeMs: number } {
      const row = s.queue.get();
      return { depth: row?.depth ?? 0, oldestAgeMs: row?.oldest == null ? 0 : Math.max(0, now - row.oldest) };
    },
    /** Retries backed off after server or network errors (an outage) become due now; returns how many. */
    pullRetriesForward: (now: number): number => s.pullForward.run(now, now).changes,
    nextRunAt: (): number | undefined => s.nextRunAt.get()?.at ?? undefined,
  };
}
