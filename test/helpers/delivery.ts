/**
 * Shared helpers for the delivery tests: a Meta simulator in the test process wired to a
 * service (in-process, or the compiled CLI), a small pack catalog whose message bodies name
 * their position, a controllable clock, signed taps, and readers for the outbox and the
 * event log. Loopback only; every wait is bounded.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/log';
import { parseCatalog, type Catalog } from '../../src/packs';
import type { SenderSettings } from '../../src/sender';
import { startService, type RunningService } from '../../src/service';
import { buildTapPayload, startSimulator, type SimSend, type Simulator, type SimulatorOptions } from '../../src/simulator';
import type { Db } from '../../src/store/database';
import type { OutboxRow, UnlockRow } from '../../src/store/delivery-store';
import { makeTempDir, postSigned, TEST_SECRET, TEST_VERIFY_TOKEN, testEnv, type HttpAnswer, type TempDir } from './webhook';

/** Pack message bodies read `<pack>#<position>`, so the simulator's send log shows order. */
export function packBody(pack: string, position: number): string {
  return `${pack}#${position}`;
}

export interface PackSpec {
  readonly id: string;
  readonly size: number;
}

export const SMALL_PACKS: readonly PackSpec[] = [
  { id: 'trio', size: 3 },
  { id: 'duo', size: 2 },
];

export function triggerOf(pack: string): string {
  return `unlock:${pack}`;
}

export function catalogJson(packs: readonly PackSpec[] = SMALL_PACKS): { packs: unknown[] } {
  return {
    packs: packs.map((p) => ({
      id: p.id,
      trigger: triggerOf(p.id),
      messages: Array.from({ length: p.size }, (_, i) => ({ type: 'text', text: { body: packBody(p.id, i) } })),
    })),
  };
}

export function smallCatalog(packs: readonly PackSpec[] = SMALL_PACKS): Catalog {
  return parseCatalog(catalogJson(packs));
}

/** Writes the catalog as a PACKS_FILE into `dir` and returns its path. */
export function writeCatalogFile(dir: string, packs: readonly PackSpec[] = SMALL_PACKS): string {
  const file = join(dir, 'packs.json');
  writeFileSync(file, JSON.stringify(catalogJson(packs)));
  return file;
}

/** `{pack, position}` of a simulator send of one of our pack messages; undefined for anything else. */
export function positionOf(send: SimSend): { pack: string; position: number } | undefined {
  const body = (send.body as { text?: { body?: unknown } }).text?.body;
  if (typeof body !== 'string') return undefined;
  const m = /^([a-z0-9_-]+)#(\d+)$/.exec(body);
  return m === null ? undefined : { pack: m[1] as string, position: Number(m[2]) };
}

/** The outbox row id a send carried in biz_opaque_callback_data (`ctu:o:<id>`). */
export function outboxIdOf(send: SimSend): number | undefined {
  const m = /^ctu:o:(\d+)$/.exec(send.callbackData ?? '');
  return m === null ? undefined : Number(m[1]);
}

/** A clock that stands still until advanced, so backoff delays can be asserted exactly. */
export interface ManualClock {
  (): number;
  advance(ms: number): number;
  set(ms: number): void;
}

export function manualClock(start = Date.now()): ManualClock {
  let now = start;
  const clock = (() => now) as ManualClock;
  clock.advance = (ms: number) => (now += ms);
  clock.set = (ms: number) => {
    now = ms;
  };
  return clock;
}

/** The environment that points a service at `sim` instead of its built-in simulator. */
export function simEnv(sim: Simulator, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    META_GRAPH_URL: sim.url,
    META_ACCESS_TOKEN: sim.accessToken,
    META_PHONE_NUMBER_ID: sim.phoneNumberId,
    META_APP_SECRET: TEST_SECRET,
    META_VERIFY_TOKEN: TEST_VERIFY_TOKEN,
    HOST: '127.0.0.1',
    SEND_RATE_PER_SECOND: '1000',
    SEND_TIMEOUT: '300ms',
    SEND_CONNECT_TIMEOUT: '300ms',
    SEND_UNKNOWN_WAIT: '1s',
    ...extra,
  };
}

/** An outbox row as stored, with the error columns the store's row type leaves out. */
export type OutboxRecord = OutboxRow & { readonly error_code: number | null; readonly error_class: string | null; readonly last_error: string | null };

export interface RigOptions {
  readonly env?: Record<string, string | undefined>;
  readonly packs?: readonly PackSpec[];
  readonly clock?: () => number;
  readonly random?: () => number;
  readonly sender?: Partial<SenderSettings>;
  readonly sim?: SimulatorOptions;
}

export interface DeliveryRig {
  readonly sim: Simulator;
  readonly service: RunningService;
  readonly db: Db;
  readonly url: string;
  readonly dir: TempDir;
  /** POSTs one signed tap (a fresh wamid, timestamped now by the real clock). */
  tap(contact: string, pack: string, options?: { wamid?: string; timestampSeconds?: number }): Promise<HttpAnswer>;
  rows(contact: string): OutboxRecord[];
  row(id: number): OutboxRecord;
  unlock(contact: string, pack: string): UnlockRow | undefined;
  events(type: string, contact?: string): Array<Record<string, unknown>>;
  /** Waits until `check` is truthy, re-checked on simulator activity and every 25 ms. */
  until<T>(check: () => T | undefined | null | false, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

/** A simulator in this process and the service in this process, wired to each other. */
export async function startDeliveryRig(options: RigOptions = {}): Promise<DeliveryRig> {
  const sim = await startSimulator({ appSecret: TEST_SECRET, seed: 7, ...options.sim });
  const dir = makeTempDir('ctu-delivery-');
  let service: RunningService;
  try {
    const config = loadConfig(testEnv(dir.dbPath, simEnv(sim, options.env)));
    service = await startService(config, {
      log: createLogger('silent'),
      catalog: smallCatalog(options.packs),
      ...(options.clock !== undefined ? { clock: options.clock } : {}),
      ...(options.random !== undefined ? { random: options.random } : {}),
      ...(options.sender !== undefined ? { sender: options.sender } : {}),
    });
  } catch (error) {
    await sim.close();
    dir.remove();
    throw error;
  }
  const url = service.urls.webhook as string;
  sim.setWebhook(url, TEST_SECRET);
  const db = service.db;
  const byContact = db.prepare<[string], OutboxRecord>('SELECT * FROM outbox WHERE contact = ? ORDER BY id');
  const byId = db.prepare<[number], OutboxRecord>('SELECT * FROM outbox WHERE id = ?');
  const unlockOf = db.prepare<[string, string], UnlockRow>('SELECT * FROM unlocks WHERE contact = ? AND pack_id = ?');
  const eventsOf = db.prepare<[string], { data: string }>('SELECT data FROM events WHERE type = ? ORDER BY seq');
  return {
    sim,
    service,
    db,
    url,
    dir,
    tap: (contact, pack, tapOptions = {}) => {
      const payload = buildTapPayload({ contact, trigger: triggerOf(pack), phoneNumberId: sim.phoneNumberId, ...tapOptions }, TEST_SECRET);
      return postSigned(url, payload.body, TEST_SECRET);
    },
    rows: (contact) => byContact.all(contact),
    row: (id) => {
      const row = byId.get(id);
      if (row === undefined) throw new Error(`no outbox row ${id}`);
      return row;
    },
    unlock: (contact, pack) => unlockOf.get(contact, pack),
    events: (type, contact) =>
      eventsOf
        .all(type)
        .map((e) => JSON.parse(e.data) as Record<string, unknown>)
        .filter((e) => contact === undefined || e.contact === contact),
    until: (check, timeoutMs = 10_000) => sim.waitFor(check, timeoutMs),
    stop: async () => {
      await service.close();
      await sim.close();
      dir.remove();
    },
  };
}

/** What happened to one outbox row, for failure messages: the row, what Meta saw of it, its events (times relative to the row's creation). */
export function historyOf(rig: DeliveryRig, outboxId: number): Record<string, unknown> {
  const row = rig.row(outboxId);
  const mine = (callbackData: string | undefined): boolean => callbackData === `ctu:o:${outboxId}`;
  const since = (at: number): number => at - row.created_at;
  return {
    row: { position: row.position, state: row.state, attempts: row.attempts, resent: row.resent, error_code: row.error_code, last_error: row.last_error },
    accepted: rig.sim.sends.filter((s) => mine(s.callbackData)).map((s) => ({ at: since(s.acceptedAt), answered: s.answered, attempt: s.attempt })),
    rejected: rig.sim.rejections.filter((x) => mine(x.callbackData)).map((x) => ({ at: since(x.at), fault: x.fault, code: x.code })),
    statuses: rig.sim.statusDeliveries.filter((x) => mine(x.callbackData)).map((x) => ({ at: since(x.deliveredAt), status: x.status })),
    events: rig
      .events('delivery.failed')
      .concat(rig.events('message.sent'))
      .filter((e) => e.outbox_id === outboxId)
      .map((e) => ({ reason: e.reason, wamid: e.wamid })),
  };
}

/** Per contact, the pack positions in the order the simulator accepted them. */
export function positionsByContact(sends: readonly SimSend[]): Map<string, Array<{ pack: string; position: number; attempt: number }>> {
  const map = new Map<string, Array<{ pack: string; position: number; attempt: number }>>();
  for (const send of sends) {
    const at = positionOf(send);
    if (at === undefined) continue;
    let list = map.get(send.waId);
    if (list === undefined) map.set(send.waId, (list = []));
    list.push({ ...at, attempt: send.attempt });
  }
  return map;
}

/**
 * Order problems in one contact's sends: a position that is not the next one of its pack.
 * A repeat of the position just sent (a counted resend) is not an inversion.
 */
export function orderProblems(list: ReadonlyArray<{ pack: string; position: number }>): string[] {
  const next = new Map<string, number>();
  const problems: string[] = [];
  for (const { pack, position } of list) {
    const expected = next.get(pack) ?? 0;
    if (position === expected) next.set(pack, expected + 1);
    else if (position !== expected - 1) problems.push(`${pack}#${position} where ${pack}#${expected} was due`);
  }
  return problems;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
