/**
 * Every SQL statement the dashboard feed runs. Read-only: works on a handle opened with
 * `readonly: true`. Aggregates come from the rollups (minute, hour, contact-day), never from
 * scanning raw rows; the raw-row reads (history, latency samples, events) are bounded by an
 * index range and a LIMIT.
 */
import type { Db } from './database';
import { ROLLUP_FIELDS, type RollupField } from './rollup-store';

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const MAX_ID = Number.MAX_SAFE_INTEGER;

export type Counters = Record<RollupField, number>;
export type Bucket = 'minute' | 'hour' | 'day';

export interface EventRecord {
  readonly seq: number;
  readonly type: string;
  readonly at: number;
  /** The event's data as stored: a JSON object's text. */
  readonly data: string;
}

export interface InboundHistoryRow {
  readonly id: number;
  readonly wamid: string;
  readonly type: string;
  readonly at: number;
  readonly received_at: number;
  /** The raw webhook body the message came in (the message is read from it). */
  readonly inbox_body: Buffer;
}

export interface OutboundHistoryRow {
  readonly id: number;
  readonly kind: string;
  readonly pack_id: string | null;
  readonly position: number;
  readonly payload: string;
  readonly state: string;
  readonly attempts: number;
  readonly at: number;
  readonly accepted_at: number | null;
  readonly wamid: string | null;
  readonly status: string | null;
  readonly status_at: number | null;
  readonly error_code: number | null;
  readonly error_class: string | null;
}

/** A position in a contact's history, newest first: (time, direction 0 in / 1 out, row id). */
export interface HistoryCursor {
  readonly at: number;
  readonly direction: 0 | 1;
  readonly id: number;
}

export interface GraphCallStats {
  readonly messages: number;
  readonly attempts: number;
  readonly accepted: number;
  readonly dead: number;
  readonly resent: number;
  readonly byErrorClass: ReadonlyArray<{ readonly error_class: string; readonly messages: number }>;
}

export const EVENT_SCAN_LIMIT = 50_000;

const sums = ROLLUP_FIELDS.map((f) => `SUM(${f}) AS ${f}`).join(', ');
/** The time series carries taps and unlocks only: fewer sums, a faster minute series. */
export const SERIES_FIELDS = ['clicks', 'unlocks_started', 'unlocks_repeated', 'unlocks_expired', 'unknown_triggers', 'unlocks_completed'] as const;
export type SeriesCounters = Record<(typeof SERIES_FIELDS)[number], number>;
const seriesSums = SERIES_FIELDS.map((f) => `SUM(${f}) AS ${f}`).join(', ');
const columns = ROLLUP_FIELDS.join(', ');

export function zeroCounters(): Counters {
  return Object.fromEntries(ROLLUP_FIELDS.map((f) => [f, 0])) as Counters;
}

export type FeedStore = ReturnType<typeof createFeedStore>;

export function createFeedStore(db: Db) {
  const s = {
    ping: db.prepare<[], { ok: number }>('SELECT 1 AS ok'),
    queue: db.prepare<[], { depth: number; oldest: number | null }>(
      `SELECT COUNT(*) AS depth, MIN(created_at) AS oldest FROM outbox WHERE state IN ('pending', 'sending', 'unknown')`,
    ),
    lastWebhook: db.prepare<[], { received_at: number }>('SELECT received_at FROM inbox ORDER BY id DESC LIMIT 1'),
    // Exact totals for [a, d): whole hours [b, c) from rollup_hour, the ragged edges from rollup_minute.
    totalsByPack: db.prepare<[{ a: number; b: number; c: number; d: number }], Counters & { pack_id: string }>(
      `SELECT pack_id, ${sums} FROM (
         SELECT pack_id, ${columns} FROM rollup_minute WHERE minute >= @a AND minute < @b
         UNION ALL SELECT pack_id, ${columns} FROM rollup_hour WHERE hour >= @b AND hour < @c
         UNION ALL SELECT pack_id, ${columns} FROM rollup_minute WHERE minute >= @c AND minute < @d
       ) GROUP BY pack_id`,
    ),
    // See rollup_contact_gap in sql/004_feed.sql: a contact counts on its first day in the run.
    contactsDays: db.prepare<[{ first: number; end: number }], { n: number }>(
      `SELECT COALESCE(SUM(contacts), 0) AS n FROM rollup_contact_gap
       WHERE day >= @first AND day < @end AND gap_days > (day - @first) / ${DAY_MS}`,
    ),
    seriesMinute: db.prepare<[{ from: number; to: number; pack: string | null }], SeriesCounters & { t: number }>(
      `SELECT minute AS t, ${seriesSums} FROM rollup_minute WHERE minute >= @from AND minute < @to AND (@pack IS NULL OR pack_id = @pack)
       GROUP BY minute ORDER BY minute`,
    ),
    seriesHour: db.prepare<[{ from: number; to: number; pack: string | null }], SeriesCounters & { t: number }>(
      `SELECT hour AS t, ${seriesSums} FROM rollup_hour WHERE hour >= @from AND hour < @to AND (@pack IS NULL OR pack_id = @pack)
       GROUP BY hour ORDER BY hour`,
    ),
    seriesDay: db.prepare<[{ from: number; to: number; pack: string | null }], SeriesCounters & { t: number }>(
      `SELECT hour - hour % ${DAY_MS} AS t, ${seriesSums} FROM rollup_hour WHERE hour >= @from AND hour < @to AND (@pack IS NULL OR pack_id = @pack)
       GROUP BY 1 ORDER BY 1`,
    ),
    inbound: db.prepare<[string, number, number, number], InboundHistoryRow>(
      `SELECT m.id, m.wamid, m.type, m.sent_at AS at, m.received_at, i.body AS inbox_body
       FROM inbound_messages m JOIN inbox i ON i.id = m.inbox_id
       WHERE m.contact = ? AND (m.sent_at, m.id) < (?, ?) ORDER BY m.sent_at DESC, m.id DESC LIMIT ?`,
    ),
    outbound: db.prepare<[string, number, number, number], OutboundHistoryRow>(
      `SELECT o.id, o.kind, o.pack_id, o.position, o.payload, o.state, o.attempts, o.created_at AS at, o.accepted_at, o.wamid,
              COALESCE(ms.status, o.status) AS status, COALESCE(ms.status_at, o.status_at) AS status_at,
              COALESCE(ms.error_code, o.error_code) AS error_code, o.error_class
       FROM outbox o LEFT JOIN message_status ms ON ms.wamid = o.wamid
       WHERE o.contact = ? AND (o.created_at, o.id) < (?, ?) ORDER BY o.created_at DESC, o.id DESC LIMIT ?`,
    ),
    clickToSent: db.prepare<[number, number, number], { ms: number }>(
      `SELECT o.accepted_at - c.received_at AS ms FROM clicks c
       JOIN outbox o ON o.unlock_id = c.unlock_id AND o.position = 0 AND o.kind = 'pack'
       WHERE c.received_at >= ? AND c.received_at < ? AND c.result = 'started' AND o.accepted_at IS NOT NULL
       ORDER BY c.received_at DESC LIMIT ?`,
    ),
    clickToCompleted: db.prepare<[number, number, number], { ms: number }>(
      `SELECT completed_at - created_at AS ms FROM unlocks
       WHERE created_at >= ? AND created_at < ? AND completed_at IS NOT NULL ORDER BY created_at DESC LIMIT ?`,
    ),
    clickToDelivered: db.prepare<[number, number, number], { ms: number }>(
      `SELECT delivered_at - created_at AS ms FROM unlocks
       WHERE created_at >= ? AND created_at < ? AND delivered_at IS NOT NULL ORDER BY created_at DESC LIMIT ?`,
    ),
    graphCalls: db.prepare<[number, number, number], Omit<GraphCallStats, 'byErrorClass'>>(
      `SELECT COUNT(*) AS messages, COALESCE(SUM(attempts), 0) AS attempts,
              COALESCE(SUM(state = 'accepted'), 0) AS accepted, COALESCE(SUM(state = 'dead'), 0) AS dead,
              COALESCE(SUM(resent), 0) AS resent
       FROM (SELECT attempts, state, resent FROM outbox WHERE created_at >= ? AND created_at < ? ORDER BY created_at DESC LIMIT ?)`,
    ),
    graphErrors: db.prepare<[number, number, number], { error_class: string; messages: number }>(
      `SELECT error_class, COUNT(*) AS messages
       FROM (SELECT error_class FROM outbox WHERE created_at >= ? AND created_at < ? ORDER BY created_at DESC LIMIT ?)
       WHERE error_class IS NOT NULL GROUP BY error_class ORDER BY messages DESC`,
    ),
    headSeq: db.prepare<[], { seq: number | null }>('SELECT MAX(seq) AS seq FROM events'),
    events: db.prepare<[number, number, number], EventRecord>('SELECT seq, type, at, data FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?'),
    eventsOfTypes: db.prepare<[number, number, string, number], EventRecord>(
      `SELECT seq, type, at, data FROM events WHERE seq > ? AND seq <= ? AND type IN (SELECT value FROM json_each(?))
       ORDER BY seq LIMIT ?`,
    ),
  };

  /** Totals per pack ('' = taps matching no pack, and teasers) in [from, to), to the minute. */
  function totalsByPack(from: number, to: number): Map<string, Counters> {
    const a = Math.floor(from / MINUTE_MS) * MINUTE_MS;
    const b = Math.ceil(a / HOUR_MS) * HOUR_MS;
    const c = Math.floor(to / HOUR_MS) * HOUR_MS;
    const ranges = b < c ? [a, b, c, to] : [a, to, to, to];
    const result = new Map<string, Counters>();
    for (const row of s.totalsByPack.all({ a: ranges[0] ?? a, b: ranges[1] ?? to, c: ranges[2] ?? to, d: ranges[3] ?? to })) {
      const { pack_id, ...counters } = row;
      result.set(pack_id, counters);
    }
    return result;
  }

  return {
    ping: (): boolean => s.ping.get()?.ok === 1,
    queue: (): { depth: number; oldest: number | null } => s.queue.get() ?? { depth: 0, oldest: null },
    lastWebhookAt: (): number | null => s.lastWebhook.get()?.received_at ?? null,
    totalsByPack,
    /** Distinct contacts that tapped on the UTC days that [from, to) touches. */
    uniqueContacts(from: number, to: number): number {
      const first = Math.floor(from / DAY_MS) * DAY_MS;
      const end = Math.floor((to - 1) / DAY_MS) * DAY_MS + DAY_MS;
      return s.contactsDays.get({ first, end })?.n ?? 0;
    },
    /** Per-bucket counters for buckets starting in [from, to) (both aligned by the caller); gaps are absent. */
    series(bucket: Bucket, from: number, to: number, pack: string | null): Array<SeriesCounters & { t: number }> {
      const statement = bucket === 'minute' ? s.seriesMinute : bucket === 'hour' ? s.seriesHour : s.seriesDay;
      return statement.all({ from, to, pack });
    },
    /** Up to `limit` of each direction older than `before`, newest first. */
    history(contact: string, before: HistoryCursor | undefined, limit: number) {
      const inBound = before === undefined ? [MAX_ID, MAX_ID] : before.direction === 0 ? [before.at, before.id] : [before.at, MAX_ID];
      const outBound = before === undefined ? [MAX_ID, MAX_ID] : before.direction === 1 ? [before.at, before.id] : [before.at, 0];
      return {
        inbound: s.inbound.all(contact, inBound[0] ?? MAX_ID, inBound[1] ?? MAX_ID, limit),
        outbound: s.outbound.all(contact, outBound[0] ?? MAX_ID, outBound[1] ?? MAX_ID, limit),
      };
    },
    latencySamples(from: number, to: number, limit: number) {
      const pluck = (rows: Array<{ ms: number }>): number[] => rows.map((r) => r.ms);
      return {
        clickToSent: pluck(s.clickToSent.all(from, to, limit)),
        clickToCompleted: pluck(s.clickToCompleted.all(from, to, limit)),
        clickToDelivered: pluck(s.clickToDelivered.all(from, to, limit)),
      };
    },
    graphCalls(from: number, to: number, limit: number): GraphCallStats {
      const totals = s.graphCalls.get(from, to, limit) ?? { messages: 0, attempts: 0, accepted: 0, dead: 0, resent: 0 };
      return { ...totals, byErrorClass: s.graphErrors.all(from, to, limit) };
    },
    headSeq: (): number => s.headSeq.get()?.seq ?? 0,
    /**
     * Events with after < seq <= upto, oldest first, at most `limit`, and the seq to continue
     * after: the last one returned when the page is full, else as far as the scan reached.
     */
    events(after: number, upto: number, types: readonly string[] | undefined, limit: number): { events: EventRecord[]; next: number } {
      // A filter scans by seq: bound the scan so that one call never walks the whole log.
      const bound = types === undefined ? upto : Math.min(upto, after + EVENT_SCAN_LIMIT);
      const rows = types === undefined ? s.events.all(after, bound, limit) : s.eventsOfTypes.all(after, bound, JSON.stringify(types), limit);
      const last = rows[rows.length - 1];
      return { events: rows, next: rows.length >= limit && last !== undefined ? last.seq : Math.max(after, bound) };
    },
  };
}
