/**
 * API keys for the dashboard feed. A key is `ctu_` + 43 base64url characters (256 random bits),
 * shown once when created; only its SHA-256 is stored. The writing functions take the
 * writable handle (the CLI's); `createKeyReader` works on the feed's read-only handle.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Db } from './database';

export const KEY_PREFIX = 'ctu_';
/** The shape every key has; anything else is rejected before a lookup. */
export const KEY_PATTERN = /^ctu_[A-Za-z0-9_-]{20,100}$/;
/** Printed by sandbox mode; it only exists in a database that ran in sandbox mode. */
export const SANDBOX_KEY = 'ctu_sandbox_development_key_not_for_production';
export const SANDBOX_KEY_NAME = 'sandbox (development only)';

const SHOWN_PREFIX_LENGTH = 12;

export interface ApiKeyInfo {
  readonly id: number;
  readonly name: string;
  readonly prefix: string;
  readonly createdAt: number;
  readonly revokedAt: number | null;
}

export interface KeyRow {
  readonly id: number;
  readonly name: string;
  readonly prefix: string;
  readonly created_at: number;
  readonly revoked_at: number | null;
}

export function hashKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

function toInfo(row: KeyRow): ApiKeyInfo {
  return { id: row.id, name: row.name, prefix: row.prefix, createdAt: row.created_at, revokedAt: row.revoked_at };
}

/** Creates a key; the returned `key` is the only time it exists in clear. */
export function createApiKey(db: Db, name: string, now = Date.now()): { id: number; key: string } {
  const trimmed = name.trim();
  if (trimmed === '' || trimmed.length > 100) throw new Error('a key name must be 1-100 characters');
  const key = KEY_PREFIX + randomBytes(32).toString('base64url');
  const info = db
    .prepare<[string, string, Buffer, number]>('INSERT INTO api_keys (name, prefix, key_sha256, created_at) VALUES (?, ?, ?, ?)')
    .run(trimmed, key.slice(0, SHOWN_PREFIX_LENGTH), hashKey(key), now);
  return { id: Number(info.lastInsertRowid), key };
}

export function listApiKeys(db: Db): ApiKeyInfo[] {
  return db.prepare<[], KeyRow>('SELECT id, name, prefix, created_at, revoked_at FROM api_keys ORDER BY id').all().map(toInfo);
}

/** True when the key existed and was active; sockets using it are closed within seconds. */
export function revokeApiKey(db: Db, id: number, now = Date.now()): boolean {
  return db.prepare<[number, number]>('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now, id).changes === 1;
}

/** Makes sure the fixed development key exists (sandbox mode only) and returns it to print. */
export function ensureSandboxKey(db: Db, now = Date.now()): string {
  db.prepare<[string, string, Buffer, number]>(
    'INSERT INTO api_keys (name, prefix, key_sha256, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (key_sha256) DO NOTHING',
  ).run(SANDBOX_KEY_NAME, SANDBOX_KEY.slice(0, SHOWN_PREFIX_LENGTH), hashKey(SANDBOX_KEY), now);
  return SANDBOX_KEY;
}

export type KeyReader = ReturnType<typeof createKeyReader>;

/** Read-only lookups for the feed. */
export function createKeyReader(db: Db) {
  const byHash = db.prepare<[Buffer], KeyRow>(
    'SELECT id, name, prefix, created_at, revoked_at FROM api_keys WHERE key_sha256 = ?',
  );
  const revoked = db.prepare<[], { id: number }>('SELECT id FROM api_keys WHERE revoked_at IS NOT NULL');
  return {
    /** The active key with this clear text, or undefined. */
    findActive(key: string): ApiKeyInfo | undefined {
      if (!KEY_PATTERN.test(key)) return undefined;
      const row = byHash.get(hashKey(key));
      return row === undefined || row.revoked_at !== null ? undefined : toInfo(row);
    },
    revokedIds(): Set<number> {
      return new Set(revoked.all().map((r) => r.id));
    },
  };
}
