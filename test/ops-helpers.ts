/**
 * Helpers for the operations tests (test/ops-*.test.ts): signed webhook events and a bounded
 * load of POSTs. Starting and stopping the compiled CLI is in helpers/cli.ts.
 */
import { postSigned, TEST_SECRET } from './helpers/webhook';

/** A signed Meta callback with one inbound text message; `at` is Meta's timestamp (ms). */
export function inboundEvent(wamid: string, at = Date.now(), padding = 0): string {
  const text = { body: `event ${wamid}${padding > 0 ? ' ' + 'x'.repeat(padding) : ''}` };
  const message = { from: '16505551234', id: wamid, timestamp: String(Math.floor(at / 1000)), type: 'text', text };
  return JSON.stringify({ object: 'whatsapp_business_account', entry: [{ id: '1', changes: [{ field: 'messages', value: { messages: [message] } }] }] });
}

export interface Load {
  /** wamids answered 200 so far. */
  readonly acked: string[];
  readonly answers: Map<number, number>;
  sent(): number;
  /** Stops the posters and waits for the requests in flight. */
  stop(): Promise<void>;
}

/** `concurrency` posters sending distinct events until stopped (or `maxPosts`); every answer counted. */
export function startLoad(url: string, prefix: string, concurrency = 8, maxPosts = 200_000, padding = 0): Load {
  const acked: string[] = [];
  const answers = new Map<number, number>();
  let next = 0;
  let running = true;
  const worker = async (): Promise<void> => {
    while (running && next < maxPosts) {
      const wamid = `wamid.${prefix}.${next++}`;
      try {
        const answer = await postSigned(url, inboundEvent(wamid, Date.now(), padding), TEST_SECRET, { timeoutMs: 10_000 });
        answers.set(answer.status, (answers.get(answer.status) ?? 0) + 1);
        if (answer.status === 200) acked.push(wamid);
      } catch {
        answers.set(0, (answers.get(0) ?? 0) + 1); // connection refused or reset: not acknowledged
      }
    }
  };
  const workers = Array.from({ length: concurrency }, () => worker());
  return {
    acked,
    answers,
    sent: () => next,
    stop: async () => {
      running = false;
      await Promise.all(workers);
    },
  };
}

export function waitFor(condition: () => boolean, timeoutMs: number, stepMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (condition()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`condition not met within ${timeoutMs} ms`));
      setTimeout(poll, stepMs);
    };
    poll();
  });
}
