/**
 * The on-demand context manager by itself (no SDK): contexts follow synchronous calls always,
 * and asynchronous continuations only while propagation is held.
 */
import { createContextKey, ROOT_CONTEXT, type Context } from '@opentelemetry/api';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, test } from 'vitest';
import { OnDemandContextManager } from '../src/telemetry/context-manager';

const KEY = createContextKey('test key');
const ctx = (value: string): Context => ROOT_CONTEXT.setValue(KEY, value);
const seen = (manager: OnDemandContextManager): unknown => manager.active().getValue(KEY);
/** Whether the manager's AsyncLocalStorage is enabled, i.e. its async_hooks hook is installed. */
const storageEnabled = (manager: OnDemandContextManager): boolean => (manager as unknown as { storage: { enabled: boolean } }).storage.enabled;

const managers: OnDemandContextManager[] = [];
function manager(lingerMs = 20): OnDemandContextManager {
  const m = new OnDemandContextManager(lingerMs);
  managers.push(m);
  return m;
}

afterEach(() => {
  for (const m of managers.splice(0)) m.disable();
});

describe('OnDemandContextManager', () => {
  test('when nothing holds propagation, then with() sets the context for the synchronous run only, nested and after a throw', async () => {
    const m = manager();
    expect(m.active()).toBe(ROOT_CONTEXT);
    let later: Promise<unknown> = Promise.resolve();
    const inner = m.with(ctx('outer'), () => {
      expect(seen(m)).toBe('outer');
      later = Promise.resolve().then(() => seen(m));
      const nested = m.with(ctx('inner'), () => seen(m));
      expect(seen(m)).toBe('outer');
      expect(() => m.with(ctx('thrown'), () => {
        throw new Error('boom');
      })).toThrow('boom');
      expect(seen(m)).toBe('outer');
      return nested;
    });
    expect(inner).toBe('inner');
    expect(m.active()).toBe(ROOT_CONTEXT);
    expect(await later).toBeUndefined();
    expect(m.asyncPropagation).toBe(false);
  });

  test('when propagation is held, then promises, timers and awaits started inside with() see its context', async () => {
    const m = manager();
    const release = m.hold();
    expect(m.asyncPropagation).toBe(true);
    const results = await m.with(ctx('held'), async () => {
      const fromPromise = await Promise.resolve().then(() => seen(m));
      await sleep(2);
      const afterAwait = seen(m);
      const fromTimer = await new Promise((resolve) => setTimeout(() => resolve(seen(m)), 1));
      return [fromPromise, afterAwait, fromTimer];
    });
    expect(results).toEqual(['held', 'held', 'held']);
    expect(m.active()).toBe(ROOT_CONTEXT);
    release();
  });

  test('when the last holder lets go, then propagation lasts the linger time and then stops; a second release counts once', async () => {
    const m = manager(30);
    const first = m.hold();
    const second = m.hold();
    first();
    first();
    await sleep(60);
    expect(m.asyncPropagation).toBe(true);
    second();
    expect(m.asyncPropagation).toBe(true);
    // A hold within the linger time keeps it on without a gap.
    const third = m.hold();
    await sleep(60);
    expect(m.asyncPropagation).toBe(true);
    third();
    await sleep(80);
    expect(m.asyncPropagation).toBe(false);
    expect(storageEnabled(m)).toBe(false);
    const later = await m.with(ctx('after'), () => Promise.resolve().then(() => seen(m)));
    expect(later).toBeUndefined();
  });

  test('when a function or an event emitter is bound, then its calls and listeners run in the bound context, with this and arguments kept', () => {
    const m = manager();
    const target = { name: 'target' };
    const bound = m.bind(ctx('bound'), function (this: { name: string }, a: number, b: number) {
      return [this.name, a + b, seen(m)];
    });
    expect(bound.call(target, 1, 2)).toEqual(['target', 3, 'bound']);
    const emitter = m.bind(ctx('emitter'), new EventEmitter());
    const heard: unknown[] = [];
    const listener = (): void => void heard.push(seen(m));
    emitter.on('ping', listener);
    emitter.emit('ping');
    emitter.off('ping', listener);
    emitter.emit('ping');
    expect(heard).toEqual(['emitter']);
  });

  test('when disabled, then holds are dropped and propagation stops at once', async () => {
    const m = manager(10_000);
    m.hold();
    expect(m.asyncPropagation).toBe(true);
    m.with(ctx('x'), () => undefined);
    expect(storageEnabled(m)).toBe(true);
    m.disable();
    expect(m.asyncPropagation).toBe(false);
    expect(storageEnabled(m)).toBe(false);
    expect(await m.with(ctx('x'), () => Promise.resolve().then(() => seen(m)))).toBeUndefined();
  });

  test('when a hold taken before disable() is released after it, then later holds still end in a stop', async () => {
    const m = manager(10);
    const before = m.hold();
    m.disable();
    before();
    const after = m.hold();
    after();
    await sleep(40);
    expect(m.asyncPropagation).toBe(false);
    expect(storageEnabled(m)).toBe(false);
  });

  test('when propagating, then a nested with() gives its continuations the inner context and the outer one resumes after it', async () => {
    const m = manager();
    const release = m.hold();
    const seenBy = await m.with(ctx('outer'), async () => {
      const inner = m.with(ctx('inner'), () => new Promise((resolve) => setImmediate(() => resolve(seen(m)))));
      const outerAfter = await Promise.resolve().then(() => seen(m));
      return [await inner, outerAfter];
    });
    expect(seenBy).toEqual(['inner', 'outer']);
    release();
  });

  test('when a hold is taken inside a running with(), then that with()\'s own continuations still see the root, and a with() after the hold propagates', async () => {
    const m = manager();
    let release: () => void = () => undefined;
    const [early, late] = await m.with(ctx('started before the hold'), async () => {
      release = m.hold();
      // This function's own await continuation was not created inside a propagating run.
      const first = await Promise.resolve().then(() => seen(m));
      const second = await m.with(ctx('after the hold'), () => Promise.resolve().then(() => seen(m)));
      return [first, second];
    });
    expect(early).toBeUndefined();
    expect(late).toBe('after the hold');
    release();
  });
});
