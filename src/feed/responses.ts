/**
 * The shapes of the feed's answers. They give the handlers their TypeScript types and the
 * OpenAPI document its schemas; the tests validate real answers against that document.
 */
import { z } from 'zod';

const isoTime = z.iso.datetime().describe('ISO 8601 time, UTC');
const count = z.number().int().min(0);
const rate = z.number().min(0).max(1).nullable().describe('a fraction from 0 to 1; null when the denominator is 0');

export const health = z.strictObject({
  status: z.enum(['ok', 'unavailable']),
  version: z.string(),
  time: isoTime,
  database: z.strictObject({
    ok: z.boolean().describe('the database answers reads'),
    writable: z.boolean().nullable().describe('the last commit succeeded; null in a feed-only process, which never writes'),
  }),
  sender: z
    .strictObject({
      queue_depth: count.describe('outbox messages pending, being sent, or in doubt'),
      oldest_pending_age_seconds: z.number().min(0).nullable().describe('age of the oldest of them; null when the queue is empty'),
    })
    .nullable(),
  webhook: z
    .strictObject({
      last_received_at: isoTime.nullable().describe('when the last signed webhook POST was stored'),
      seconds_since_last: z.number().min(0).nullable(),
    })
    .nullable(),
});

const windowFields = { from: isoTime, to: isoTime };

export const summary = z.strictObject({
  ...windowFields,
  clicks: count.describe('Unlock-button taps received'),
  unique_contacts: count.describe('distinct contacts that tapped, over the UTC days the window touches'),
  unlocks_started: count.describe('taps that started a pack'),
  unlocks_repeated: count.describe('taps on a pack the contact had already unlocked'),
  unlocks_expired: count.describe('taps older than UNLOCK_MAX_TAP_AGE, recorded but not delivered'),
  unknown_triggers: count.describe('taps whose trigger matches no pack'),
  unlocks_completed: count.describe('unlocks whose every message Graph API accepted'),
  messages_sent: count.describe('pack messages accepted by Graph API'),
  messages_delivered: count.describe('messages that first reached delivered (or read)'),
  messages_read: count,
  messages_failed: count.describe('messages given up on, counted once each'),
  delivery_success_rate: rate.describe('messages_delivered / (messages_delivered + messages_failed)'),
});

const clickPoint = z.strictObject({
  t: isoTime.describe('start of the bucket'),
  clicks: count,
  unlocks_started: count,
  unlocks_repeated: count,
  unlocks_expired: count,
  unknown_triggers: count,
  unlocks_completed: count,
});

export const clicks = z.strictObject({
  ...windowFields,
  bucket: z.enum(['minute', 'hour', 'day']),
  pack: z.string().nullable(),
  points: z.array(clickPoint).describe('one point per bucket, oldest first, zeros included'),
});

const inboundItem = z.strictObject({
  direction: z.literal('inbound'),
  id: z.string(),
  wamid: z.string(),
  type: z.string(),
  at: isoTime.describe("Meta's timestamp of the message"),
  received_at: isoTime,
  message: z.record(z.string(), z.unknown()).describe('the message object as Meta sent it'),
});

const outboundItem = z.strictObject({
  direction: z.literal('outbound'),
  id: z.string(),
  kind: z.enum(['pack', 'teaser']),
  pack_id: z.string().nullable(),
  position: z.number().int().min(0),
  at: isoTime.describe('when the message was queued'),
  state: z.enum(['pending', 'sending', 'unknown', 'accepted', 'dead']),
  attempts: count,
  accepted_at: isoTime.nullable(),
  wamid: z.string().nullable(),
  status: z.string().nullable().describe("Meta's latest status: sent, delivered, read or failed"),
  status_at: isoTime.nullable(),
  error_code: z.number().int().nullable(),
  error_class: z.string().nullable(),
  message: z.record(z.string(), z.unknown()).describe('the Graph API message object'),
});

export const history = z.strictObject({
  contact: z.string(),
  items: z.array(z.discriminatedUnion('direction', [inboundItem, outboundItem])).describe('newest first'),
  next_cursor: z.string().nullable().describe('pass as `cursor` for older items; null on the last page'),
});

const distribution = z.strictObject({
  source: z.string().describe('what the figure measures and where it comes from'),
  count,
  truncated: z.boolean().describe('true when only the newest `sample_limit` rows of the window were used'),
  p50_ms: z.number().nullable(),
  p90_ms: z.number().nullable(),
  p99_ms: z.number().nullable(),
  max_ms: z.number().nullable(),
});

export const performance = z.strictObject({
  ...windowFields,
  sample_limit: count,
  latencies: z.strictObject({
    webhook_ack: distribution,
    click_to_sent: distribution,
    click_to_completed: distribution,
    click_to_delivered: distribution,
  }),
  graph_api: z.strictObject({
    source: z.string(),
    messages: count,
    attempts: count,
    accepted: count,
    dead: count,
    resent: count,
    failed_attempt_rate: rate.describe('(attempts − accepted) / attempts'),
    dead_rate: rate.describe('dead / messages'),
    by_error_class: z.array(z.strictObject({ error_class: z.string(), messages: count })).describe("messages whose last error had this class"),
    truncated: z.boolean(),
  }),
});

export const event = z.strictObject({
  seq: z.number().int().min(1),
  type: z.string(),
  at: isoTime,
  data: z.record(z.string(), z.unknown()),
});

export const events = z.strictObject({
  events: z.array(event),
  next_after: count.describe('pass as `after` to continue; always advances while has_more'),
  head: count.describe('the newest seq in the log'),
  has_more: z.boolean(),
});

const funnel = z.strictObject({
  clicks: count,
  unlocks_started: count,
  unlocks_repeated: count,
  unlocks_expired: count,
  unlocks_completed: count,
  messages_sent: count,
  messages_delivered: count,
  messages_read: count,
  messages_failed: count,
});

export const packs = z.strictObject({
  ...windowFields,
  packs: z.array(
    z.strictObject({
      id: z.string(),
      in_catalog: z.boolean().describe('false for a pack that has activity in the window but is no longer in the catalog'),
      trigger: z.string().nullable(),
      title: z.string().nullable(),
      messages: count.nullable().describe('messages in the pack'),
      funnel,
      rates: z.strictObject({
        unlock_rate: rate.describe('unlocks_started / clicks'),
        delivery_rate: rate.describe('messages_delivered / messages_sent'),
        read_rate: rate.describe('messages_read / messages_delivered'),
      }),
    }),
  ),
  unknown_triggers: count.describe('taps whose trigger matched no pack'),
});

export const wsTicket = z.strictObject({
  ticket: z.string(),
  expires_at: isoTime,
  expires_in_seconds: count,
});

export const problemBody = z.strictObject({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string().optional(),
  errors: z.array(z.strictObject({ path: z.string(), message: z.string() })).optional(),
});

export type Health = z.infer<typeof health>;
export type Summary = z.infer<typeof summary>;
export type Clicks = z.infer<typeof clicks>;
export type History = z.infer<typeof history>;
export type HistoryItem = History['items'][number];
export type Performance = z.infer<typeof performance>;
export type Distribution = z.infer<typeof distribution>;
export type Events = z.infer<typeof events>;
export type Packs = z.infer<typeof packs>;
export type WsTicket = z.infer<typeof wsTicket>;
