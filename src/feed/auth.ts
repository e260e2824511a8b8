/**
 * Who may read the feed: API keys (Bearer), one-time WebSocket tickets for browsers, and a
 * per-key token bucket. Every way of failing gives the same 401 body, so an answer tells a
 * guesser nothing about which part of a token was wrong.
 */
import { randomBytes } from 'node:crypto';
import type { ApiKeyInfo, KeyReader } from '../store/key-store';
import { problem } from './problems';

export const UNAUTHORIZED = problem('unauthorized', 'Send an active API key as `Authorization: Bearer <key>`.');
export const WWW_AUTHENTICATE = 'Bearer realm="click-to-unlock"';

/** The key named by an `Authorization: Bearer …` header, if it is an active key. */
export function authenticate(keys: KeyReader, header: string | undefined): ApiKeyInfo | undefined {
  if (header === undefined || header.length > 300) return undefined;
  const match = /^Bearer ([^\s]+)$/i.exec(header.trim());
  if (match?.[1] === undefined) return undefined;
  try {
    return keys.findActive(match[1]);
  } catch {
    // A database that cannot be read now denies access rather than erroring per token.
    return undefined;
  }
}

export interface RateLimit {
  readonly perSecond: number;
  readonly burst: number;
}

export const DEFAULT_RATE_LIMIT: RateLimit = { perSecond: 20, burst: 100 };

/** A token bucket per key: `burst` requests at once, refilled at `perSecond`. */
export class KeyRateLimiter {
  private readonly buckets = new Map<number, { tokens: number; at: number }>();

  constructor(private readonly limit: RateLimit) {}

  /** 0 when the request may go ahead, else the seconds to wait (for Retry-After). */
  take(keyId: number, now: number): number {
    const bucket = this.buckets.get(keyId) ?? { tokens: this.limit.burst, at: now };
    bucket.tokens = Math.min(this.limit.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.limit.perSecond);
    bucket.at = now;
    this.buckets.set(keyId, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.limit.perSecond));
  }
}

export const TICKET_TTL_MS = 30_000;
const MAX_OUTSTANDING_TICKETS = 10_000;

/**
 * One-time tickets, held in this process's memory: the feed process that issues a ticket over
 * REST is the one whose WebSocket redeems it, and a restart only costs the browser a refetch.
 */
export class TicketBook {
  private readonly tickets = new Map<string, { keyId: number; expiresAt: number }>();

  issue(keyId: number, now: number): { ticket: string; expiresAt: number } {
    if (this.tickets.size >= MAX_OUTSTANDING_TICKETS) this.prune(now);
    // Still full of live tickets: drop the oldest rather than grow without bound.
    while (this.tickets.size >= MAX_OUTSTANDING_TICKETS) {
      const oldest = this.tickets.keys().next().value;
      if (oldest === undefined) break;
      this.tickets.delete(oldest);
    }
    const ticket = `wst_${randomBytes(24).toString('base64url')}`;
    const expiresAt = now + TICKET_TTL_MS;
    this.tickets.set(ticket, { keyId, expiresAt });
    return { ticket, expiresAt };
  }

  /** The key id the ticket was issued to; a ticket works once, and only before it expires. */
  redeem(ticket: string, now: number): number | undefined {
    const entry = this.tickets.get(ticket);
    if (entry === undefined) return undefined;
    this.tickets.delete(ticket);
    return entry.expiresAt > now ? entry.keyId : undefined;
  }

  private prune(now: number): void {
    for (const [ticket, entry] of this.tickets) if (entry.expiresAt <= now) this.tickets.delete(ticket);
  }
}
