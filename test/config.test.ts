import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  DEFAULT_GRAPH_URL,
  DEFAULT_GRAPH_VERSION,
  loadConfig,
  readEnvironment,
  SANDBOX_APP_SECRET,
  SANDBOX_PHONE_NUMBER_ID,
  SANDBOX_VERIFY_TOKEN,
} from '../src/config';
import { makeTempDir } from './helpers/webhook';

const PRODUCTION = {
  META_ACCESS_TOKEN: 'EAAG-token',
  META_APP_SECRET: 'prod-secret',
  META_VERIFY_TOKEN: 'prod-verify',
  META_PHONE_NUMBER_ID: '106540352242922',
};

/** The ConfigError thrown by loadConfig(env), or a failure when it does not throw one. */
function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  // toMatchObject: later issues add their own settings; these are the webhook foundation's, each exact.
  it('when the environment is empty, then it is sandbox mode with every documented default', () => {
    expect(loadConfig({})).toMatchObject({
      sandbox: true,
      appSecrets: [SANDBOX_APP_SECRET],
      verifyToken: SANDBOX_VERIFY_TOKEN,
      accessToken: undefined,
      phoneNumberId: SANDBOX_PHONE_NUMBER_ID,
      graphUrl: undefined,
      graphVersion: DEFAULT_GRAPH_VERSION,
      databasePath: resolve('./data/click-to-unlock.db'),
      packsFile: undefined,
      host: '127.0.0.1',
      ports: { webhook: 3000, ws: 3001, api: 3002, metrics: 9464 },
      dashboardOrigins: ['http://127.0.0.1:3002', 'http://localhost:3002'],
      sendRatePerSecond: 80,
      unlockMaxTapAgeMs: 24 * 60 * 60 * 1000,
      webhookBodyLimitBytes: 4 * 1024 * 1024,
      logLevel: 'info',
    });
  });

  it('when META_ACCESS_TOKEN is set with its companions, then it is production: Graph URL default, all interfaces', () => {
    const config = loadConfig(PRODUCTION);
    expect(config).toMatchObject({
      sandbox: false,
      accessToken: 'EAAG-token',
      appSecrets: ['prod-secret'],
      verifyToken: 'prod-verify',
      phoneNumberId: '106540352242922',
      graphUrl: DEFAULT_GRAPH_URL,
      host: '0.0.0.0',
      dashboardOrigins: ['http://127.0.0.1:3002', 'http://localhost:3002'],
    });
  });

  it.each(['META_APP_SECRET', 'META_VERIFY_TOKEN', 'META_PHONE_NUMBER_ID'])('when in production %s is missing, then the error names it', (variable) => {
    const error = configError({ ...PRODUCTION, [variable]: undefined });
    expect(error.variable).toBe(variable);
    expect(error.message.startsWith(`${variable}: `)).toBe(true);
  });

  it('when a value is only whitespace, then it counts as unset', () => {
    expect(loadConfig({ META_ACCESS_TOKEN: '   ', WEBHOOK_PORT: ' ' })).toMatchObject({ sandbox: true, ports: { webhook: 3000 } });
    expect(configError({ ...PRODUCTION, META_APP_SECRET: ' \t' }).variable).toBe('META_APP_SECRET');
  });

  it('when every variable is set, then each lands in its typed field (values trimmed)', () => {
    const config = loadConfig({
      META_APP_SECRET: ' current ',
      META_APP_SECRET_PREVIOUS: 'previous',
      META_VERIFY_TOKEN: 'verify',
      META_PHONE_NUMBER_ID: '42',
      META_GRAPH_URL: 'http://127.0.0.1:9999/',
      META_GRAPH_VERSION: 'v21.0',
      DATABASE_PATH: '/tmp/x/ctu.db',
      PACKS_FILE: 'packs.json',
      HOST: '::1',
      WEBHOOK_PORT: '0',
      WS_PORT: '4001',
      API_PORT: '4002',
      METRICS_PORT: '65535',
      DASHBOARD_ORIGINS: 'https://dash.example.com, http://localhost:5173/',
      SEND_RATE_PER_SECOND: '12.5',
      UNLOCK_MAX_TAP_AGE: '1h30m',
      LOG_LEVEL: 'silent',
    });
    expect(config).toMatchObject({
      sandbox: true,
      appSecrets: ['current', 'previous'],
      verifyToken: 'verify',
      accessToken: undefined,
      phoneNumberId: '42',
      graphUrl: 'http://127.0.0.1:9999',
      graphVersion: 'v21.0',
      databasePath: '/tmp/x/ctu.db',
      packsFile: 'packs.json',
      host: '::1',
      ports: { webhook: 0, ws: 4001, api: 4002, metrics: 65535 },
      dashboardOrigins: ['https://dash.example.com', 'http://localhost:5173'],
      sendRatePerSecond: 12.5,
      unlockMaxTapAgeMs: 90 * 60 * 1000,
      webhookBodyLimitBytes: 4 * 1024 * 1024,
      logLevel: 'silent',
    });
  });

  it.each<[string, string]>([
    ['WEBHOOK_PORT', 'abc'],
    ['WS_PORT', '70000'],
    ['API_PORT', '-1'],
    ['METRICS_PORT', '3000.5'],
    ['SEND_RATE_PER_SECOND', '0'],
    ['SEND_RATE_PER_SECOND', 'fast'],
    ['SEND_RATE_PER_SECOND', '100001'],
    ['UNLOCK_MAX_TAP_AGE', 'soon'],
    ['UNLOCK_MAX_TAP_AGE', '0s'],
    ['LOG_LEVEL', 'loud'],
    ['META_GRAPH_URL', 'ftp://graph.example.com'],
    ['META_GRAPH_URL', 'not a url'],
    ['META_GRAPH_VERSION', '23'],
    ['META_PHONE_NUMBER_ID', '+1 555'],
    ['DASHBOARD_ORIGINS', 'https://dash.example.com/path'],
    ['DASHBOARD_ORIGINS', 'dash.example.com'],
  ])('when %s is "%s", then start-up stops with an error naming that variable and the value', (variable, value) => {
    const error = configError({ [variable]: value });
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.variable).toBe(variable);
    expect(error.message).toContain(variable);
    expect(error.message).toContain(value);
  });

  it('when loaded, then the object and its nested parts are frozen', () => {
    const config = loadConfig({ META_APP_SECRET_PREVIOUS: 'old' });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.ports)).toBe(true);
    expect(Object.isFrozen(config.appSecrets)).toBe(true);
    expect(Object.isFrozen(config.dashboardOrigins)).toBe(true);
    expect(() => {
      (config as { sandbox: boolean }).sandbox = false;
    }).toThrow(TypeError);
    expect(() => {
      (config.ports as { webhook: number }).webhook = 1;
    }).toThrow(TypeError);
    expect(() => (config.appSecrets as string[]).push('x')).toThrow(TypeError);
    expect(config.sandbox).toBe(true);
  });
});

describe('readEnvironment', () => {
  const dir = makeTempDir('ctu-config-');
  afterAll(() => dir.remove());

  it('when there is no .env file, then the environment is returned as is', () => {
    const env = { A: '1' };
    expect(readEnvironment(join(dir.path, 'missing'), env)).toBe(env);
  });

  it('when a .env file exists, then its values fill in but never override the environment', () => {
    writeFileSync(
      join(dir.path, '.env'),
      ['# a comment', 'WEBHOOK_PORT=4100', 'META_VERIFY_TOKEN="from file"', 'LOG_LEVEL=debug', ''].join('\n'),
    );
    const env = readEnvironment(dir.path, { LOG_LEVEL: 'warn', OTHER: 'x' });
    expect(env).toEqual({ WEBHOOK_PORT: '4100', META_VERIFY_TOKEN: 'from file', LOG_LEVEL: 'warn', OTHER: 'x' });
    expect(loadConfig(env)).toMatchObject({ ports: { webhook: 4100 }, verifyToken: 'from file', logLevel: 'warn' });
  });

  it('when a .env value is bad, then loadConfig names the variable', () => {
    writeFileSync(join(dir.path, '.env'), 'API_PORT=http\n');
    expect(configError(readEnvironment(dir.path, {})).variable).toBe('API_PORT');
  });
});
