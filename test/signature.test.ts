import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { safeEqual, signBody, verifySignature } from '../src/signature';
import { fixtureBytes } from './helpers/webhook';

const SECRET = 'app-secret-current';
const PREVIOUS = 'app-secret-previous';

// Meta escapes non-ASCII and slashes; the signature covers exactly these bytes.
const ESCAPED_BODY = Buffer.from('{"text":{"body":"Ol\\u00e1 https:\\/\\/example.com\\/x"}}', 'utf8');

const hmacHex = (body: Buffer | string, secret: string): string => createHmac('sha256', secret).update(body).digest('hex');

describe('signBody', () => {
  it('when signing, then it is sha256= followed by the lowercase hex HMAC of the bytes', () => {
    expect(signBody('{}', 'k')).toBe(`sha256=${hmacHex('{}', 'k')}`);
    expect(signBody(Buffer.from('abc'), 'key')).toBe('sha256=9c196e32dc0175f86f4b1cb89289d6619de6bee699e4c378e68309ed97a1a6ab');
  });
});

describe('verifySignature', () => {
  const body = Buffer.from('{"object":"whatsapp_business_account","entry":[]}');
  const header = `sha256=${hmacHex(body, SECRET)}`;

  it('when the header is the HMAC of the body with the secret, then it verifies with the current secret', () => {
    expect(verifySignature(body, header, [SECRET])).toEqual({ ok: true, secretIndex: 0 });
  });

  it('when the hex is uppercase or the header has surrounding spaces, then it still verifies', () => {
    expect(verifySignature(body, `sha256=${hmacHex(body, SECRET).toUpperCase()}`, [SECRET])).toEqual({ ok: true, secretIndex: 0 });
    expect(verifySignature(body, ` ${header} `, [SECRET])).toEqual({ ok: true, secretIndex: 0 });
  });

  it('when the body carries \\u00e1 and \\/ escapes, then the signature over the raw bytes verifies', () => {
    const signed = `sha256=${hmacHex(ESCAPED_BODY, SECRET)}`;
    expect(verifySignature(ESCAPED_BODY, signed, [SECRET])).toEqual({ ok: true, secretIndex: 0 });
  });

  it('when the escaped body is re-serialised as JSON, then the original signature does not verify it', () => {
    const signed = `sha256=${hmacHex(ESCAPED_BODY, SECRET)}`;
    const reserialised = Buffer.from(JSON.stringify(JSON.parse(ESCAPED_BODY.toString('utf8'))), 'utf8');
    expect(reserialised.toString('utf8')).toBe('{"text":{"body":"Olá https://example.com/x"}}');
    expect(verifySignature(reserialised, signed, [SECRET])).toEqual({ ok: false, reason: 'mismatch' });
  });

  it('when a Meta-shaped fixture with escapes is signed as received, then it verifies; its re-serialised JSON does not', () => {
    const fixture = fixtureBytes('text');
    expect(fixture.toString('utf8')).toContain('Ol\\u00e1');
    expect(fixture.toString('utf8')).toContain('https:\\/\\/');
    const signed = signBody(fixture, SECRET);
    expect(verifySignature(fixture, signed, [SECRET])).toEqual({ ok: true, secretIndex: 0 });
    const reserialised = Buffer.from(JSON.stringify(JSON.parse(fixture.toString('utf8'))));
    expect(verifySignature(reserialised, signed, [SECRET])).toEqual({ ok: false, reason: 'mismatch' });
  });

  it.each([
    ['wrong length (63 hex)', `sha256=${hmacHex(body, SECRET).slice(1)}`],
    ['wrong length (65 hex)', `sha256=${hmacHex(body, SECRET)}0`],
    ['non-hex characters', `sha256=${'g'.repeat(64)}`],
    ['a sha1= prefix', `sha1=${hmacHex(body, SECRET)}`],
    ['no prefix', hmacHex(body, SECRET)],
    ['an empty digest', 'sha256='],
  ])('when the header has %s, then it is malformed', (_label, bad) => {
    expect(verifySignature(body, bad, [SECRET])).toEqual({ ok: false, reason: 'malformed' });
  });

  it('when the header is missing or empty, then the reason is missing', () => {
    expect(verifySignature(body, undefined, [SECRET])).toEqual({ ok: false, reason: 'missing' });
    expect(verifySignature(body, '', [SECRET])).toEqual({ ok: false, reason: 'missing' });
  });

  it('when the header arrives as an array (repeated header), then it is malformed', () => {
    expect(verifySignature(body, [header, header], [SECRET])).toEqual({ ok: false, reason: 'malformed' });
  });

  it('when one byte of the body is flipped, then it is a mismatch', () => {
    const flipped = Buffer.from(body);
    flipped[10] = (flipped[10] ?? 0) ^ 0x01;
    expect(verifySignature(flipped, header, [SECRET])).toEqual({ ok: false, reason: 'mismatch' });
  });

  it('when one hex digit of the signature is changed, then it is a mismatch', () => {
    const hex = hmacHex(body, SECRET);
    const last = hex.at(-1) === '0' ? '1' : '0';
    expect(verifySignature(body, `sha256=${hex.slice(0, -1)}${last}`, [SECRET])).toEqual({ ok: false, reason: 'mismatch' });
  });

  it('when signed with another secret, then it is a mismatch', () => {
    expect(verifySignature(body, `sha256=${hmacHex(body, 'someone-else')}`, [SECRET])).toEqual({ ok: false, reason: 'mismatch' });
  });

  it('when rotating, then the previous secret verifies with secretIndex 1 and the current with 0', () => {
    const byPrevious = `sha256=${hmacHex(body, PREVIOUS)}`;
    expect(verifySignature(body, byPrevious, [SECRET, PREVIOUS])).toEqual({ ok: true, secretIndex: 1 });
    expect(verifySignature(body, header, [SECRET, PREVIOUS])).toEqual({ ok: true, secretIndex: 0 });
    // After rotation completes, the old secret no longer verifies.
    expect(verifySignature(body, byPrevious, [SECRET])).toEqual({ ok: false, reason: 'mismatch' });
  });

  it('when no secret is configured, then nothing verifies (fail closed), even a correct-looking header', () => {
    expect(verifySignature(body, header, [])).toEqual({ ok: false, reason: 'no_secret' });
    expect(verifySignature(body, `sha256=${hmacHex(body, '')}`, [])).toEqual({ ok: false, reason: 'no_secret' });
  });
});

describe('safeEqual', () => {
  it('when strings are equal, then true; when they differ in content or length, then false', () => {
    expect(safeEqual('token', 'token')).toBe(true);
    expect(safeEqual('token', 'tokem')).toBe(false);
    expect(safeEqual('token', 'token-longer')).toBe(false);
    expect(safeEqual('', '')).toBe(true);
  });
});
