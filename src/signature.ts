/**
 * Meta signs every webhook POST with `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of
 * the raw body bytes keyed with the App Secret. We verify the bytes exactly as received:
 * re-serialised JSON would differ (Meta escapes `\/` and non-ASCII as `\u00e1`).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export type SignatureCheck =
  | { readonly ok: true; readonly secretIndex: number } // 0 = current secret, 1 = previous (rotation)
  | { readonly ok: false; readonly reason: SignatureFailure };

export type SignatureFailure = 'missing' | 'malformed' | 'mismatch' | 'no_secret';

const HEADER_FORMAT = /^sha256=([0-9a-fA-F]{64})$/;

export function signBody(body: Buffer | string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * Checks a signature header against every configured secret. Fails closed: no secret
 * configured means nothing verifies. Each comparison is constant-time over 32 bytes.
 */
export function verifySignature(body: Buffer, header: string | readonly string[] | undefined, secrets: readonly string[]): SignatureCheck {
  if (secrets.length === 0) return { ok: false, reason: 'no_secret' };
  if (header === undefined || header === '') return { ok: false, reason: 'missing' };
  if (typeof header !== 'string') return { ok: false, reason: 'malformed' };
  const match = HEADER_FORMAT.exec(header.trim());
  if (match === null) return { ok: false, reason: 'malformed' };
  const given = Buffer.from(match[1] ?? '', 'hex');
  let found = -1;
  // Check every secret, not just until the first match, so timing does not reveal which one matched.
  secrets.forEach((secret, index) => {
    const expected = createHmac('sha256', secret).update(body).digest();
    if (timingSafeEqual(expected, given) && found === -1) found = index;
  });
  return found === -1 ? { ok: false, reason: 'mismatch' } : { ok: true, secretIndex: found };
}

/** Constant-time equality for short secrets such as the verify token, whatever their lengths. */
export function safeEqual(a: string, b: string): boolean {
  const left = createHmac('sha256', 'ctu-compare').update(a).digest();
  const right = createHmac('sha256', 'ctu-compare').update(b).digest();
  return timingSafeEqual(left, right);
}
