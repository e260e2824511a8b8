/**
 * The live dashboard page in a real browser (Debian's chromium via playwright-core): the
 * sandbox service in-process on loopback, the page built by scripts/build-page.mjs, taps
 * driven through the signed webhook with the built-in Meta simulator answering.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/log';
import { pageMounter } from '../src/page-server';
import { startService, type RunningService } from '../src/service';
import { driveTaps, syntheticContacts } from '../src/simulator';
import { freePort, makeTempDir, REPO_ROOT, TEST_SECRET, testEnv, type TempDir } from './helpers/webhook';

// The callbacks handed to page.evaluate / waitForFunction run in the browser. This file is
// typed for Node (no DOM lib), so it names just the browser globals they touch.
interface BrowserElement {
  readonly id: string;
  readonly textContent: string | null;
  readonly dataset: Record<string, string | undefined>;
  getAttribute(name: string): string | null;
  blur(): void;
  toDataURL(): string;
}
declare const document: {
  readonly activeElement: BrowserElement | null;
  querySelector(selector: string): BrowserElement | null;
  querySelectorAll(selector: string): { readonly length: number };
  getElementById(id: string): BrowserElement | null;
};
declare const sessionStorage: { getItem(key: string): string | null };

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium && process.env.CI) throw new Error(`${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium`);

const ARTIFACTS = join(REPO_ROOT, 'test-artifacts');
const TRIGGERS = ['unlock:starter', 'unlock:quick-tips'];

let dir: TempDir;
let service: RunningService;
let context: BrowserContext;
let page: Page;
let pageOrigin: string;
const upgrades: Array<{ origin: string | undefined; url: string }> = [];
const sockets = new Set<Socket>();
const browserErrors: string[] = [];

async function apiGet<T>(path: string): Promise<T> {
  const res = await fetch(`${pageOrigin}${path}`, { headers: { Authorization: `Bearer ${service.sandboxKey ?? ''}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as T;
}

/** Every seq in the event log, oldest first. */
async function logSeqs(): Promise<number[]> {
  const seqs: number[] = [];
  let after = 0;
  for (let page = 0; page < 50; page++) {
    const answer = await apiGet<{ events: Array<{ seq: number }>; next_after: number; has_more: boolean }>(`/api/events?after=${after}&limit=1000`);
    seqs.push(...answer.events.map((e) => e.seq));
    if (!answer.has_more) break;
    after = answer.next_after;
  }
  return seqs;
}

const pageSeqs = (): Promise<number[]> => page.locator('#events li[data-seq]').evaluateAll((rows) => rows.map((r) => Number((r as unknown as BrowserElement).getAttribute('data-seq'))));
const total = (key: string): Promise<string> => page.locator(`dd[data-total="${key}"]`).innerText();
const connects = async (): Promise<number> => Number(await page.locator('#conn').getAttribute('data-connects'));
const chartImage = (): Promise<string> => page.locator('#chart canvas').evaluate((c) => (c as unknown as BrowserElement).toDataURL());

describe.skipIf(!hasChromium)('the live dashboard page', () => {
  beforeAll(async () => {
    dir = makeTempDir('ctu-page-');
    const built = join(dir.path, 'page');
    execFileSync(process.execPath, [join(REPO_ROOT, 'scripts', 'build-page.mjs'), '--outdir', built], { stdio: 'pipe' });
    // A known API port, so DASHBOARD_ORIGINS keeps its default: the page's own origin.
    const apiPort = await freePort();
    const config = loadConfig(testEnv(dir.dbPath, { API_PORT: String(apiPort) }));
    pageOrigin = `http://127.0.0.1:${apiPort}`;
    expect(config.dashboardOrigins).toContain(pageOrigin);
    // The WebSocket listens on a port 0 picks, known once the service is up; the page asks at each load.
    service = await startService(config, { log: createLogger('silent'), extendApi: pageMounter({ dir: built, wsPort: () => service?.ports.ws }) });
    service.feed?.wsServer.on('upgrade', (req, socket: Socket) => {
      upgrades.push({ origin: req.headers.origin, url: req.url ?? '' });
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    context = await chromium.launchPersistentContext(join(dir.path, 'chromium-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1400, height: 1000 },
      timeout: 30_000,
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => {
      if (m.type() === 'error') browserErrors.push(m.text());
    });
    page.on('pageerror', (e) => browserErrors.push(e.message));
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    await service?.close();
    dir?.remove();
  }, 30_000);

  it('when the sandbox link is opened, then the page signs in, drops the key from the URL and goes live over an allowlisted origin', async () => {
    const url = `${service.urls.page ?? ''}#key=${service.sandboxKey ?? ''}`;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/#key=ctu_/);
    await page.goto(url);
    await page.locator('#conn[data-state="live"]').waitFor({ timeout: 10_000 });
    expect(page.url()).toBe(`${pageOrigin}/`);
    expect(await page.evaluate(() => sessionStorage.getItem('ctu.apiKey'))).toBe(service.sandboxKey);
    expect(await page.locator('#conn').getAttribute('aria-live')).toBe('polite');
    await page.locator('#health[data-state="ok"]').waitFor({ timeout: 5_000 });
    expect(await total('clicks')).toBe('0');
    // The browser's upgrade carries the page's origin and a one-time ticket, never the key.
    expect(upgrades.length).toBe(1);
    expect(upgrades[0]?.origin).toBe(pageOrigin);
    expect(upgrades[0]?.url).toMatch(/^\/ws\?ticket=wst_[\w-]+&after=0$/);
    expect(upgrades[0]?.url).not.toContain(service.sandboxKey ?? 'no key');
  });

  it('when the page is fetched, then the HTML is uncached with a strict CSP and names small, immutable assets', async () => {
    const res = await fetch(`${pageOrigin}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'none'.*script-src 'self'/);
    const html = await res.text();
    expect(html).toContain(`<meta name="ctu-ws-port" content="${service.ports.ws ?? 'none'}">`);
    const assets = [...html.matchAll(/"(\/assets\/app-\w+\.(?:js|css))"/g)].map((m) => m[1] ?? '');
    expect(assets).toHaveLength(2);
    let bytes = 0;
    for (const path of assets) {
      const asset = await fetch(`${pageOrigin}${path}`);
      expect(asset.status).toBe(200);
      expect(asset.headers.get('cache-control')).toContain('immutable');
      bytes += (await asset.arrayBuffer()).byteLength;
    }
    expect(bytes).toBeLessThan(150_000);
  });

  it('when simulated taps arrive, then the totals and the chart change within 2 seconds', async () => {
    const before = await chartImage();
    const report = await driveTaps({ webhookUrl: service.urls.webhook ?? '', appSecret: TEST_SECRET, contacts: 4, triggers: TRIGGERS, ratePerSecond: 50, taps: 4, seed: 7 });
    expect(report.undelivered).toBe(0);
    const acknowledged = Date.now();
    // Every tap was committed before its 200: from here the page has 2 s to show it.
    await page.waitForFunction(
      () => document.querySelector('dd[data-total="clicks"]')?.textContent === '4' && document.getElementById('chart')?.dataset.taps === '4',
      undefined,
      { timeout: 2_000, polling: 50 },
    );
    const shownAfterMs = Date.now() - acknowledged;
    expect(shownAfterMs).toBeLessThan(2_000);
    expect(await chartImage()).not.toBe(before);
    expect(await page.locator('#chart-summary').innerText()).toMatch(/^4 taps and 4 unlocks started in the last 60 minutes/);
    // Statuses follow from the simulator; the totals keep up with them.
    await page.waitForFunction(() => document.querySelector('dd[data-total="messages_delivered"]')?.textContent !== '0', undefined, { timeout: 10_000 });
    expect(Number(await total('messages_sent'))).toBeGreaterThan(0);
    expect(await page.locator('#packs tbody tr').count()).toBe(2);
  });

  it('when the WebSocket is cut while taps keep coming, then the page reconnects and shows every event exactly once', async () => {
    const before = await connects();
    expect(before).toBe(1);
    const taps = driveTaps({ webhookUrl: service.urls.webhook ?? '', appSecret: TEST_SECRET, contacts: syntheticContacts(6, 10), triggers: TRIGGERS, ratePerSecond: 4, taps: 6, seed: 11 });
    await page.waitForTimeout(300);
    // A hard cut from the server side: no close frame, as when a network path dies.
    expect(sockets.size).toBe(1);
    for (const socket of sockets) socket.destroy();
    await page.waitForFunction((n) => Number(document.getElementById('conn')?.dataset.connects) > n, before, { timeout: 10_000 });
    await page.locator('#conn[data-state="live"]').waitFor({ timeout: 10_000 });
    // And once more while the browser is offline: the ticket fetch fails until it is back.
    await page.waitForTimeout(300);
    expect(sockets.size).toBe(1);
    await context.setOffline(true);
    for (const socket of sockets) socket.destroy();
    try {
      await page.locator('#conn[data-state="offline"]').waitFor({ timeout: 5_000 });
      expect(await page.locator('#conn').innerText()).toMatch(/offline/);
      await page.waitForTimeout(500);
    } finally {
      await context.setOffline(false);
    }
    await page.waitForFunction((n) => Number(document.getElementById('conn')?.dataset.connects) > n, before + 1, { timeout: 10_000 });
    expect((await taps).undelivered).toBe(0);
    await service.simulator?.idle(15_000);
    await page.locator('#conn[data-state="live"]').waitFor({ timeout: 10_000 });

    const expected = await logSeqs();
    expect(expected.length).toBeGreaterThan(100);
    // Wait (bounded) for the page to catch up, then compare exactly.
    await page.waitForFunction((n) => document.querySelectorAll('#events li[data-seq]').length >= n, expected.length, { timeout: 10_000 }).catch(() => undefined);
    const shown = await pageSeqs();
    expect(new Set(shown).size).toBe(shown.length);
    expect(shown).toEqual([...expected].reverse());
    expect(await connects()).toBe(3);
    // Every reconnect resumed from the last seq it had, with a fresh ticket.
    const resumed = upgrades.slice(1).map((u) => Number(new URL(u.url, 'http://x').searchParams.get('after')));
    expect(resumed.length).toBe(2);
    expect(resumed.every((after) => after > 0)).toBe(true);
    expect(new Set(upgrades.map((u) => new URL(u.url, 'http://x').searchParams.get('ticket'))).size).toBe(upgrades.length);
  }, 60_000);

  it('when looked at, then the totals match the API, controls are labelled and reachable by keyboard, and the browser logged no errors', async () => {
    const summary = await apiGet<{ clicks: number; messages_delivered: number }>('/api/summary');
    await page.waitForFunction((n) => document.querySelector('dd[data-total="messages_delivered"]')?.textContent === String(n), summary.messages_delivered, { timeout: 5_000 });
    expect(await total('clicks')).toBe(String(summary.clicks));
    expect(await page.getByLabel('Totals for').evaluate((e) => e.tagName)).toBe('SELECT');
    expect(await page.getByLabel('Show').evaluate((e) => e.tagName)).toBe('SELECT');
    await page.locator('body').focus();
    const focused: string[] = [];
    for (let i = 0; i < 5; i++) {
      await page.keyboard.press('Tab');
      focused.push(await page.evaluate(() => document.activeElement?.id || document.activeElement?.textContent?.trim() || ''));
    }
    expect(focused).toEqual(['Skip to content', 'window', 'signout', 'filter', 'events']);
    // The filter narrows the list from the keyboard too.
    await page.getByLabel('Show').focus();
    await page.getByLabel('Show').selectOption({ label: 'failures' });
    expect(await page.locator('#events li:not([hidden])').count()).toBe(0);
    await page.getByLabel('Show').selectOption({ label: 'all events' });
    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'dashboard.png');
    await page.locator('#events').evaluate((e) => e.scrollTo(0, 0));
    await page.evaluate(() => document.activeElement?.blur());
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(10_000);
    // Requests refused while the test held the browser offline are expected; nothing else is.
    expect(browserErrors.filter((e) => !e.includes('net::ERR_INTERNET_DISCONNECTED'))).toEqual([]);
  });

  it('when a wrong key is typed in a new tab, then it is refused; the right key signs in', async () => {
    const tab = await context.newPage();
    await tab.goto(`${pageOrigin}/`);
    await tab.getByLabel('API key').fill('ctu_not_a_real_key');
    await tab.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => tab.locator('#signin-error').innerText(), { timeout: 5_000 }).toMatch(/not accepted/);
    expect(await tab.locator('#dashboard').isHidden()).toBe(true);
    await tab.getByLabel('API key').fill(service.sandboxKey ?? '');
    await tab.keyboard.press('Enter');
    await tab.locator('#conn[data-state="live"]').waitFor({ timeout: 10_000 });
    await tab.getByRole('button', { name: 'Sign out' }).click();
    expect(await tab.evaluate(() => sessionStorage.getItem('ctu.apiKey'))).toBeNull();
    await tab.locator('#signin').waitFor({ timeout: 2_000 });
    await tab.close();
  });
});
