/**
 * Puts the feed's answers on the page: totals, the per-pack funnel, the API health and the
 * live event list. Text goes in with textContent only, never as HTML, because event data
 * carries whatever contacts typed.
 */
import type { FeedEvent, Health, Packs, Summary } from './api-client';

const MAX_ROWS = 500;
const count = new Intl.NumberFormat();
const percent = new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 1 });

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className !== undefined) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function renderTotals(root: HTMLElement, s: Summary): void {
  const set = (key: string, text: string): void => {
    for (const node of root.querySelectorAll<HTMLElement>(`[data-total="${key}"]`)) node.textContent = text;
  };
  for (const key of ['clicks', 'unlocks_started', 'messages_sent', 'messages_delivered', 'messages_read', 'messages_failed'] as const) set(key, count.format(s[key]));
  set('unique_contacts', `${count.format(s.unique_contacts)} contacts`);
  set('unlocks_completed', `${count.format(s.unlocks_completed)} completed`);
  set('delivery_success_rate', s.delivery_success_rate === null ? '–' : percent.format(s.delivery_success_rate));
}

export function renderPacks(body: HTMLTableSectionElement, p: Packs): void {
  const rows = p.packs.map((pack) => {
    const f = pack.funnel;
    const tr = el('tr');
    const name = el('th');
    name.scope = 'row';
    name.append(el('span', 'pack-title', pack.title ?? pack.id), el('span', 'pack-id', pack.in_catalog ? pack.id : `${pack.id} (not in catalog)`));
    tr.append(name);
    for (const n of [f.clicks, f.unlocks_started, f.unlocks_completed, f.messages_sent, f.messages_delivered, f.messages_read, f.messages_failed]) {
      tr.append(el('td', 'num', count.format(n)));
    }
    const funnel = el('td', 'funnel');
    const stages: Array<[string, number, number]> = [
      ['unlocked', f.unlocks_started, f.clicks],
      ['delivered', f.messages_delivered, f.messages_sent],
      ['read', f.messages_read, f.messages_delivered],
    ];
    for (const [label, n, of] of stages) {
      const share = of > 0 ? Math.min(1, n / of) : 0;
      const bar = el('span', 'bar');
      const fill = el('span', 'fill');
      fill.style.width = `${(share * 100).toFixed(1)}%`;
      bar.append(fill);
      const item = el('span', 'stage');
      item.append(el('span', 'stage-label', label), bar, el('span', 'stage-value', of > 0 ? percent.format(share) : '–'));
      funnel.append(item);
    }
    tr.append(funnel);
    return tr;
  });
  if (rows.length === 0) {
    const tr = el('tr');
    const td = el('td', 'muted', 'No packs in the catalog.');
    td.colSpan = 9;
    tr.append(td);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

export function renderHealth(node: HTMLElement, h: Health | undefined): void {
  if (h === undefined) {
    node.dataset.state = 'down';
    node.textContent = 'API: unreachable';
    return;
  }
  node.dataset.state = h.status === 'ok' ? 'ok' : 'down';
  const parts = [h.status === 'ok' ? 'API: healthy' : 'API: database unavailable'];
  if (h.sender !== null) parts.push(`queue ${count.format(h.sender.queue_depth)}`);
  const since = h.webhook?.seconds_since_last;
  parts.push(since === null || since === undefined ? 'no webhook yet' : `last webhook ${ago(since)}`);
  node.textContent = parts.join(' · ');
  node.title = `version ${h.version}, checked ${new Date(h.time).toLocaleTimeString()}`;
}

function ago(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

/** The event list, newest first, sorted by seq even when a repaired event arrives late. */
export class EventList {
  private readonly rows: HTMLLIElement[] = [];

  constructor(
    private readonly list: HTMLOListElement,
    private readonly empty: HTMLElement,
  ) {}

  add(events: readonly FeedEvent[]): void {
    for (const e of [...events].sort((a, b) => a.seq - b.seq)) this.insert(row(e), e.seq);
    while (this.rows.length > MAX_ROWS) this.rows.pop()?.remove();
    this.empty.hidden = this.rows.length > 0;
  }

  /** Shows only events whose type starts with one of the words (all when empty). */
  filter(words: readonly string[]): void {
    this.list.dataset.filter = words.join(' ');
    for (const r of this.rows) r.hidden = words.length > 0 && !words.some((w) => (r.dataset.type ?? '').includes(w));
  }

  private insert(node: HTMLLIElement, seq: number): void {
    // Rows are newest first; nearly always the new row goes on top.
    let i = 0;
    while (i < this.rows.length && Number(this.rows[i]?.dataset.seq) > seq) i++;
    // FeedClient hands on each seq once, so there is no duplicate to look for here.
    const before = this.rows[i];
    if (i >= MAX_ROWS) return;
    const words = (this.list.dataset.filter ?? '').split(' ').filter((w) => w !== '');
    node.hidden = words.length > 0 && !words.some((w) => (node.dataset.type ?? '').includes(w));
    this.list.insertBefore(node, before ?? null);
    this.rows.splice(i, 0, node);
  }
}

function row(e: FeedEvent): HTMLLIElement {
  const li = el('li', `event t-${e.type.replace(/\./g, '-')}`);
  li.dataset.seq = String(e.seq);
  li.dataset.type = e.type;
  const at = new Date(e.at);
  const time = el('time', 'when', at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }));
  time.dateTime = e.at;
  li.append(el('span', 'seq', `#${e.seq}`), time, el('span', 'type', e.type), el('span', 'what', describe(e)));
  return li;
}

function describe(e: FeedEvent): string {
  const d = e.data;
  const str = (key: string): string | undefined => (typeof d[key] === 'string' ? (d[key] as string) : typeof d[key] === 'number' ? String(d[key]) : undefined);
  const who = maskContact(str('contact'));
  const pack = str('pack');
  const bits: Array<string | undefined> = [];
  switch (e.type) {
    case 'click':
      bits.push(pack ?? `unknown trigger ${str('trigger') ?? ''}`.trim(), str('result')?.replace(/_/g, ' '));
      break;
    case 'message.sent': {
      const position = typeof d.position === 'number' ? d.position + 1 : undefined;
      bits.push(pack, position !== undefined ? `message ${position}` : str('kind'));
      break;
    }
    case 'message.status':
      bits.push(str('status'), str('error_code') !== undefined ? `error ${str('error_code')}` : undefined);
      break;
    case 'message.inbound':
      bits.push(str('type'));
      break;
    case 'delivery.failed':
      bits.push(pack, str('error_class'), str('error_code') !== undefined ? `error ${str('error_code')}` : undefined);
      break;
    default:
      bits.push(pack, str('messages') !== undefined ? `${str('messages')} messages` : undefined);
  }
  bits.push(who);
  return bits.filter((b) => b !== undefined && b !== '').join(' · ');
}

/** The last four digits are enough to follow one contact through the list. */
function maskContact(contact: string | undefined): string | undefined {
  return contact === undefined ? undefined : `…${contact.slice(-4)}`;
}
