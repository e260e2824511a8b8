/**
 * Configuration: read once from the environment (and a `.env` file, which never overrides
 * a variable that is already set), validated, and frozen. A bad value stops start-up with
 * a message naming the variable. Settings resolve explicit override → environment → default.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { parseDuration } from './duration';

export const SANDBOX_APP_SECRET = 'ctu-sandbox-app-secret';
export const SANDBOX_VERIFY_TOKEN = 'ctu-sandbox-verify-token';
export const SANDBOX_PHONE_NUMBER_ID = '100000000000001';
export const DEFAULT_GRAPH_URL = 'https://graph.facebook.com';
export const DEFAULT_GRAPH_VERSION = 'v23.0';

export type Role = 'all' | 'webhook' | 'feed';

export interface Config {
  readonly sandbox: boolean;
  readonly appSecrets: readonly string[]; // current first, then previous while rotating
  readonly verifyToken: string;
  readonly accessToken: string | undefined;
  readonly phoneNumberId: string;
  readonly graphUrl: string | undefined; // undefined in sandbox: the built-in simulator decides
  readonly graphVersion: string;
  readonly databasePath: string;
  readonly packsFile: string | undefined;
  readonly host: string;
  readonly ports: Readonly<{ webhook: number; ws: number; api: number; metrics: number }>;
  readonly dashboardOrigins: readonly string[];
  readonly sendRatePerSecond: number;
  readonly unlockMaxTapAgeMs: number;
  readonly send: Readonly<{ connectTimeoutMs: number; timeoutMs: number; maxAgeMs: number; unknownWaitMs: number }>;
  /** Scheduled backups; `dir` undefined means off. */
  readonly backup: Readonly<{ dir: string | undefined; intervalMs: number; keep: number }>;
  /** Days of raw payloads and events kept; undefined means retention is off. */
  readonly retentionDays: number | undefined;
  readonly webhookBodyLimitBytes: number;
  readonly logLevel: string;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** Environment with `.env` (in the working directory) underneath it. */
export function readEnvironment(cwd = process.cwd(), env: Env = process.env): Env {
  const file = resolve(cwd, '.env');
  if (!existsSync(file)) return env;
  const fromFile = parseEnv(readFileSync(file, 'utf8'));
  return { ...fromFile, ...env };
}

export function loadConfig(env: Env = readEnvironment()): Config {
  const get = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };
  const accessToken = get('META_ACCESS_TOKEN');
  const sandbox = accessToken === undefined;

  const appSecret = get('META_APP_SECRET') ?? (sandbox ? SANDBOX_APP_SECRET : undefined);
  if (appSecret === undefined) {
    throw new ConfigError('META_APP_SECRET', 'required when META_ACCESS_TOKEN is set (it signs every webhook POST)');
  }
  const previous = get('META_APP_SECRET_PREVIOUS');
  const verifyToken = get('META_VERIFY_TOKEN') ?? (sandbox ? SANDBOX_VERIFY_TOKEN : undefined);
  if (verifyToken === undefined) {
    throw new ConfigError('META_VERIFY_TOKEN', 'required when META_ACCESS_TOKEN is set (the GET handshake checks it)');
  }
  const phoneNumberId = get('META_PHONE_NUMBER_ID') ?? (sandbox ? SANDBOX_PHONE_NUMBER_ID : undefined);
  if (phoneNumberId === undefined) {
    throw new ConfigError('META_PHONE_NUMBER_ID', 'required when META_ACCESS_TOKEN is set');
  }
  if (!/^\d{1,32}$/.test(phoneNumberId)) throw new ConfigError('META_PHONE_NUMBER_ID', `expected digits, got "${phoneNumberId}"`);

  const graphUrlRaw = get('META_GRAPH_URL') ?? (sandbox ? undefined : DEFAULT_GRAPH_URL);
  const graphUrl = graphUrlRaw === undefined ? undefined : parseUrl('META_GRAPH_URL', graphUrlRaw);
  const graphVersion = get('META_GRAPH_VERSION') ?? DEFAULT_GRAPH_VERSION;
  if (!/^v\d+\.\d+$/.test(graphVersion)) throw new ConfigError('META_GRAPH_VERSION', `expected a version like v23.0, got "${graphVersion}"`);

  const host = get('HOST') ?? (sandbox ? '127.0.0.1' : '0.0.0.0');
  const ports = {
    webhook: parsePort('WEBHOOK_PORT', get('WEBHOOK_PORT'), 3000),
    ws: parsePort('WS_PORT', get('WS_PORT'), 3001),
    api: parsePort('API_PORT', get('API_PORT'), 3002),
    metrics: parsePort('METRICS_PORT', get('METRICS_PORT'), 9464),
  };
  // The live page's own origin, under each name a browser on this machine may use for it.
  const loopback = ['0.0.0.0', '::', '127.0.0.1', 'localhost', '::1'].includes(host);
  const pageHosts = loopback ? ['127.0.0.1', 'localhost'] : [host];
  const dashboardOrigins = (get('DASHBOARD_ORIGINS') ?? pageHosts.map((h) => `http://${h}:${ports.api}`).join(','))
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((origin) => {
      const url = parseUrl('DASHBOARD_ORIGINS', origin);
      if (url.replace(/\/$/, '') !== new URL(url).origin) throw new ConfigError('DASHBOARD_ORIGINS', `"${origin}" is not an origin (scheme://host[:port])`);
      return new URL(url).origin;
    });

  const rate = get('SEND_RATE_PER_SECOND') ?? '80';
  const sendRatePerSecond = Number(rate);
  if (!Number.isFinite(sendRatePerSecond) || sendRatePerSecond <= 0 || sendRatePerSecond > 100_000) {
    throw new ConfigError('SEND_RATE_PER_SECOND', `expected a positive number up to 100000, got "${rate}"`);
  }
  const unlockMaxTapAgeMs = durationVar('UNLOCK_MAX_TAP_AGE', get('UNLOCK_MAX_TAP_AGE') ?? '24h');
  const send = {
    connectTimeoutMs: durationVar('SEND_CONNECT_TIMEOUT', get('SEND_CONNECT_TIMEOUT') ?? '5s'),
    timeoutMs: durationVar('SEND_TIMEOUT', get('SEND_TIMEOUT') ?? '20s'),
    maxAgeMs: durationVar('SEND_MAX_AGE', get('SEND_MAX_AGE') ?? '24h'),
    unknownWaitMs: durationVar('SEND_UNKNOWN_WAIT', get('SEND_UNKNOWN_WAIT') ?? '2m'),
  };
  const backupInterval = get('BACKUP_INTERVAL') ?? '24h';
  const backupIntervalMs = parseDuration(backupInterval);
  if (backupIntervalMs === undefined || backupIntervalMs < 60_000) throw new ConfigError('BACKUP_INTERVAL', `expected a duration of at least 1m, like 6h; got "${backupInterval}"`);
  const backupKeepRaw = get('BACKUP_KEEP') ?? '7';
  const backupKeep = Number(backupKeepRaw);
  if (!Number.isInteger(backupKeep) || backupKeep < 1 || backupKeep > 1000) throw new ConfigError('BACKUP_KEEP', `expected a whole number 1-1000, got "${backupKeepRaw}"`);
  const backupDir = get('BACKUP_DIR');
  const retentionRaw = get('RETENTION_DAYS') ?? '30';
  const retentionOff = retentionRaw === '0' || retentionRaw.toLowerCase() === 'off';
  const retentionDays = retentionOff ? undefined : Number(retentionRaw);
  if (retentionDays !== undefined && (!Number.isInteger(retentionDays) || retentionDays < 1 || retentionDays > 36_500)) {
    throw new ConfigError('RETENTION_DAYS', `expected whole days (1-36500), 0 or off; got "${retentionRaw}"`);
  }
  const logLevel = get('LOG_LEVEL') ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `expected one of fatal, error, warn, info, debug, trace, silent; got "${logLevel}"`);
  }

  return deepFreeze({
    sandbox,
    appSecrets: previous === undefined ? [appSecret] : [appSecret, previous],
    verifyToken,
    accessToken,
    phoneNumberId,
    graphUrl,
    graphVersion,
    databasePath: resolve(get('DATABASE_PATH') ?? './data/click-to-unlock.db'),
    packsFile: get('PACKS_FILE'),
    host,
    ports,
    dashboardOrigins,
    sendRatePerSecond,
    unlockMaxTapAgeMs,
    send,
    backup: { dir: backupDir === undefined ? undefined : resolve(backupDir), intervalMs: backupIntervalMs, keep: backupKeep },
    retentionDays,
    webhookBodyLimitBytes: 4 * 1024 * 1024,
    logLevel,
  });
}

function parsePort(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(name, `expected a port 0-65535, got "${raw}"`);
  return port;
}

function parseUrl(name: string, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, `expected an http(s) URL, got "${raw}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(name, `expected an http(s) URL, got "${raw}"`);
  return raw.replace(/\/+$/, '');
}

function durationVar(name: string, raw: string): number {
  const ms = parseDuration(raw);
  if (ms === undefined || ms <= 0) throw new ConfigError(name, `expected a duration like 24h, 90m or 30s, got "${raw}"`);
  return ms;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
