/**
 * The page's REST client: the API key as a Bearer header on same-origin requests, a bounded
 * wait per request, and the feed's problem answers turned into errors the page can act on
 * (sign in again on 401, back off on 429).
 */
import type { Clicks, Events, Health, Packs, Summary, WsTicket } from '../feed/responses';

export type { Clicks, Events, Health, Packs, Summary, WsTicket };

export interface FeedEvent {
  readonly seq: number;
  readonly type: string;
  readonly at: string;
  readonly data: Record<string, unknown>;
}

/** The key is missing, wrong or revoked: the page must ask for another. */
export class Unauthorized extends Error {}

/** The per-key rate limit; `retryAfterMs` comes from Retry-After. */
export class RateLimited extends Error {
  constructor(readonly retryAfterMs: number) {
    super('rate limited');
  }
}

const REQUEST_TIMEOUT_MS = 10_000;

const range = (fromMs: number, toMs: number): string => `from=${Math.floor(fromMs)}&to=${Math.ceil(toMs)}`;

export class ApiClient {
  constructor(private readonly key: string) {}

  // A window needs both ends: given `from` alone, the API's `to` is `from` + 24 h.
  summary(fromMs: number, toMs: number): Promise<Summary> {
    return this.get(`/api/summary?${range(fromMs, toMs)}`);
  }

  clicksPerMinute(fromMs: number, toMs: number): Promise<Clicks> {
    return this.get(`/api/clicks?bucket=minute&${range(fromMs, toMs)}`);
  }

  packs(fromMs: number, toMs: number): Promise<Packs> {
    return this.get(`/api/packs?${range(fromMs, toMs)}`);
  }

  events(after: number, limit: number): Promise<Omit<Events, 'events'> & { events: FeedEvent[] }> {
    return this.get(`/api/events?after=${after}&limit=${limit}`);
  }

  ticket(): Promise<WsTicket> {
    return this.request('/api/ws-ticket', 'POST');
  }

  /** Health is public (no key), so it also tells "API down" apart from "key refused". */
  async health(): Promise<Health> {
    const res = await fetch('/api/health', { cache: 'no-store', credentials: 'omit', signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    return (await res.json()) as Health;
  }

  private get<T>(path: string): Promise<T> {
    return this.request(path, 'GET');
  }

  private async request<T>(path: string, method: 'GET' | 'POST'): Promise<T> {
    const res = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${this.key}`, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    if (res.status === 401) throw new Unauthorized('the API key was refused');
    if (res.status === 429) throw new RateLimited(Math.max(1, Number(res.headers.get('Retry-After')) || 1) * 1000);
    if (!res.ok) {
      const problem = (await res.json().catch(() => ({}))) as { title?: string };
      throw new Error(`${method} ${path.split('?')[0] ?? path}: ${res.status} ${problem.title ?? res.statusText}`);
    }
    return (await res.json()) as T;
  }
}
