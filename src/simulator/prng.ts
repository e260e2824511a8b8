/**
 * A small seedable PRNG (mulberry32) so a simulator run with a seed makes the same fault and
 * status decisions in the same order: a failing test can be replayed with its seed.
 */
import { randomInt } from 'node:crypto';

export type Random = () => number; // uniform in [0, 1)

export function createRandom(seed?: number): Random {
  let state = (seed ?? randomInt(0, 2 ** 32)) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [min, max], both included. */
export function randomBetween(random: Random, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}
