/**
 * What the service's worker threads (the writer thread, the span export thread) share: where
 * their compiled scripts are, and the sliding window that limits how often one is started again.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * A thread's script, `script` relative to src/ (e.g. 'telemetry/export-thread.js'): beside the
 * running build, else in dist/ (tests run the sources, the thread runs the build).
 */
export function threadScript(script: string): string {
  const beside = join(__dirname, script);
  if (existsSync(beside)) return beside;
  const built = resolve(__dirname, '..', 'dist', 'src', script);
  if (existsSync(built)) return built;
  throw new Error(`thread script ${script} not found (looked for ${beside} and ${built}); run \`npm run build\``);
}

/** The times of recent events (a thread's exits) within a sliding window. */
export class RecentEvents {
  private readonly times: number[] = [];

  constructor(private readonly windowMs: number) {}

  /** How many events fell within the window before `now`; older ones are forgotten. */
  count(now: number): number {
    while (this.times.length > 0 && (this.times[0] as number) <= now - this.windowMs) this.times.shift();
    return this.times.length;
  }

  add(now: number): void {
    this.times.push(now);
  }
}
