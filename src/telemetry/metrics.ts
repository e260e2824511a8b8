/**
 * The app's metrics, each defined once through the OpenTelemetry metrics API. Names follow the
 * contract in docs/metrics.md exactly as they appear on /metrics: the Prometheus exporter
 * appends `_total` to counters (so counters are named without it) and nothing else, so no
 * instrument sets a `unit` (the exporter would print an OpenMetrics `# UNIT` line that the
 * 0.0.4 text format does not define) and histogram names already end in their unit.
 *
 * Every label value passes through a fixed set: an unknown value becomes "other" (pack ids
 * become "unknown"), so no caller can put a phone number, wamid or contact id on /metrics
 * or grow the number of series without bound.
 */
import { metrics, type Attributes, type Histogram, type Meter } from '@opentelemetry/api';
import { SERVICE_VERSION } from './resource';
import { tallyCounter, type TallyCounter } from './tally-counter';

export const METER_NAME = 'click-to-unlock';

export const WEBHOOK_RESULTS = ['accepted', 'duplicate', 'bad_signature', 'too_large', 'unavailable', 'error'] as const;
export const SIGNATURE_REASONS = ['missing', 'malformed', 'mismatch', 'no_secret'] as const;
export const ITEM_KINDS = ['message', 'status', 'value_error', 'other', 'invalid'] as const;
export const ITEM_RESULTS = ['new', 'duplicate', 'dead_letter', 'kept'] as const;
export const UNLOCK_RESULTS = ['started', 'repeated', 'expired', 'unknown_trigger'] as const;
export const MESSAGE_STATUSES = ['sent', 'delivered', 'read', 'failed', 'other'] as const;
export const SEND_RESULTS = ['accepted', 'retry', 'dead_letter', 'unknown'] as const;
export const ERROR_CLASSES = [
  'none',
  'rate_limit',
  'pair_rate_limit',
  'server',
  'network',
  'timeout',
  'invalid_request',
  'recipient',
  'auth',
  'policy',
  'other',
] as const;
export const GRAPH_OUTCOMES = ['ok', 'error', 'timeout'] as const;
export const DEAD_LETTER_STAGES = ['webhook', 'send'] as const;
export const EXPORT_SIGNALS = ['traces', 'metrics'] as const;
export const UNKNOWN_PACK = 'unknown';
/** Pack ids are operator-chosen strings; a catalog larger than this is clamped so series stay bounded. */
export const MAX_PACKS = 200;

/** Bucket upper bounds (seconds, except batch size), chosen around each metric's expected range. */
export const BUCKETS = {
  ack: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  graph: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  clickToSent: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
  clickToDelivered: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
  batchSize: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
} as const;

export interface QueueSnapshot {
  readonly depth: number;
  readonly oldestAgeSeconds: number;
}

/**
 * Label sets are frozen and cached per value: the SDK hashes attributes on every record, and
 * building a fresh object per webhook request is avoidable work on the hot path.
 */
class LabelSet<const V extends readonly string[]> {
  private readonly cache = new Map<string, Attributes>();
  constructor(
    key: string,
    readonly values: V,
    private readonly fallback = 'other',
  ) {
    for (const value of values) this.cache.set(value, Object.freeze({ [key]: value }));
    if (!this.cache.has(fallback)) throw new Error(`label ${key}: fallback "${fallback}" is not one of its values`);
  }
  attrs(value: unknown): Attributes {
    return (typeof value === 'string' ? this.cache.get(value) : undefined) ?? (this.cache.get(this.fallback) as Attributes);
  }
  clamp(value: unknown): V[number] {
    return (typeof value === 'string' && this.cache.has(value) ? value : this.fallback) as V[number];
  }
}

/** Two label sets combined, each combination built once. */
function pairOf(a: LabelSet<readonly string[]>, b: LabelSet<readonly string[]>): (x: unknown, y: unknown) => Attributes {
  const cache = new Map<string, Attributes>();
  return (x, y) => {
    const ca = a.clamp(x);
    const cb = b.clamp(y);
    const key = `${ca}\u0000${cb}`;
    let attrs = cache.get(key);
    if (attrs === undefined) {
      attrs = Object.freeze({ ...a.attrs(ca), ...b.attrs(cb) });
      cache.set(key, attrs);
    }
    return attrs;
  };
}

export function createTelemetry(meter: Meter = metrics.getMeter(METER_NAME, SERVICE_VERSION)) {
  // The contract has no "other" webhook result: an outcome we did not plan for is an error.
  const webhookResult = new LabelSet('result', WEBHOOK_RESULTS, 'error');
  const reason = new LabelSet('reason', [...SIGNATURE_REASONS, 'other'] as const);
  const kind = new LabelSet('kind', ITEM_KINDS);
  const itemResult = new LabelSet('result', [...ITEM_RESULTS, 'other'] as const);
  const status = new LabelSet('status', MESSAGE_STATUSES);
  const outcome = new LabelSet('outcome', GRAPH_OUTCOMES, 'error');
  const sendResult = new LabelSet('result', [...SEND_RESULTS, 'other'] as const);
  const errorClass = new LabelSet('error_class', ERROR_CLASSES);
  const stage = new LabelSet('stage', [...DEAD_LETTER_STAGES, 'other'] as const);
  const unlockResult = new LabelSet('result', [...UNLOCK_RESULTS, 'other'] as const);
  const signal = new LabelSet('signal', [...EXPORT_SIGNALS, 'other'] as const);
  const itemAttrs = pairOf(kind, itemResult);
  const attemptAttrs = pairOf(sendResult, errorClass);
  const deadLetterAttrs = pairOf(stage, errorClass);
  const handshakeAttrs = { ok: Object.freeze({ result: 'ok' }), forbidden: Object.freeze({ result: 'forbidden' }) };

  let packIds = new Set<string>();
  const packAttrs = new Map<string, Attributes>([[UNKNOWN_PACK, Object.freeze({ pack: UNKNOWN_PACK })]]);
  const pack = (id: unknown): string => (typeof id === 'string' && packIds.has(id) ? id : UNKNOWN_PACK);
  const attrsOfPack = (id: unknown): Attributes => packAttrs.get(pack(id)) as Attributes;
  const unlockAttrs = new Map<string, Attributes>();
  const attrsOfUnlock = (id: unknown, result: unknown): Attributes => {
    const key = `${pack(id)}\u0000${unlockResult.clamp(result)}`;
    let attrs = unlockAttrs.get(key);
    if (attrs === undefined) {
      attrs = Object.freeze({ pack: pack(id), result: unlockResult.clamp(result) });
      unlockAttrs.set(key, attrs);
    }
    return attrs;
  };

  const counter = (name: string, description: string): TallyCounter => tallyCounter(meter, name, description);
  const histogram = (name: string, description: string, buckets: readonly number[]): Histogram =>
    meter.createHistogram(name, { description, advice: { explicitBucketBoundaries: [...buckets] } });

  const webhookRequests = counter('unlock_webhook_requests', 'POST /webhook answers by result');
  const ackDuration = histogram('unlock_webhook_ack_duration_seconds', 'POST /webhook time from first byte to answer, seconds', BUCKETS.ack);
  const signatureFailures = counter('unlock_webhook_signature_failures', 'POST /webhook requests rejected for their signature, by reason');
  const webhookItems = counter('unlock_webhook_items', 'Items (messages, statuses, changes) in verified POSTs, by kind and result');
  const handshakes = counter('unlock_webhook_handshakes', 'GET /webhook verification handshakes, by result');
  const clicks = counter('unlock_button_clicks', 'Taps on Unlock buttons, by pack');
  const unlocks = counter('unlock_unlocks', 'What a tap did, by pack and result');
  const messagesSent = counter('unlock_messages_sent', 'Outbound pack messages accepted by the Graph API, by pack');
  const messageStatuses = counter('unlock_message_statuses', 'New status webhooks recorded for outbound messages, by status');
  const sendAttempts = counter('unlock_send_attempts', 'Graph API send attempts, by result and error class');
  const graphDuration = histogram('unlock_graph_request_duration_seconds', 'Graph API call latency, seconds', BUCKETS.graph);
  const deadLetters = counter('unlock_dead_letters', 'Webhook items and outbound messages given up on, by stage and error class');
  const possibleDuplicates = counter('unlock_possible_duplicate_sends', 'Ambiguous sends resent once (the contact may get the message twice)');
  const clickToSent = histogram('unlock_click_to_sent_seconds', 'Time from a tap received to the first message of its pack accepted, seconds', BUCKETS.clickToSent);
  const clickToDelivered = histogram(
    'unlock_click_to_delivered_seconds',
    'Time from a tap received to the last message of its pack delivered, seconds',
    BUCKETS.clickToDelivered,
  );
  const commitBatchSize = histogram('unlock_db_commit_batch_size', 'Webhook requests per group commit', BUCKETS.batchSize);
  const exportFailures = counter('unlock_telemetry_export_failures', 'Telemetry exports that failed and were dropped, by signal');

  // Gauges read their values at scrape time from whatever the lead registers; until then they report nothing.
  let queueSource: (() => QueueSnapshot) | undefined;
  let clientsSource: (() => number) | undefined;
  let writable: number | undefined;
  const queueDepth = meter.createObservableGauge('unlock_sender_queue_depth', { description: 'Outbox rows not yet accepted (pending, retry, unknown)' });
  const oldestAge = meter.createObservableGauge('unlock_sender_oldest_age_seconds', { description: 'Age of the oldest unsent outbox row, seconds' });
  const wsClients = meter.createObservableGauge('unlock_websocket_clients', { description: 'Connected WebSocket feed clients' });
  const dbWritable = meter.createObservableGauge('unlock_database_writable', { description: '1 when the last commit attempt succeeded, else 0' });
  meter.addBatchObservableCallback(
    (result) => {
      if (queueSource !== undefined) {
        const snapshot = safely(queueSource);
        if (snapshot !== undefined) {
          result.observe(queueDepth, finiteOr0(snapshot.depth));
          result.observe(oldestAge, finiteOr0(snapshot.oldestAgeSeconds));
        }
      }
      if (clientsSource !== undefined) {
        const n = safely(clientsSource);
        if (n !== undefined) result.observe(wsClients, finiteOr0(n));
      }
      if (writable !== undefined) result.observe(dbWritable, writable);
    },
    [queueDepth, oldestAge, wsClients, dbWritable],
  );

  // Known label values start at 0 so increase() and rate() see the first event, not just the second.
  for (const r of WEBHOOK_RESULTS) webhookRequests.add(0, webhookResult.attrs(r));
  for (const r of SIGNATURE_REASONS) signatureFailures.add(0, reason.attrs(r));
  for (const r of ['ok', 'forbidden'] as const) handshakes.add(0, handshakeAttrs[r]);
  for (const s of MESSAGE_STATUSES) messageStatuses.add(0, status.attrs(s));
  for (const s of EXPORT_SIGNALS) exportFailures.add(0, signal.attrs(s));
  possibleDuplicates.add(0);

  const telemetry = {
    /** The catalog's pack ids; any other pack label becomes "unknown". Call once at start (and on reload). */
    setPackIds(ids: Iterable<string>): void {
      const next = new Set<string>();
      for (const id of ids) if (typeof id === 'string' && next.size < MAX_PACKS && id !== UNKNOWN_PACK) next.add(id);
      packIds = next;
      for (const id of [...next, UNKNOWN_PACK]) {
        if (!packAttrs.has(id)) packAttrs.set(id, Object.freeze({ pack: id }));
        clicks.add(0, attrsOfPack(id));
        messagesSent.add(0, attrsOfPack(id));
      }
    },
    webhookRequest(result: string, seconds: number): void {
      const attrs = webhookResult.attrs(result);
      webhookRequests.add(1, attrs);
      if (seconds >= 0 && Number.isFinite(seconds)) ackDuration.record(seconds, attrs);
    },
    signatureFailure(why: string): void {
      signatureFailures.add(1, reason.attrs(why));
    },
    webhookItem(itemKind: string, result: string): void {
      webhookItems.add(1, itemAttrs(itemKind, result));
    },
    handshake(ok: boolean): void {
      handshakes.add(1, ok ? handshakeAttrs.ok : handshakeAttrs.forbidden);
    },
    click(packId: string): void {
      clicks.add(1, attrsOfPack(packId));
    },
    unlock(packId: string, result: string): void {
      unlocks.add(1, attrsOfUnlock(packId, result));
    },
    messageSent(packId: string): void {
      messagesSent.add(1, attrsOfPack(packId));
    },
    messageStatus(value: string): void {
      messageStatuses.add(1, status.attrs(value));
    },
    sendAttempt(result: string, error: string): void {
      sendAttempts.add(1, attemptAttrs(result, error));
    },
    graphRequest(value: string, seconds: number): void {
      if (seconds >= 0 && Number.isFinite(seconds)) graphDuration.record(seconds, outcome.attrs(value));
    },
    deadLetter(where: string, error: string): void {
      deadLetters.add(1, deadLetterAttrs(where, error));
    },
    possibleDuplicate(): void {
      possibleDuplicates.add(1);
    },
    clickToSent(seconds: number): void {
      if (seconds >= 0 && Number.isFinite(seconds)) clickToSent.record(seconds);
    },
    clickToDelivered(seconds: number): void {
      if (seconds >= 0 && Number.isFinite(seconds)) clickToDelivered.record(seconds);
    },
    databaseWritable(ok: boolean): void {
      writable = ok ? 1 : 0;
    },
    commitBatch(size: number): void {
      if (size >= 0 && Number.isFinite(size)) commitBatchSize.record(size);
    },
    exportFailure(which: 'traces' | 'metrics'): void {
      exportFailures.add(1, signal.attrs(which));
    },
    /** Read at scrape time. A throwing callback skips the queue gauges for that scrape (the SDK keeps serving their last value). */
    observeQueue(source: () => QueueSnapshot): void {
      queueSource = source;
    },
    observeWebSocketClients(source: () => number): void {
      clientsSource = source;
    },
  };
  telemetry.setPackIds([]);
  return telemetry;
}

export type Telemetry = ReturnType<typeof createTelemetry>;

function safely<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

function finiteOr0(n: number): number {
  return typeof n === 'number' && Number.isFinite(n) ? n : 0;
}
