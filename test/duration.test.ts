import { describe, expect, it } from 'vitest';
import { DAY, HOUR, MINUTE, parseDuration, SECOND } from '../src/duration';

describe('parseDuration', () => {
  it.each<[string, number]>([
    ['500ms', 500],
    ['30s', 30 * SECOND],
    ['15m', 15 * MINUTE],
    ['24h', 24 * HOUR],
    ['7d', 7 * DAY],
    ['1h30m', HOUR + 30 * MINUTE],
    ['1d2h3m4s5ms', DAY + 2 * HOUR + 3 * MINUTE + 4 * SECOND + 5],
    ['1.5h', 90 * MINUTE],
    ['0.0015s', 2], // rounded to whole milliseconds
    ['  90m  ', 90 * MINUTE],
    ['0s', 0],
  ])('when given "%s", then %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '24', 'h', '24 h', '-5m', '5x', '1h 30m', '1.h', '.5h', 'PT1H', '1e3ms', '10M'])('when given "%s", then undefined', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });

  it('when the units are composed, then the constants are consistent', () => {
    expect([SECOND, MINUTE, HOUR, DAY]).toEqual([1000, 60_000, 3_600_000, 86_400_000]);
  });
});
