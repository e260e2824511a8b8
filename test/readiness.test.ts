/**
 * Honest failure modes in one process: while another connection holds the write lock, the
 * webhook answers 503 and /api/health says not ready; once the lock is released, both recover
 * by themselves.
 */
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postSigned, send, startTestService, type TestService } from './helpers/webhook';

const body = (id: string): string =>
  JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '1', changes: [{ field: 'messages', value: { messages: [{ from: '16505550001', id, timestamp: '1750000000', type: 'text', text: { body: 'hi' } }] } }] }],
  });

describe('readiness follows the ability to commit', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService();
  });
  afterAll(async () => {
    await svc.stop();
  });

  const health = async (): Promise<{ status: number; json: { status: string; database: { ok: boolean; writable: boolean | null } } }> => {
    const answer = await send(`${svc.service.urls.api ?? ''}/health`, undefined, { method: 'GET' });
    return { status: answer.status, json: JSON.parse(answer.body) as { status: string; database: { ok: boolean; writable: boolean | null } } };
  };

  it('when the database is locked, then POSTs get 503 and health is not ready; when released, then both recover', async () => {
    expect((await postSigned(svc.url, body('wamid.ready.1'))).status).toBe(200);
    expect(await health()).toMatchObject({ status: 200, json: { status: 'ok', database: { ok: true, writable: true } } });

    const locker = new Database(svc.dir.dbPath);
    locker.exec('BEGIN IMMEDIATE');
    try {
      const refused = await postSigned(svc.url, body('wamid.ready.2'));
      expect(refused.status).toBe(503);
      expect(refused.headers['retry-after']).toBe('5');
      expect(await health()).toMatchObject({ status: 503, json: { status: 'unavailable', database: { ok: true, writable: false } } });
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
    // Meta retries the refused event; now it commits, and readiness comes back with it.
    expect((await postSigned(svc.url, body('wamid.ready.2'))).status).toBe(200);
    expect(await health()).toMatchObject({ status: 200, json: { status: 'ok', database: { writable: true } } });
    expect(svc.service.db.prepare("SELECT COUNT(*) FROM inbound_messages WHERE wamid LIKE 'wamid.ready.%'").pluck().get()).toBe(2);
  });
});
