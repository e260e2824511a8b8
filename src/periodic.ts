/**
 * A background job that runs now and then on the service's event loop (scheduled backups,
 * retention): one pass at a time, the next one `intervalMs` after the previous one ended
 * (never piling up behind a slow pass), and a stop() that waits for the pass in flight.
 */
export interface PeriodicOptions<T> {
  /**
   * One pass. `stopping()` turns true once stop() is called: a long pass checks it between
   * steps and ends early. A pass should log its own failure and resolve; a rejection only
   * reaches the runNow() caller, the schedule carries on either way.
   */
  readonly run: (stopping: () => boolean) => Promise<T>;
  readonly firstDelayMs: number;
  readonly intervalMs: number;
}

export interface Periodic<T> {
  /** Runs a pass now, or joins the one already running. */
  runNow(): Promise<T>;
  /** No more passes; waits for the running one to end. */
  stop(): Promise<void>;
}

export function startPeriodic<T>(options: PeriodicOptions<T>): Periodic<T> {
  let stopping = false;
  let running: Promise<T> | undefined;
  let timer: NodeJS.Timeout | undefined;
  const stopRequested = (): boolean => stopping;
  const runNow = (): Promise<T> => {
    running ??= options.run(stopRequested).finally(() => {
      running = undefined;
    });
    return running;
  };
  const schedule = (delayMs: number): void => {
    if (stopping) return;
    const next = (): void => schedule(options.intervalMs);
    timer = setTimeout(() => {
      void runNow().then(next, next);
    }, delayMs);
    timer.unref();
  };
  schedule(options.firstDelayMs);
  return {
    runNow,
    stop: async () => {
      stopping = true;
      if (timer !== undefined) clearTimeout(timer);
      await running?.catch(() => undefined);
    },
  };
}
