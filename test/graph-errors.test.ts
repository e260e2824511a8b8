import { describe, expect, it } from 'vitest';
import { BACKOFF_CAP_MS, classifyGraphError, GRAPH_ERRORS, pairBackoffMs, parseRetryAfter, retryDelayMs } from '../src/graph-errors';
import { interpret } from '../src/graph-client';

describe('error classification', () => {
  it.each([
    [130429, 'rate_limit', 'retry'],
    [131000, 'server', 'retry'],
    [131016, 'server', 'retry'],
    [131057, 'server', 'retry'],
    [80007, 'rate_limit', 'retry'],
    [4, 'rate_limit', 'retry'],
    [131056, 'pair_rate_limit', 'pair_backoff'],
    [131047, 'recipient', 'permanent'],
    [131026, 'recipient', 'permanent'],
    [131049, 'policy', 'permanent'],
    [131050, 'recipient', 'permanent'],
    [131048, 'policy', 'permanent'],
    [368, 'policy', 'permanent'],
    [100, 'invalid_request', 'permanent'],
    [131008, 'invalid_request', 'permanent'],
    [131009, 'invalid_request', 'permanent'],
    [190, 'auth', 'permanent'],
  ])('when Graph answers code %i, then it is %s / %s', (code, errorClass, disposition) => {
    const how = classifyGraphError(code, 400);
    expect(how.errorClass).toBe(errorClass);
    expect(how.disposition).toBe(disposition);
  });

  it('when the code is an auth error, then it is alert-worthy; when it is not, then it is not', () => {
    expect(classifyGraphError(190).alert).toBe(true);
    expect(classifyGraphError(250).alert).toBe(true);
    expect(classifyGraphError(131047).alert).toBe(false);
  });

  it('when there is no code, then the HTTP status decides (429 and 5xx retry, other 4xx are permanent)', () => {
    expect(classifyGraphError(undefined, 429).disposition).toBe('retry');
    expect(classifyGraphError(undefined, 503).disposition).toBe('retry');
    expect(classifyGraphError(undefined, 500).errorClass).toBe('server');
    expect(classifyGraphError(undefined, 404).disposition).toBe('permanent');
    expect(classifyGraphError(999999, 400)).toMatchObject({ errorClass: 'other', disposition: 'permanent' });
  });

  it('when a code is in the table, then the code wins over the HTTP status', () => {
    expect(classifyGraphError(131047, 500).disposition).toBe('permanent');
    expect(classifyGraphError(130429, 400).disposition).toBe('retry');
    expect(GRAPH_ERRORS.size).toBeGreaterThan(20);
  });
});

describe('backoff', () => {
  it('when the random draw is at its top, then the delay is the documented ceiling', () => {
    const ceilings = [1, 2, 3, 4, 5, 9, 10, 20].map((attempt) => retryDelayMs(attempt, 0.999999999));
    expect(ceilings).toEqual([999, 1999, 3999, 7999, 15999, 255999, 299999, 299999]);
  });

  it('when jitter is full, then a draw of 0 gives no delay and 0.5 gives half the ceiling', () => {
    expect(retryDelayMs(3, 0)).toBe(0);
    expect(retryDelayMs(3, 0.5)).toBe(2000);
    expect(retryDelayMs(50, 0.5)).toBe(BACKOFF_CAP_MS / 2);
  });

  it('when the server sent Retry-After, then the delay is never shorter', () => {
    expect(retryDelayMs(1, 0.1, 30_000)).toBe(30_000);
    expect(retryDelayMs(10, 0.9, 1_000)).toBe(270_000);
  });

  it('when 131056 repeats, then the contact backs off 4^n seconds', () => {
    expect([1, 2, 3, 4].map(pairBackoffMs)).toEqual([4_000, 16_000, 64_000, 256_000]);
  });

  it('when Retry-After is seconds or a date, then it is read; otherwise ignored', () => {
    expect(parseRetryAfter('7', 0)).toBe(7_000);
    expect(parseRetryAfter(new Date(60_000).toUTCString(), 0)).toBe(60_000);
    expect(parseRetryAfter('soon', 0)).toBeUndefined();
    expect(parseRetryAfter(undefined, 0)).toBeUndefined();
  });
});

describe('Graph API answers', () => {
  it('when 200 carries a message id, then it is accepted with that wamid', () => {
    expect(interpret(200, '{"messaging_product":"whatsapp","messages":[{"id":"wamid.X"}]}', undefined)).toEqual({ kind: 'accepted', wamid: 'wamid.X', httpStatus: 200 });
  });
  it('when 200 has no id, then it is ambiguous; when an error body comes, then its code is read', () => {
    expect(interpret(200, '{}', undefined).kind).toBe('ambiguous');
    expect(interpret(400, '{"error":{"message":"m","code":131056,"error_data":{"details":"d"}}}', '3')).toEqual({
      kind: 'error',
      httpStatus: 400,
      retryAfter: '3',
      error: { code: 131056, message: 'm', details: 'd' },
    });
    expect(interpret(502, '<html>bad gateway</html>', undefined)).toMatchObject({ kind: 'error', httpStatus: 502, error: undefined });
  });
});
