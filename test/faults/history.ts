/**
 * The history checker: compares what Meta was told (acknowledged taps), what the database
 * holds (taps, unlocks, outbox rows) and what Meta received (the simulator's send log).
 * Every problem is a line of text, so a failure names the contact and what went wrong.
 */
import Database from 'better-sqlite3';
import type { SimSend } from '../../src/simulator';
import { orderProblems, outboxIdOf, positionsByContact, type PackSpec } from '../helpers/delivery';

export interface History {
  readonly acknowledgedTaps: number;
  readonly storedTaps: number;
  readonly unlocks: number;
  readonly outboxRows: number;
  readonly sends: number;
  /** Accepted sends beyond the first for the same outbox row (Meta saw the message twice). */
  readonly duplicateSends: number;
  /** Outbox rows resent after an ambiguous attempt (each a possible duplicate, counted). */
  readonly resentRows: number;
  readonly integrity: string;
  readonly problems: readonly string[];
}

export interface HistoryInput {
  readonly dbPath: string;
  readonly pack: PackSpec;
  /** Contacts whose tap got a 200 (one tap per contact, all on `pack`). */
  readonly acknowledged: Iterable<string>;
  readonly sends: readonly SimSend[];
  /** The simulator's own count of repeated callback data, to cross-check. */
  readonly simDuplicateSends: number;
}

const MAX_LISTED = 20; // enough to diagnose, short enough to read

interface OutboxLine {
  readonly id: number;
  readonly contact: string;
  readonly position: number;
  readonly state: string;
  readonly resent: number;
  readonly attempts: number;
  readonly error_class: string | null;
  readonly error_code: number | null;
  readonly last_error: string | null;
}

/** Why rows ended where they did: `state/class/code: last error` with a count, most common first. */
function reasons(rows: readonly OutboxLine[]): string[] {
  const counts = new Map<string, number>();
  for (const r of rows) {
    const key = `${r.state}/${r.error_class ?? '-'}/${r.error_code ?? '-'}: ${(r.last_error ?? '').slice(0, 100)}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]).map(([key, n]) => `${n}× ${key}`);
}

export function checkHistory(input: HistoryInput): History {
  const db = new Database(input.dbPath, { readonly: true, fileMustExist: true });
  try {
    const taps = new Set(db.prepare('SELECT contact FROM clicks WHERE pack_id = ?').pluck().all(input.pack.id) as string[]);
    const unlocks = new Map((db.prepare('SELECT contact, state FROM unlocks WHERE pack_id = ?').all(input.pack.id) as Array<{ contact: string; state: string }>).map((u) => [u.contact, u.state]));
    const rows = db.prepare('SELECT id, contact, position, state, resent, attempts, error_class, error_code, last_error FROM outbox WHERE kind = ?').all('pack') as OutboxLine[];
    const integrity = db.pragma('integrity_check', { simple: true }) as string;

    const problems: string[] = [];
    const note = (kind: string, list: readonly string[]): void => {
      if (list.length > 0) problems.push(`${kind} (${list.length}): ${list.slice(0, MAX_LISTED).join('; ')}`);
    };
    const acknowledged = [...input.acknowledged];
    note('acknowledged taps not stored', acknowledged.filter((c) => !taps.has(c)));
    note('acknowledged taps without a completed unlock', acknowledged.filter((c) => unlocks.get(c) !== 'completed'));
    note('unlocks not completed', [...unlocks].filter(([, state]) => state !== 'completed').map(([c, s]) => `${c}: ${s}`));
    const unfinished = rows.filter((r) => r.state !== 'accepted');
    note('outbox rows not accepted', unfinished.map((r) => `#${r.id} ${r.contact}@${r.position}: ${r.state} after ${r.attempts} attempts`));
    note('why outbox rows were not accepted', reasons(unfinished));
    if (rows.length !== unlocks.size * input.pack.size) problems.push(`${rows.length} outbox rows for ${unlocks.size} unlocks of ${input.pack.size} messages`);

    // Meta's view: every unlocked contact got positions 0..size-1, each not before the previous one.
    const byContact = positionsByContact(input.sends);
    const incomplete: string[] = [];
    const disorder: string[] = [];
    for (const contact of unlocks.keys()) {
      const list = byContact.get(contact) ?? [];
      const positions = new Set(list.map((x) => x.position));
      if (positions.size !== input.pack.size) incomplete.push(`${contact}: got ${[...positions].sort().join(',') || 'nothing'}`);
      disorder.push(...orderProblems(list).map((p) => `${contact}: ${p}`));
    }
    note('packs incomplete at Meta', incomplete);
    note('packs out of order at Meta', disorder);
    note('sends to contacts that never tapped', [...byContact.keys()].filter((c) => !unlocks.has(c)));

    // Duplicates: only for rows that had an ambiguous attempt and were resent, one extra copy at most.
    const resent = new Set(rows.filter((r) => r.resent === 1).map((r) => r.id));
    const duplicates = input.sends.filter((s) => s.attempt > 1);
    note('duplicates of rows never marked resent', duplicates.filter((s) => !resent.has(outboxIdOf(s) ?? -1)).map((s) => `${s.callbackData ?? '?'} attempt ${s.attempt}`));
    note('more than one extra copy', duplicates.filter((s) => s.attempt > 2).map((s) => `${s.callbackData ?? '?'} attempt ${s.attempt}`));
    if (duplicates.length !== input.simDuplicateSends) problems.push(`send log shows ${duplicates.length} duplicates, the simulator counted ${input.simDuplicateSends}`);
    if (integrity !== 'ok') problems.push(`integrity_check: ${integrity}`);

    return {
      acknowledgedTaps: acknowledged.length,
      storedTaps: taps.size,
      unlocks: unlocks.size,
      outboxRows: rows.length,
      sends: input.sends.length,
      duplicateSends: duplicates.length,
      resentRows: resent.size,
      integrity,
      problems,
    };
  } finally {
    db.close();
  }
}

/** Outbox rows still on their way (pending, being sent, or ambiguous). */
export function openOutboxRows(dbPath: string): number {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(`SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending', 'unknown')`).pluck().get() as number;
  } finally {
    db.close();
  }
}
