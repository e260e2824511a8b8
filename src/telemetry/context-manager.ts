/**
 * The OpenTelemetry context manager: the active context (and so the active span) follows
 * synchronous calls always, and follows asynchronous continuations (promises, timers, stream
 * and socket callbacks) only while something holds async propagation (decision 0010).
 *
 * Following continuations needs AsyncLocalStorage, and on Node 20 an enabled
 * AsyncLocalStorage runs an async_hooks init hook for every promise, nextTick, timer and
 * socket request the whole process creates, about ten per webhook POST, whether or not a
 * context is active (~0.6 KB of garbage per request; its CPU cost was within the noise of a
 * fixed-rate measurement, see decision 0010). Nothing on the
 * webhook's or the sender's paths needs it: their spans name their parents (tracing.ts) and
 * their `context.with` calls are synchronous (a tap's spans under the commit span, an export
 * run with tracing suppressed). The REST API does need it: the express instrumentation's
 * middleware and handler spans, and log lines written after an `await`, find their request's
 * span through the active context. So the REST server span holds propagation for each request
 * in flight (httpServerSpans), and it is let go LINGER_MS after the last one finished.
 *
 * While propagation is held, `with` runs its function in AsyncLocalStorage as the SDK's own
 * AsyncLocalStorageContextManager does, and everything started inside sees the context, as
 * before. While it is not, `with` sets the context for the function's synchronous run only: a
 * continuation started inside runs with the root context, so a span started there is a new
 * root and a log line carries no trace id. Inside a `with`, its context wins over the
 * AsyncLocalStorage's store for synchronous code (as it is also the store while propagating);
 * an `AsyncResource.runInAsyncScope` called synchronously inside a `with` therefore sees the
 * `with`'s context, not the resource's.
 */
import { ROOT_CONTEXT, type Context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * How long async propagation stays on after its last holder let go, so a burst of REST requests
 * does not switch the hook on and off for each one. Short, because the live page polls the REST
 * API about once a second while it is open: with this linger propagation is on for ~10 % of
 * that time, where a second's would keep it on for most of it.
 */
export const LINGER_MS = 100;

/** Extends the SDK's manager only for its `bind` (functions and event emitters), which calls `with`. */
export class OnDemandContextManager extends AsyncLocalStorageContextManager {
  private readonly storage = new AsyncLocalStorage<Context>();
  /** The context of the innermost `with` running now; undefined outside every `with`. */
  private current: Context | undefined;
  private holders = 0;
  /** Bumped by disable(): releases of holds taken before it are then ignored. */
  private epoch = 0;
  private propagating = false;
  private lingering: NodeJS.Timeout | undefined;

  constructor(private readonly lingerMs = LINGER_MS) {
    super();
  }

  /** Whether contexts follow asynchronous continuations now. */
  get asyncPropagation(): boolean {
    return this.propagating;
  }

  override active(): Context {
    if (this.current !== undefined) return this.current;
    return this.propagating ? (this.storage.getStore() ?? ROOT_CONTEXT) : ROOT_CONTEXT;
  }

  override with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(context: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    const saved = this.current;
    this.current = context;
    try {
      if (this.propagating) return this.storage.run(context, () => Reflect.apply(fn, thisArg, args) as ReturnType<F>);
      return Reflect.apply(fn, thisArg, args) as ReturnType<F>;
    } finally {
      this.current = saved;
    }
  }

  /**
   * Makes contexts follow asynchronous continuations until the returned function is called
   * (more than one call counts once). Continuations started before the hold carry no context.
   */
  hold(): () => void {
    this.holders++;
    if (this.lingering !== undefined) {
      clearTimeout(this.lingering);
      this.lingering = undefined;
    }
    this.propagating = true;
    const epoch = this.epoch;
    let released = false;
    return () => {
      if (released || epoch !== this.epoch) return;
      released = true;
      this.holders--;
      if (this.holders === 0 && this.propagating) this.linger();
    };
  }

  override enable(): this {
    return this;
  }

  override disable(): this {
    if (this.lingering !== undefined) clearTimeout(this.lingering);
    this.lingering = undefined;
    this.holders = 0;
    this.epoch++;
    this.stopPropagating();
    this.current = undefined;
    return this;
  }

  /** Not offered: @opentelemetry/api 1.9 has no attach, and its meaning without propagation would be unclear. */
  override attach(): never {
    throw new Error('OnDemandContextManager does not support attach(); use context.with()');
  }

  private linger(): void {
    this.lingering = setTimeout(() => {
      this.lingering = undefined;
      if (this.holders === 0) this.stopPropagating();
    }, this.lingerMs);
    this.lingering.unref();
  }

  private stopPropagating(): void {
    this.propagating = false;
    // Removes the async_hooks hook once no other AsyncLocalStorage in the process is enabled.
    this.storage.disable();
  }
}

let installed: OnDemandContextManager | undefined;

/** The manager for a starting SDK, which registers it; `holdAsyncContext` holds it from then on. */
export function installContextManager(lingerMs = LINGER_MS): OnDemandContextManager {
  installed = new OnDemandContextManager(lingerMs);
  return installed;
}

/** Forgets the manager (the SDK shut down; it was disabled with the API's globals). */
export function uninstallContextManager(): void {
  installed = undefined;
}

const NOTHING_HELD = (): void => undefined;

/** OnDemandContextManager.hold on the installed manager; nothing to hold without an SDK. */
export function holdAsyncContext(): () => void {
  return installed?.hold() ?? NOTHING_HELD;
}
