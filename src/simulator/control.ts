/**
 * The simulator's control surface over HTTP, for the CLI and for tests in other processes:
 *
 *   GET  /_sim/health
 *   GET  /_sim/faults                 current fault settings (`next` shows what is left)
 *   POST /_sim/faults                 replace all faults with the JSON body (`{}` clears)
 *   PATCH /_sim/faults                replace only the modes named (null clears one)
 *   GET  /_sim/statuses               status behaviour (delays, probabilities)
 *   POST /_sim/statuses               change some of it
 *   POST /_sim/webhook                {"url", "appSecret"?}: where status webhooks go
 *   GET  /_sim/sends?to=&limit=       the send log, newest last (limit defaults to 1000)
 *   GET  /_sim/stats                  counters
 *   POST /_sim/reset                  clear the log and counters
 *
 * Unauthenticated on purpose: the simulator binds to loopback and holds no real data.
 */
import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { FaultError, type FaultSettings } from './faults';
import { send } from './graph-api';
import type { SimSend } from './send-log';
import type { StatusBehaviour } from './status-webhooks';

const ms = z.number().int().min(0).max(3_600_000).optional();
const share = z.number().min(0).max(1).optional();
export const statusBehaviourPatchSchema = z.strictObject({
  sentDelayMs: ms,
  deliveredDelayMs: ms,
  readDelayMs: ms,
  jitterMs: ms,
  readProbability: share,
  failureProbability: share,
  failureCode: z.number().int().min(0).optional(),
  includePricing: z.boolean().optional(),
});

const webhookSchema = z.strictObject({ url: z.url({ protocol: /^http$/ }), appSecret: z.string().min(1).optional() });

export interface ControlTarget {
  setFaults(settings: FaultSettings): void;
  updateFaults(patch: Record<string, unknown>): void;
  faults(): FaultSettings;
  configureStatuses(patch: Partial<StatusBehaviour>): StatusBehaviour;
  statusBehaviour(): StatusBehaviour;
  setWebhook(url: string, appSecret?: string): void;
  sendsTo(contact: string): SimSend[];
  /** Every accepted send, in arrival order (a live array). */
  readonly sends: readonly SimSend[];
  stats(): unknown;
  reset(): void;
}

export function handleControl(sim: ControlTarget, method: string, url: URL, body: Buffer, res: ServerResponse): void {
  const json = (status: number, value: unknown): void => send(res, status, JSON.stringify(value));
  const problem = (status: number, message: string): void => json(status, { error: { message } });
  const route = `${method} ${url.pathname.replace(/\/$/, '')}`;
  try {
    switch (route) {
      case 'GET /_sim/health':
        return json(200, { ok: true });
      case 'GET /_sim/faults':
        return json(200, sim.faults());
      case 'POST /_sim/faults':
        sim.setFaults(parseJson(body) as FaultSettings);
        return json(200, sim.faults());
      case 'PATCH /_sim/faults': {
        const patch = parseJson(body);
        if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) throw new FaultError('faults: body must be a JSON object');
        sim.updateFaults(patch as Record<string, unknown>);
        return json(200, sim.faults());
      }
      case 'GET /_sim/statuses':
        return json(200, sim.statusBehaviour());
      case 'POST /_sim/statuses': {
        const patch = statusBehaviourPatchSchema.safeParse(parseJson(body));
        if (!patch.success) return problem(400, `statuses: ${patch.error.issues[0]?.message ?? 'invalid'}`);
        return json(200, sim.configureStatuses(definedOnly(patch.data)));
      }
      case 'POST /_sim/webhook': {
        const target = webhookSchema.safeParse(parseJson(body));
        if (!target.success) return problem(400, `webhook: ${target.error.issues[0]?.message ?? 'invalid'}`);
        sim.setWebhook(target.data.url, target.data.appSecret);
        return json(200, { url: target.data.url });
      }
      case 'GET /_sim/sends': {
        const to = url.searchParams.get('to');
        const limit = Math.min(Math.max(Number(url.searchParams.get('limit') ?? 1000) || 1000, 1), 100_000);
        const sends = to === null ? sim.sends : sim.sendsTo(to);
        return json(200, { total: sends.length, sends: sends.slice(-limit) });
      }
      case 'GET /_sim/stats':
        return json(200, sim.stats());
      case 'POST /_sim/reset':
        sim.reset();
        return json(200, { ok: true });
      default:
        return problem(404, `no simulator control route ${route}`);
    }
  } catch (error) {
    if (error instanceof FaultError || error instanceof SyntaxError) return problem(400, error.message);
    throw error;
  }
}

function parseJson(body: Buffer): unknown {
  return body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
}

function definedOnly<T extends object>(value: T): Partial<{ [K in keyof T]: Exclude<T[K], undefined> }> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<{ [K in keyof T]: Exclude<T[K], undefined> }>;
}
