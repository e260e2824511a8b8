/**
 * Opening the SQLite file: WAL with synchronous=FULL (a 200 to Meta is final, so a commit
 * must survive power loss), a short busy timeout (a lock wait blocks the event loop), and
 * the numbered migrations in `sql/`, each applied in its own transaction and recorded.
 */
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export type Db = Database.Database;

export const BUSY_TIMEOUT_MS = 100;

export interface OpenOptions {
  readonly readonly?: boolean;
  readonly busyTimeoutMs?: number;
  readonly migrate?: boolean;
}

export class DatabaseOpenError extends Error {
  constructor(
    readonly path: string,
    problem: string,
  ) {
    super(`database ${path}: ${problem}`);
    this.name = 'DatabaseOpenError';
  }
}

export function openDatabase(path: string, options: OpenOptions = {}): Db {
  const readonly = options.readonly ?? false;
  if (!readonly) mkdirSync(dirname(resolve(path)), { recursive: true });
  let db: Db;
  try {
    db = new Database(path, { readonly, fileMustExist: readonly, timeout: options.busyTimeoutMs ?? BUSY_TIMEOUT_MS });
    if (!readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
    }
    db.pragma('foreign_keys = ON');
    db.pragma('cache_size = -32000');
    // Savepoints (one per request and item in a group commit) keep their journal in memory, not in temp files.
    db.pragma('temp_store = MEMORY');
  } catch (error) {
    throw new DatabaseOpenError(path, describeSqliteError(error));
  }
  if (!readonly && options.migrate !== false) {
    // A damaged page would otherwise surface later as 500s on whichever request touches it.
    // quick_check reads every page once (about a second per GB), so only the opens that
    // migrate (the service's start, the CLI commands that write) pay for it.
    let problems: string[];
    try {
      problems = db.prepare('PRAGMA quick_check').pluck().all() as string[];
    } catch (error) {
      db.close();
      throw new DatabaseOpenError(path, describeSqliteError(error));
    }
    if (problems.length !== 1 || problems[0] !== 'ok') {
      db.close();
      throw new DatabaseOpenError(path, `corrupted (quick_check: ${problems.slice(0, 3).join('; ')}); restore from a backup with \`ctu restore FILE\``);
    }
    try {
      migrate(db);
    } catch (error) {
      db.close();
      throw new DatabaseOpenError(path, `migration failed: ${describeSqliteError(error)}`);
    }
  }
  return db;
}

function describeSqliteError(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') return `not a valid SQLite database or corrupted (${message}); restore from a backup`;
  return message;
}

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** The `sql/` folder beside package.json, found from here whether running from `src/` or `dist/src/`. */
export function sqlDirectory(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'sql'))) return join(dir, 'sql');
    dir = dirname(dir);
  }
  throw new Error(`cannot find the sql/ migrations folder above ${__dirname}`);
}

export function readMigrations(dir = sqlDirectory()): Migration[] {
  return readdirSync(dir)
    .filter((file) => /^\d{3}_[a-z0-9_]+\.sql$/.test(file))
    .sort()
    .map((file) => ({ version: Number(file.slice(0, 3)), name: file.slice(4, -4), sql: readFileSync(join(dir, file), 'utf8') }));
}

/** Applies every migration newer than the recorded ones; returns the versions applied. */
export function migrate(db: Db, migrations = readMigrations()): number[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const done = new Set(db.prepare('SELECT version FROM schema_migrations').pluck().all() as number[]);
  const newest = Math.max(0, ...done);
  const known = Math.max(0, ...migrations.map((m) => m.version));
  if (newest > known) throw new Error(`database schema version ${newest} is newer than this program's ${known}; upgrade the program`);
  const applied: number[] = [];
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  // A migration may rebuild a table others reference (SQLite's way to change a column), which
  // foreign-key enforcement would block; so keys are off while migrating and each migration
  // must leave none broken, checked before its COMMIT. (The pragma is a no-op inside a transaction.)
  const enforced = db.pragma('foreign_keys', { simple: true }) === 1;
  if (enforced) db.pragma('foreign_keys = OFF');
  try {
    for (const migration of migrations) {
      if (done.has(migration.version)) continue;
      db.transaction(() => {
        db.exec(migration.sql);
        const broken = db.pragma('foreign_key_check') as Array<{ table: string; parent: string }>;
        if (broken.length > 0) throw new Error(`migration ${migration.version} leaves ${broken.length} broken references (first: ${broken[0]?.table} → ${broken[0]?.parent})`);
        record.run(migration.version, migration.name, Date.now());
      }).immediate();
      applied.push(migration.version);
    }
  } finally {
    if (enforced) db.pragma('foreign_keys = ON');
  }
  return applied;
}

/** The schema as SQLite holds it, for the committed dump and its drift test. */
export function dumpSchema(db: Db): string {
  const rows = db
    .prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type DESC, name")
    .pluck()
    .all() as string[];
  return rows.map((sql) => `${sql};`).join('\n\n') + '\n';
}

/** Errors that mean "the database cannot commit right now" (answer 503, Meta retries). */
export function isStorageUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return (
    typeof code === 'string' &&
    /^SQLITE_(BUSY|LOCKED|FULL|IOERR|READONLY|CANTOPEN|PROTOCOL|NOMEM|CORRUPT|NOTADB)/.test(code)
  );
}
