/**
 * Taps per minute over the last hour: uPlot on a canvas, bars for taps and a line for the
 * unlocks they started, plus a one-line text summary for screen readers (the canvas itself
 * says nothing to them).
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { Clicks } from './api-client';

const HEIGHT = 220;
const TAP_COLOUR = '#2563eb';
const UNLOCK_COLOUR = '#0f766e';

export class TapsChart {
  private plot: uPlot | undefined;
  private data: uPlot.AlignedData = [[], [], []];

  constructor(
    private readonly host: HTMLElement,
    private readonly summary: HTMLElement,
  ) {
    new ResizeObserver(() => this.resize()).observe(host);
  }

  update(clicks: Clicks): void {
    const xs = clicks.points.map((p) => Date.parse(p.t) / 1000);
    const taps = clicks.points.map((p) => p.clicks);
    const unlocks = clicks.points.map((p) => p.unlocks_started);
    this.data = [xs, taps, unlocks];
    if (this.plot === undefined) this.create();
    else this.plot.setData(this.data);
    this.describe(xs, taps, unlocks);
  }

  private create(): void {
    const width = Math.max(280, this.host.clientWidth);
    const bars = uPlot.paths.bars?.({ size: [0.7, 24], gap: 1 });
    const axis = { stroke: '#334155', grid: { stroke: '#e2e8f0', width: 1 }, ticks: { stroke: '#cbd5e1', width: 1 } };
    this.plot = new uPlot(
      {
        width,
        height: HEIGHT,
        cursor: { drag: { x: false, y: false }, points: { size: 6 } },
        legend: { live: false },
        // Half a minute of room either side, so the first and last bars are not cut in half.
        scales: { x: { time: true, range: (_u, min, max) => [min - 30, max + 30] }, y: { range: (_u, _min, max) => [0, Math.max(4, Math.ceil(max * 1.15))] } },
        axes: [
          { ...axis, values: (_u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })) },
          { ...axis, size: 44, label: 'per minute', labelSize: 18, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] },
        ],
        series: [
          { label: 'Time', value: (_u, v) => (v === null ? '–' : new Date(v * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })) },
          { label: 'Taps', stroke: TAP_COLOUR, fill: 'rgba(37, 99, 235, 0.55)', width: 1, ...(bars !== undefined ? { paths: bars } : {}), points: { show: false } },
          { label: 'Unlocks started', stroke: UNLOCK_COLOUR, width: 2, points: { show: false } },
        ],
      },
      this.data,
      this.host,
    );
  }

  private resize(): void {
    if (this.plot === undefined) return;
    const width = Math.max(280, this.host.clientWidth);
    if (width !== this.plot.width) this.plot.setSize({ width, height: HEIGHT });
  }

  private describe(xs: readonly number[], taps: readonly number[], unlocks: readonly number[]): void {
    const total = taps.reduce((a, b) => a + b, 0);
    const started = unlocks.reduce((a, b) => a + b, 0);
    let peak = 0;
    for (let i = 1; i < taps.length; i++) if ((taps[i] ?? 0) > (taps[peak] ?? 0)) peak = i;
    const peakAt = xs[peak];
    const peakText =
      total > 0 && peakAt !== undefined ? `; busiest minute ${new Date(peakAt * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })} with ${taps[peak]}` : '';
    this.summary.textContent = `${total} taps and ${started} unlocks started in the last 60 minutes${peakText}.`;
    this.host.dataset.taps = String(total);
  }
}
