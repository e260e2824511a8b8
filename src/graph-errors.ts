/**
 * Graph API failures, classified by `error.code` (not HTTP status) in one table used for
 * synchronous send errors and for `failed` status webhooks alike, and the one backoff formula.
 *
 * Backoff: exponential with full jitter, delay = random × min(CAP, BASE × 2^(attempt−1)),
 * never less than a Retry-After the server gave. With BASE 1 s and CAP 5 min the ceilings are:
 *   attempt   1    2    3    4     5     6     7      8      9     10+
 *   ceiling   1s   2s   4s   8s    16s   32s   64s    128s   256s  300s
 * 131056 (pair rate limit) backs off that contact only, by 4^n seconds for its n-th hit.
 */
import { SECOND, MINUTE } from './duration';

export type ErrorClass =
  | 'rate_limit'
  | 'pair_rate_limit'
  | 'server'
  | 'network'
  | 'timeout'
  | 'invalid_request'
  | 'recipient'
  | 'auth'
  | 'policy'
  | 'other';

export type Disposition = 'retry' | 'pair_backoff' | 'permanent';

export interface Classification {
  readonly errorClass: ErrorClass;
  readonly disposition: Disposition;
  /** Operators should be paged (auth failures: the token expired or lost permission). */
  readonly alert: boolean;
  readonly meaning: string;
}

const c = (errorClass: ErrorClass, disposition: Disposition, meaning: string, alert = false): Classification => ({ errorClass, disposition, meaning, alert });

/** The table. Codes from the WhatsApp Cloud API error reference. */
export const GRAPH_ERRORS: ReadonlyMap<number, Classification> = new Map([
  [4, c('rate_limit', 'retry', 'app-level API call limit reached')],
  [80007, c('rate_limit', 'retry', 'WhatsApp Business Account rate limit reached')],
  [130429, c('rate_limit', 'retry', 'Cloud API throughput limit reached')],
  [131000, c('server', 'retry', 'something went wrong at Meta')],
  [131016, c('server', 'retry', 'service temporarily unavailable')],
  [131057, c('server', 'retry', 'business account is in maintenance mode')],
  [131056, c('pair_rate_limit', 'pair_backoff', 'too many messages to the same contact in a short time')],
  [131047, c('recipient', 'permanent', 'more than 24 hours since the contact last wrote (re-engagement needed)')],
  [131026, c('recipient', 'permanent', 'message undeliverable to this contact')],
  [131050, c('recipient', 'permanent', 'the contact stopped marketing messages')],
  [131049, c('policy', 'permanent', 'not delivered to keep the ecosystem healthy (per-user marketing limit)')],
  [131048, c('policy', 'permanent', 'spam rate limit hit')],
  [368, c('policy', 'permanent', 'temporarily blocked for policy violations')],
  [100, c('invalid_request', 'permanent', 'invalid parameter')],
  [131008, c('invalid_request', 'permanent', 'required parameter is missing')],
  [131009, c('invalid_request', 'permanent', 'parameter value is not valid')],
  [131051, c('invalid_request', 'permanent', 'unsupported message type')],
  [131052, c('invalid_request', 'permanent', 'media download error')],
  [131053, c('invalid_request', 'permanent', 'media upload error')],
  [190, c('auth', 'permanent', 'access token expired or invalid', true)],
  [0, c('auth', 'permanent', 'authentication failed', true)],
  [3, c('auth', 'permanent', 'app lacks the capability or permission', true)],
  [10, c('auth', 'permanent', 'permission denied', true)],
  [200, c('auth', 'permanent', 'permission not granted or removed', true)],
  [131005, c('auth', 'permanent', 'access denied', true)],
  [131031, c('auth', 'permanent', 'business account locked', true)],
]);

/** A code from the response (or a failed status), the HTTP status when there was a response. */
export function classifyGraphError(code: number | undefined, httpStatus?: number): Classification {
  if (code !== undefined) {
    const known = GRAPH_ERRORS.get(code);
    if (known !== undefined) return known;
    if (code >= 200 && code <= 299) return c('auth', 'permanent', 'permission error', true);
  }
  if (httpStatus === 429) return c('rate_limit', 'retry', 'HTTP 429 Too Many Requests');
  if (httpStatus !== undefined && httpStatus >= 500) return c('server', 'retry', `HTTP ${httpStatus}`);
  if (httpStatus === 401 || httpStatus === 403) return c('auth', 'permanent', `HTTP ${httpStatus}`, true);
  return c('other', 'permanent', code !== undefined ? `unclassified Graph API error ${code}` : `unexpected HTTP ${httpStatus ?? '?'}`);
}

export const NETWORK_FAILURE: Classification = c('network', 'retry', 'connection failed before the request was sent');
export const AMBIGUOUS_TIMEOUT: Classification = c('timeout', 'retry', 'no answer after the request was sent (maybe delivered)');

export const BACKOFF_BASE_MS = 1 * SECOND;
export const BACKOFF_CAP_MS = 5 * MINUTE;

/** Delay before retry number `attempt` (1 = the first retry). `random` in [0, 1). */
export function retryDelayMs(attempt: number, random: number, retryAfterMs?: number): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1));
  const jittered = Math.floor(random * ceiling);
  return Math.max(jittered, retryAfterMs ?? 0);
}

/** 131056: 4^n seconds for the contact's n-th pair-rate-limit answer on this message. */
export function pairBackoffMs(hits: number): number {
  return Math.min(4 ** Math.max(1, hits) * SECOND, 60 * MINUTE);
}

/** Retry-After as seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(header: string | undefined, now: number): number | undefined {
  if (header === undefined || header === '') return undefined;
  if (/^\d+$/.test(header.trim())) return Math.min(Number(header.trim()) * SECOND, 60 * MINUTE);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.min(at - now, 60 * MINUTE));
}
