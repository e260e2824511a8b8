/**
 * One schema per endpoint's query string: it validates, converts, and gives the handler its
 * TypeScript type. Unknown parameters are refused (a typo should not silently mean "default").
 */
import { z } from 'zod';
import { DAY, HOUR } from '../duration';
import { ProblemError, problem } from './problems';

const LATEST_MS = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
const ISO_8601 = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/;

/** A time as epoch milliseconds or ISO 8601 (a date alone is midnight UTC). */
export const time = z.string().transform((text, ctx) => {
  const ms = /^\d{1,15}$/.test(text) ? Number(text) : ISO_8601.test(text) ? Date.parse(text) : Number.NaN;
  if (!Number.isFinite(ms) || ms < 0 || ms > LATEST_MS) {
    ctx.addIssue({ code: 'custom', message: 'expected epoch milliseconds or an ISO 8601 time like 2025-01-31T12:00:00Z' });
    return z.NEVER;
  }
  return ms;
});

const integer = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,16}$/, 'expected a non-negative integer')
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

export const PACK_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const packId = z.string().regex(PACK_ID, 'expected a pack id (a-z, 0-9, _ and -)');
export const EVENT_TYPE = /^[a-z][a-z_]{0,31}(\.[a-z][a-z_]{0,31}){0,3}$/;
const types = z
  .string()
  .transform((text) => text.split(','))
  .pipe(z.array(z.string().regex(EVENT_TYPE, 'expected event types like click,message.status')).min(1).max(20));

const window = { from: time.optional(), to: time.optional() };

export const summaryQuery = z.strictObject({ ...window, pack: packId.optional() });
export const clicksQuery = z.strictObject({ ...window, bucket: z.enum(['minute', 'hour', 'day']).default('hour'), pack: packId.optional() });
export const performanceQuery = z.strictObject(window);
export const packsQuery = z.strictObject(window);
export const historyQuery = z.strictObject({
  cursor: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'expected a cursor from a previous page').optional(),
  limit: integer(1, 200).default(50),
});
export const eventsQuery = z.strictObject({ after: integer(0, Number.MAX_SAFE_INTEGER).default(0), limit: integer(1, 1000).default(100), types: types.optional() });
export const wsQuery = z.strictObject({
  after: integer(0, Number.MAX_SAFE_INTEGER).optional(),
  types: types.optional(),
  ticket: z.string().max(200).optional(),
});
export const contactParam = z.string().regex(/^\d{5,20}$/, 'expected the contact\'s WhatsApp id (5-20 digits)');
export const historyParams = z.strictObject({ contact: contactParam });

export type SummaryQuery = z.output<typeof summaryQuery>;
export type ClicksQuery = z.output<typeof clicksQuery>;
export type HistoryQuery = z.output<typeof historyQuery>;
export type EventsQuery = z.output<typeof eventsQuery>;
export type WsQuery = z.output<typeof wsQuery>;

/** Parses or throws the 400 problem naming each bad parameter. */
export function parseQuery<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const errors = result.error.issues.map((issue) => ({
    path: issue.path.length > 0 ? issue.path.map(String).join('.') : (unrecognised(issue) ?? '(query)'),
    message: issue.message,
  }));
  throw new ProblemError(problem('bad_request', 'Some query parameters are not valid; see errors.', errors));
}

function unrecognised(issue: z.core.$ZodIssue): string | undefined {
  return issue.code === 'unrecognized_keys' ? issue.keys.slice(0, 5).join(',').slice(0, 100) : undefined;
}

export const DEFAULT_WINDOW_MS = 24 * HOUR;
export const MAX_WINDOW_MS = 400 * DAY;

export interface Window {
  readonly from: number;
  readonly to: number;
}

/** from/to with their defaults (the last 24 h, or 24 h from `from`); refuses empty, inverted and huge windows. */
export function resolveWindow(query: { from?: number | undefined; to?: number | undefined }, now: number): Window {
  const to = query.to ?? (query.from !== undefined ? query.from + DEFAULT_WINDOW_MS : now);
  const from = query.from ?? to - DEFAULT_WINDOW_MS;
  if (from >= to) throw new ProblemError(problem('bad_request', '`from` must be before `to`.', [{ path: 'from', message: 'must be before to' }]));
  if (to - from > MAX_WINDOW_MS) throw new ProblemError(problem('bad_request', 'The window may span at most 400 days.', [{ path: 'from', message: 'window too long' }]));
  return { from, to };
}
