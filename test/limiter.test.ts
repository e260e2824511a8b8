import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../src/limiter';

describe('token bucket', () => {
  it('when driven for 10 simulated seconds at 80/s, then it grants 80/s within 2%', () => {
    let now = 0;
    const bucket = new TokenBucket(80, () => now);
    let granted = 0;
    for (; now < 10_000; now += 1) while (bucket.tryTake()) granted++;
    expect(granted).toBeGreaterThanOrEqual(784);
    expect(granted).toBeLessThanOrEqual(816);
  });

  it('when empty, then waitMs says how long until the next token, and refund gives tokens back', () => {
    let now = 0;
    const bucket = new TokenBucket(10, () => now);
    expect(bucket.tryTake()).toBe(true);
    expect(bucket.tryTake()).toBe(false);
    expect(bucket.waitMs()).toBe(100);
    now += 50;
    expect(bucket.waitMs()).toBe(50);
    bucket.refund(1);
    expect(bucket.tryTake()).toBe(true);
  });

  it('when idle for long, then the burst stays a tenth of a second of rate', () => {
    let now = 0;
    const bucket = new TokenBucket(1000, () => now);
    now = 60_000;
    let burst = 0;
    while (bucket.tryTake()) burst++;
    expect(burst).toBe(100);
  });
});
