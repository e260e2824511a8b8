/**
 * The one-line progress bar of the long-running commands (`ctu backup`, `ctu simulate`).
 * On a terminal it redraws in place; in a log (not a TTY) it writes a line at most once a
 * second, so a CI log stays short. The last step (done = total) is always drawn.
 */
const WIDTH = 30;
const TTY_EVERY_MS = 100;
const LOG_EVERY_MS = 1_000;

export interface ProgressBar {
  /** e.g. `backup [#####.....]  42% 420/1000 pages` for ('backup', 420, 1000, 'pages'). */
  (label: string, done: number, total: number, note: string): void;
  /** Ends the line on a terminal; call once the work is over, whether it succeeded or not. */
  done(): void;
}

export function progressBar(out: NodeJS.WriteStream): ProgressBar {
  const tty = out.isTTY === true;
  let lastAt = 0;
  let drawn = false;
  const draw = (label: string, done: number, total: number, note: string): void => {
    const now = Date.now();
    if (now - lastAt < (tty ? TTY_EVERY_MS : LOG_EVERY_MS) && done < total) return;
    lastAt = now;
    const share = total > 0 ? Math.min(1, done / total) : 0;
    const filled = Math.round(share * WIDTH);
    const percent = `${(share * 100).toFixed(0).padStart(3)}%`;
    const line = `${label} [${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${percent} ${done}/${total} ${note}`;
    out.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
    drawn = true;
  };
  return Object.assign(draw, {
    done: () => {
      if (tty && drawn) out.write('\n');
      drawn = false;
    },
  });
}
