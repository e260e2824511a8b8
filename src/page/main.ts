/**
 * The live dashboard: a reference client of the public feed. Sign-in takes the API key from
 * the URL fragment (which browsers never send to the server), keeps it in this tab's
 * sessionStorage and wipes the fragment. Totals, chart and funnel refresh shortly after
 * relevant feed events (throttled, well under the per-key rate limit) and on a slow poll.
 */
import { ApiClient, RateLimited, Unauthorized, type FeedEvent } from './api-client';
import { TapsChart } from './chart';
import { FeedClient, type ConnState } from './feed-client';
import { EventList, renderHealth, renderPacks, renderTotals } from './views';
import './styles.css';

const KEY_STORAGE = 'ctu.apiKey';
const DEFAULT_WS_PORT = '3001';
const BACKFILL_EVENTS = 100;
const REFRESH_DELAY_MS = 250;
const REFRESH_MIN_GAP_MS = 1_000;
const POLL_MS = 30_000;
const HEALTH_MS = 10_000;
const CHART_MINUTES = 60;
const REFRESHING_TYPES = /^(click|unlock\.|message\.sent|message\.status|delivery\.failed)/;

const $ = <T extends HTMLElement>(id: string): T => {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`the page has no #${id}`);
  return node as T;
};

/** A key in the fragment (`#key=…`) wins over the stored one; either way the fragment goes. */
function takeKey(): string | undefined {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromUrl = fragment.get('key');
  if (location.hash !== '') history.replaceState(null, '', location.pathname + location.search);
  if (fromUrl !== null && fromUrl.trim() !== '') sessionStorage.setItem(KEY_STORAGE, fromUrl.trim());
  return sessionStorage.getItem(KEY_STORAGE) ?? undefined;
}

function wsUrl(): string {
  const port = document.querySelector<HTMLMetaElement>('meta[name="ctu-ws-port"]')?.content.trim() || DEFAULT_WS_PORT;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.hostname}:${port}/ws`;
}

class Dashboard {
  private readonly feed: FeedClient;
  private readonly chart = new TapsChart($('chart'), $('chart-summary'));
  private readonly events = new EventList($<HTMLOListElement>('events'), $('events-empty'));
  private readonly timers: Array<ReturnType<typeof setInterval>> = [];
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private lastRefresh = 0;
  private pausedUntil = 0;
  private stopped = false;

  constructor(
    private readonly api: ApiClient,
    after: number,
    private readonly onSignedOut: (message: string) => void,
  ) {
    this.feed = new FeedClient({
      api,
      wsUrl: wsUrl(),
      after,
      onEvents: (events) => this.onEvents(events),
      onState: (state, detail) => showConnection(state, detail, this.feed?.connects ?? 0),
      onUnauthorized: () => this.signOut('The API key was refused or revoked. Sign in again.'),
    });
  }

  start(): void {
    this.feed.start();
    void this.refresh();
    this.timers.push(setInterval(() => this.scheduleRefresh(), POLL_MS));
    this.timers.push(setInterval(() => void this.checkHealth(), HEALTH_MS));
    window.addEventListener('online', this.onOnline);
    $<HTMLSelectElement>('window').onchange = () => this.scheduleRefresh(0);
    $<HTMLSelectElement>('filter').onchange = (e) => this.events.filter((e.target as HTMLSelectElement).value.split(' ').filter((w) => w !== ''));
  }

  stop(): void {
    this.stopped = true;
    this.feed.stop();
    for (const t of this.timers) clearInterval(t);
    window.removeEventListener('online', this.onOnline);
    clearTimeout(this.refreshTimer);
  }

  private readonly onOnline = (): void => this.scheduleRefresh(0);

  private signOut(message: string): void {
    this.stop();
    this.onSignedOut(message);
  }

  private onEvents(events: readonly FeedEvent[]): void {
    this.events.add(events);
    if (events.some((e) => REFRESHING_TYPES.test(e.type))) this.scheduleRefresh();
  }

  /** Trailing and throttled: a burst of events costs one round of requests per second at most. */
  private scheduleRefresh(delayMs = REFRESH_DELAY_MS): void {
    if (this.stopped || this.refreshTimer !== undefined) return;
    const wait = Math.max(delayMs, this.lastRefresh + REFRESH_MIN_GAP_MS - Date.now(), this.pausedUntil - Date.now());
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      void this.refresh();
    }, wait);
  }

  private async refresh(): Promise<void> {
    this.lastRefresh = Date.now();
    const now = Date.now() + 1;
    const from = now - Number($<HTMLSelectElement>('window').value);
    const chartTo = (Math.floor(now / 60_000) + 1) * 60_000;
    const chartFrom = chartTo - CHART_MINUTES * 60_000;
    void this.checkHealth();
    try {
      const [summary, clicks, packs] = await Promise.all([this.api.summary(from, now), this.api.clicksPerMinute(chartFrom, chartTo), this.api.packs(from, now)]);
      if (this.stopped) return;
      renderTotals($('totals'), summary);
      this.chart.update(clicks);
      renderPacks($<HTMLTableElement>('packs').tBodies[0] as HTMLTableSectionElement, packs);
      const label = $<HTMLSelectElement>('window').selectedOptions[0]?.textContent ?? '';
      $('window-label').textContent = `· ${label}`;
      document.body.dataset.refreshed = String(this.lastRefresh);
    } catch (error) {
      if (error instanceof Unauthorized) return this.signOut('The API key was refused. Sign in again.');
      if (error instanceof RateLimited) this.pausedUntil = Date.now() + error.retryAfterMs;
      this.scheduleRefresh(5_000);
    }
  }

  private async checkHealth(): Promise<void> {
    try {
      renderHealth($('health'), await this.api.health());
    } catch {
      renderHealth($('health'), undefined);
    }
  }
}

function showConnection(state: ConnState, detail: string, connects: number): void {
  const node = $('conn');
  node.dataset.state = state;
  node.dataset.connects = String(connects);
  // Only the words change for a screen reader; skip repeats so aria-live stays quiet.
  if (node.textContent !== detail) node.textContent = detail;
}

let current: Dashboard | undefined;

async function signIn(key: string): Promise<void> {
  const api = new ApiClient(key);
  let head: number;
  try {
    head = (await api.events(0, 1)).head;
  } catch (error) {
    if (error instanceof Unauthorized) sessionStorage.removeItem(KEY_STORAGE);
    return showSignIn(error instanceof Unauthorized ? 'That API key was not accepted.' : `Could not reach the API: ${(error as Error).message}`);
  }
  $('signin').hidden = true;
  $('dashboard').hidden = false;
  $('controls').hidden = false;
  current?.stop();
  current = new Dashboard(api, Math.max(0, head - BACKFILL_EVENTS), (message) => {
    sessionStorage.removeItem(KEY_STORAGE);
    showSignIn(message);
  });
  current.start();
}

function showSignIn(message = ''): void {
  current?.stop();
  current = undefined;
  $('dashboard').hidden = true;
  $('controls').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message;
  showConnection('stopped', 'Feed: signed out', 0);
  $('key').focus();
}

function boot(): void {
  $<HTMLFormElement>('signin-form').onsubmit = (event) => {
    event.preventDefault();
    const input = $<HTMLInputElement>('key');
    const key = input.value.trim();
    input.value = '';
    if (key === '') return;
    sessionStorage.setItem(KEY_STORAGE, key);
    void signIn(key);
  };
  $('signout').onclick = () => {
    sessionStorage.removeItem(KEY_STORAGE);
    showSignIn('Signed out.');
  };
  const key = takeKey();
  if (key === undefined) showSignIn();
  else void signIn(key);
}

boot();
