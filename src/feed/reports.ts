/**
 * The feed's answers, assembled from the store's plain rows: windows, buckets, funnels,
 * percentiles, history pages. No HTTP here; the routes validate and call these.
 */
import type { Bucket, Counters, FeedStore, HistoryCursor, InboundHistoryRow, OutboundHistoryRow } from '../store/feed-store';
import { zeroCounters } from '../store/feed-store';
import { messageInBody } from '../meta-payload';
import { ProblemError, problem } from './problems';
import type { Window } from './queries';
import type { Clicks, Distribution, History, HistoryItem, Packs, Performance, Summary } from './responses';

export interface PackInfo {
  readonly id: string;
  readonly trigger: string;
  readonly title?: string | undefined;
  readonly messages: readonly unknown[];
}

const BUCKET_MS: Readonly<Record<Bucket, number>> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };
export const MAX_POINTS = 5000;
const ZERO_SERIES = { clicks: 0, unlocks_started: 0, unlocks_repeated: 0, unlocks_expired: 0, unknown_triggers: 0, unlocks_completed: 0 } as const;
export const SAMPLE_LIMIT = 20_000;

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));
const ratio = (part: number, whole: number): number | null => (whole > 0 ? part / whole : null);

function addInto(target: Counters, source: Counters): void {
  for (const key of Object.keys(target) as Array<keyof Counters>) target[key] += source[key] ?? 0;
}

export function summary(store: FeedStore, window: Window): Summary {
  const total = zeroCounters();
  for (const counters of store.totalsByPack(window.from, window.to).values()) addInto(total, counters);
  return {
    from: iso(window.from),
    to: iso(window.to),
    clicks: total.clicks,
    unique_contacts: store.uniqueContacts(window.from, window.to),
    unlocks_started: total.unlocks_started,
    unlocks_repeated: total.unlocks_repeated,
    unlocks_expired: total.unlocks_expired,
    unknown_triggers: total.unknown_triggers,
    unlocks_completed: total.unlocks_completed,
    messages_sent: total.messages_sent,
    messages_delivered: total.messages_delivered,
    messages_read: total.messages_read,
    messages_failed: total.messages_failed,
    delivery_success_rate: ratio(total.messages_delivered, total.messages_delivered + total.messages_failed),
  };
}

/** Buckets cover whole UTC minutes/hours/days: `from` is rounded down and `to` up. */
export function clicks(store: FeedStore, window: Window, bucket: Bucket, pack: string | undefined): Clicks {
  const size = BUCKET_MS[bucket];
  const start = Math.floor(window.from / size) * size;
  const end = Math.ceil(window.to / size) * size;
  const points = (end - start) / size;
  if (points > MAX_POINTS) {
    throw new ProblemError(
      problem('bad_request', `That window has ${points} ${bucket} buckets; at most ${MAX_POINTS}. Use a larger bucket or a shorter window.`, [
        { path: 'bucket', message: 'too many buckets for this window' },
      ]),
    );
  }
  const rows = new Map(store.series(bucket, start, end, pack ?? null).map((row) => [row.t, row]));
  const out: Clicks['points'] = [];
  for (let t = start; t < end; t += size) {
    const row = rows.get(t) ?? ZERO_SERIES;
    out.push({
      t: iso(t),
      clicks: row.clicks,
      unlocks_started: row.unlocks_started,
      unlocks_repeated: row.unlocks_repeated,
      unlocks_expired: row.unlocks_expired,
      unknown_triggers: row.unknown_triggers,
      unlocks_completed: row.unlocks_completed,
    });
  }
  return { from: iso(start), to: iso(end), bucket, pack: pack ?? null, points: out };
}

export function packs(store: FeedStore, window: Window, catalog: readonly PackInfo[]): Packs {
  const totals = store.totalsByPack(window.from, window.to);
  const entry = (id: string, info: PackInfo | undefined): Packs['packs'][number] => {
    const c = totals.get(id) ?? zeroCounters();
    return {
      id,
      in_catalog: info !== undefined,
      trigger: info?.trigger ?? null,
      title: info?.title ?? null,
      messages: info?.messages.length ?? null,
      funnel: {
        clicks: c.clicks,
        unlocks_started: c.unlocks_started,
        unlocks_repeated: c.unlocks_repeated,
        unlocks_expired: c.unlocks_expired,
        unlocks_completed: c.unlocks_completed,
        messages_sent: c.messages_sent,
        messages_delivered: c.messages_delivered,
        messages_read: c.messages_read,
        messages_failed: c.messages_failed,
      },
      rates: {
        unlock_rate: ratio(c.unlocks_started, c.clicks),
        delivery_rate: ratio(c.messages_delivered, c.messages_sent),
        read_rate: ratio(c.messages_read, c.messages_delivered),
      },
    };
  };
  const known = new Set(catalog.map((p) => p.id));
  const retired = [...totals.keys()].filter((id) => id !== '' && !known.has(id)).sort();
  let unknownTriggers = 0;
  for (const counters of totals.values()) unknownTriggers += counters.unknown_triggers;
  return {
    from: iso(window.from),
    to: iso(window.to),
    packs: [...catalog.map((p) => entry(p.id, p)), ...retired.map((id) => entry(id, undefined))],
    unknown_triggers: unknownTriggers,
  };
}

/** Nearest-rank percentiles of raw samples. */
export function distribution(source: string, samples: number[], limit: number): Distribution {
  const sorted = samples.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  const rank = (p: number): number | null => (sorted.length === 0 ? null : (sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] ?? null));
  return {
    source,
    count: sorted.length,
    truncated: samples.length >= limit,
    p50_ms: rank(0.5),
    p90_ms: rank(0.9),
    p99_ms: rank(0.99),
    max_ms: sorted.length === 0 ? null : (sorted[sorted.length - 1] ?? null),
  };
}

export function performance(store: FeedStore, window: Window): Performance {
  const samples = store.latencySamples(window.from, window.to, SAMPLE_LIMIT);
  const calls = store.graphCalls(window.from, window.to, SAMPLE_LIMIT);
  return {
    from: iso(window.from),
    to: iso(window.to),
    sample_limit: SAMPLE_LIMIT,
    latencies: {
      webhook_ack: distribution('not stored in the database; see the Prometheus histogram unlock_webhook_ack_seconds', [], SAMPLE_LIMIT),
      click_to_sent: distribution('tap received → first pack message accepted by Graph API (clicks.received_at → outbox.accepted_at of position 0), taps received in the window', samples.clickToSent, SAMPLE_LIMIT),
      click_to_completed: distribution('tap received → every pack message accepted (unlocks.created_at → completed_at), unlocks started in the window', samples.clickToCompleted, SAMPLE_LIMIT),
      click_to_delivered: distribution('tap received → every pack message delivered or read (unlocks.created_at → delivered_at), unlocks started in the window', samples.clickToDelivered, SAMPLE_LIMIT),
    },
    graph_api: {
      source: 'outbox rows queued in the window: attempts made, final state, and the class of each message\'s last error',
      messages: calls.messages,
      attempts: calls.attempts,
      accepted: calls.accepted,
      dead: calls.dead,
      resent: calls.resent,
      failed_attempt_rate: ratio(Math.max(0, calls.attempts - calls.accepted), calls.attempts),
      dead_rate: ratio(calls.dead, calls.messages),
      by_error_class: calls.byErrorClass.map((r) => ({ error_class: r.error_class, messages: r.messages })),
      truncated: calls.messages >= SAMPLE_LIMIT,
    },
  };
}

export function encodeCursor(cursor: HistoryCursor): string {
  return Buffer.from(`${cursor.at}.${cursor.direction}.${cursor.id}`, 'utf8').toString('base64url');
}

export function decodeCursor(text: string): HistoryCursor {
  const match = /^(\d{1,16})\.([01])\.(\d{1,16})$/.exec(Buffer.from(text, 'base64url').toString('utf8'));
  if (match === null) throw new ProblemError(problem('bad_request', 'The cursor is not one this API gave out.', [{ path: 'cursor', message: 'invalid cursor' }]));
  return { at: Number(match[1]), direction: match[2] === '1' ? 1 : 0, id: Number(match[3]) };
}

function jsonObject(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : { value };
  } catch {
    return {};
  }
}

function inboundItem(row: InboundHistoryRow): HistoryItem {
  return { direction: 'inbound', id: `in:${row.id}`, wamid: row.wamid, type: row.type, at: iso(row.at), received_at: iso(row.received_at), message: messageInBody(row.inbox_body, row.wamid) ?? {} };
}

function outboundItem(row: OutboundHistoryRow): HistoryItem {
  return {
    direction: 'outbound',
    id: `out:${row.id}`,
    kind: row.kind === 'teaser' ? 'teaser' : 'pack',
    pack_id: row.pack_id,
    position: row.position,
    at: iso(row.at),
    state: row.state as Extract<HistoryItem, { direction: 'outbound' }>['state'],
    attempts: row.attempts,
    accepted_at: isoOrNull(row.accepted_at),
    wamid: row.wamid,
    status: row.status,
    status_at: isoOrNull(row.status_at),
    error_code: row.error_code,
    error_class: row.error_class,
    message: jsonObject(row.payload),
  };
}

/** One page of a contact's history, newest first, merging inbound and outbound by time. */
export function history(store: FeedStore, contact: string, cursor: string | undefined, limit: number): History {
  const before = cursor === undefined ? undefined : decodeCursor(cursor);
  const { inbound, outbound } = store.history(contact, before, limit + 1);
  type Keyed = { at: number; direction: 0 | 1; id: number; item: () => HistoryItem };
  const merged: Keyed[] = [
    ...inbound.map((r): Keyed => ({ at: r.at, direction: 0, id: r.id, item: () => inboundItem(r) })),
    ...outbound.map((r): Keyed => ({ at: r.at, direction: 1, id: r.id, item: () => outboundItem(r) })),
  ].sort((a, b) => b.at - a.at || b.direction - a.direction || b.id - a.id);
  const page = merged.slice(0, limit);
  const last = page[page.length - 1];
  return {
    contact,
    items: page.map((k) => k.item()),
    next_cursor: merged.length > limit && last !== undefined ? encodeCursor({ at: last.at, direction: last.direction, id: last.id }) : null,
  };
}
