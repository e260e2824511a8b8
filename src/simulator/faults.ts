/**
 * Fault modes, switchable at run time (`sim.setFaults`, `POST /_sim/faults`). Every mode is a
 * rule that fires for the `next` N matching events (counted down), and after that with
 * `probability`; `to` narrows it to one contact. Send rules are checked per accepted-looking
 * request in a fixed order (hang, timeout, http429, http5xx, throughput, pairRateLimit,
 * error); the first that fires decides the answer. `slow` delays whatever answer is given.
 * Status rules are checked per status callback (drop, duplicate) or per send (reorder).
 */
import { z } from 'zod';
import type { Random } from './prng';

export const STATUS_NAMES = ['sent', 'delivered', 'read', 'failed'] as const;
export type SimStatusName = (typeof STATUS_NAMES)[number];

const rule = {
  probability: z.number().min(0).max(1).optional(),
  next: z.number().int().min(0).optional(),
  to: z.string().min(1).optional(),
};
const retryAfterSeconds = z.number().int().min(0).max(86_400).optional();
const httpStatus = z.number().int().min(400).max(599).optional();
const statuses = z.array(z.enum(STATUS_NAMES)).min(1).optional();

export const faultSettingsSchema = z.strictObject({
  /** HTTP 429 with Retry-After and Graph code 4, as the Graph edge answers when overloaded. */
  http429: z.strictObject({ ...rule, retryAfterSeconds }).optional(),
  /** 500 (code 131000) or 503 (code 131016). */
  http5xx: z.strictObject({ ...rule, status: z.union([z.literal(500), z.literal(502), z.literal(503), z.literal(504)]).optional(), retryAfterSeconds }).optional(),
  /** Code 130429, Cloud API throughput reached. */
  throughput: z.strictObject({ ...rule, retryAfterSeconds, status: httpStatus }).optional(),
  /** Code 131056, too many messages to the same contact. */
  pairRateLimit: z.strictObject({ ...rule, retryAfterSeconds, status: httpStatus }).optional(),
  /** Any Graph code, e.g. a permanent one (131047, 131026, 100, 190); `codes` picks one at random. */
  error: z
    .strictObject({ ...rule, code: z.number().int().min(0).optional(), codes: z.array(z.number().int().min(0)).min(1).optional(), status: httpStatus })
    .refine((e) => e.code !== undefined || e.codes !== undefined, 'error needs a code or codes')
    .optional(),
  /** Answer (whatever the answer is) only after delayMs. The message is accepted on arrival. */
  slow: z.strictObject({ ...rule, delayMs: z.number().int().min(0).max(600_000) }).optional(),
  /** Read the request, never answer, accept nothing: held until the client gives up or close(). */
  hang: z.strictObject(rule).optional(),
  /** Accept the message (logged, statuses sent) but never answer: an ambiguous send. */
  timeout: z.strictObject(rule).optional(),
  /** Accept the message, then report `failed` with this code instead of delivered/read. */
  asyncFailure: z.strictObject({ ...rule, code: z.number().int().min(0).optional() }).optional(),
  /** Per status callback: never delivered. */
  dropStatus: z.strictObject({ ...rule, statuses }).optional(),
  /** Per status callback: delivered `copies` extra times, each in its own POST. */
  duplicateStatus: z.strictObject({ ...rule, statuses, copies: z.number().int().min(1).max(5).optional() }).optional(),
  /** Per send: its statuses are delivered newest first (read before delivered before sent). */
  reorderStatuses: z.strictObject(rule).optional(),
  /** While true no status webhook is POSTed; held statuses go out when it ends. */
  webhookOutage: z.boolean().optional(),
});

export type FaultSettings = z.input<typeof faultSettingsSchema>;
type Parsed = z.output<typeof faultSettingsSchema>;
type Rule = { probability?: number | undefined; next?: number | undefined; to?: string | undefined };

export type AnswerFaultKind = 'hang' | 'timeout' | 'http429' | 'http5xx' | 'throughput' | 'pairRateLimit' | 'error';

export type AnswerFault =
  | { readonly kind: 'hang' }
  | { readonly kind: 'timeout' }
  | { readonly kind: 'http429' | 'http5xx' | 'throughput' | 'pairRateLimit' | 'error'; readonly code: number; readonly status?: number; readonly retryAfterSeconds?: number };

export interface SendFaults {
  readonly answer: AnswerFault | undefined;
  readonly delayMs: number;
  readonly failureCode: number | undefined; // asyncFailure
  readonly reorder: boolean;
}

export class FaultError extends Error {
  override readonly name = 'FaultError';
}

/** Validates JSON (from the control endpoint or code) into fault settings; throws FaultError naming the field. */
export function parseFaultSettings(input: unknown): Parsed {
  const result = faultSettingsSchema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  throw new FaultError(`${issue?.path.join('.') || 'faults'}: ${issue?.message ?? 'invalid'}`);
}

export class FaultState {
  private settings: Parsed = {};

  constructor(
    private readonly random: Random,
    private readonly onChange: (settings: Readonly<Parsed>) => void = () => undefined,
  ) {}

  /** Replaces every fault; `{}` clears them. */
  set(input: FaultSettings): void {
    this.settings = structuredClone(parseFaultSettings(input));
    this.onChange(this.settings);
  }

  /** Replaces only the modes named in `input`; a mode set to null is cleared. */
  update(input: Record<string, unknown>): void {
    const merged: Record<string, unknown> = { ...this.settings };
    for (const [key, value] of Object.entries(input)) {
      if (value === null) delete merged[key];
      else merged[key] = value;
    }
    this.set(merged);
  }

  /** The current settings, with `next` showing what is left. */
  current(): FaultSettings {
    return structuredClone(this.settings);
  }

  get webhookOutage(): boolean {
    return this.settings.webhookOutage === true;
  }

  /** `to` is the recipient's normalised digits (wa_id). */
  forSend(to: string): SendFaults {
    const s = this.settings;
    let answer: AnswerFault | undefined;
    if (this.fires(s.hang, to)) answer = { kind: 'hang' };
    else if (this.fires(s.timeout, to)) answer = { kind: 'timeout' };
    else if (s.http429 !== undefined && this.fires(s.http429, to)) answer = { kind: 'http429', code: 4, status: 429, retryAfterSeconds: s.http429.retryAfterSeconds ?? 1 };
    else if (s.http5xx !== undefined && this.fires(s.http5xx, to)) {
      const status = s.http5xx.status ?? 500;
      answer = { kind: 'http5xx', code: status === 500 ? 131000 : 131016, status, ...withRetryAfter(s.http5xx.retryAfterSeconds) };
    } else if (s.throughput !== undefined && this.fires(s.throughput, to)) {
      answer = { kind: 'throughput', code: 130429, ...withStatus(s.throughput.status), ...withRetryAfter(s.throughput.retryAfterSeconds) };
    } else if (s.pairRateLimit !== undefined && this.fires(s.pairRateLimit, to)) {
      answer = { kind: 'pairRateLimit', code: 131056, ...withStatus(s.pairRateLimit.status), ...withRetryAfter(s.pairRateLimit.retryAfterSeconds) };
    } else if (s.error !== undefined && this.fires(s.error, to)) {
      const codes = s.error.codes ?? [s.error.code ?? 131000];
      answer = { kind: 'error', code: codes[Math.floor(this.random() * codes.length)] ?? 131000, ...withStatus(s.error.status) };
    }
    const delayMs = s.slow !== undefined && this.fires(s.slow, to) ? s.slow.delayMs : 0;
    const failureCode = s.asyncFailure !== undefined && this.fires(s.asyncFailure, to) ? (s.asyncFailure.code ?? 131026) : undefined;
    return { answer, delayMs, failureCode, reorder: this.fires(s.reorderStatuses, to) };
  }

  /** How many times one status callback is delivered: 0 (dropped), 1, or more (duplicated). */
  copiesOfStatus(status: SimStatusName, to: string): number {
    const { dropStatus: drop, duplicateStatus: dup } = this.settings;
    if (drop !== undefined && (drop.statuses?.includes(status) ?? true) && this.fires(drop, to)) return 0;
    if (dup !== undefined && (dup.statuses?.includes(status) ?? true) && this.fires(dup, to)) return 1 + (dup.copies ?? 1);
    return 1;
  }

  private fires(r: Rule | undefined, to: string): boolean {
    if (r === undefined || (r.to !== undefined && r.to.replace(/^\+/, '') !== to)) return false;
    if (r.next !== undefined && r.next > 0) {
      r.next -= 1;
      return true;
    }
    return r.probability !== undefined && r.probability > 0 && this.random() < r.probability;
  }
}

const withStatus = (status: number | undefined): { status?: number } => (status !== undefined ? { status } : {});
const withRetryAfter = (seconds: number | undefined): { retryAfterSeconds?: number } => (seconds !== undefined ? { retryAfterSeconds: seconds } : {});
