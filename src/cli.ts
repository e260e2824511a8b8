/**
 * `ctu`: the one program, with commands. `ctu start [--role all|webhook|feed]` runs the
 * service (all roles in one process by default).
 */
// First: the OpenTelemetry SDK must start before express is loaded, so it can patch it.
import { runtime } from './telemetry/boot';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, SANDBOX_APP_SECRET, type Config, type Role } from './config';
import { enqueueTeaser } from './outbox';
import { loadCatalog, teaserMessage } from './packs';
import { createDeliveryStore } from './store/delivery-store';
import { createApiKey, listApiKeys, revokeApiKey } from './store/key-store';
import { DatabaseOpenError, openDatabase } from './store/database';
import { setContactHashKey, type Logger } from './log';
import { createTelemetryLogger } from './telemetry/log';
import { startService } from './service';
import { pageMounter } from './page-server';
import { parseSimulateArgs, runSimulate } from './simulate-command';
import { backupCommand, restoreCommand } from './backup';
import { doctorCommand } from './doctor';
import { pruneCommand } from './retention';

const USAGE = `usage: ctu <command> [options]

commands:
  start [--role all|webhook|feed]   run the service (sandbox mode when META_ACCESS_TOKEN is unset)
  simulate [--contacts N] [--rate R] [--duration D] [--duplicate-rate F] [--pack ID] [--settle D]
                                    synthetic contacts tap Unlock through the running service's webhook
  keys create --name <name> | keys list | keys revoke <id>
                                    dashboard API keys (stored only as hashes; a new key is shown once)
  send-teaser --to <contact> --pack <id>
                                    queue the teaser with the Unlock button for a contact
  doctor [--json]                   check a running deployment end to end (exit 0 healthy, 1 degraded, 2 down)
  backup [--out FILE]               online backup of the live database, verified with integrity_check
  restore FILE                      replace the (stopped) database with a checked backup
  prune --older-than 30d [--batch N]
                                    delete raw payloads and events older than that (dedupe keys: 30 d at least)
  help                              this text

Configuration comes from environment variables (and .env); see docs/operations.md.`;

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
      return start(rest);
    case 'simulate':
      return simulate(rest);
    case 'send-teaser':
      return sendTeaser(rest);
    case 'keys':
      return keys(rest);
    case 'doctor':
      return doctorCommand(rest, configOrExit());
    case 'backup':
      return backupCommand(rest, configOrExit());
    case 'restore':
      return restoreCommand(rest, configOrExit());
    case 'prune':
      return pruneCommand(rest, configOrExit().databasePath);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`ctu: unknown command "${command}"\n\n${USAGE}\n`);
      return 2;
  }
}

function configOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`ctu: configuration error: ${error.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }
}

async function start(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({ args: [...args], options: { role: { type: 'string', default: 'all' } } });
  const role = values.role as Role;
  if (!['all', 'webhook', 'feed'].includes(role)) {
    process.stderr.write(`ctu start: --role must be all, webhook or feed (got "${values.role}")\n`);
    return 2;
  }
  const config = configOrExit();
  const log = createTelemetryLogger(config.logLevel);
  runtime.setLogger(log);
  setContactHashKey(`contact:${config.appSecrets[0]}`);
  let service;
  try {
    service = await startService(config, { role, log, telemetry: runtime, extendApi: pageMounter({ wsPort: config.ports.ws }) });
  } catch (error) {
    const message = error instanceof DatabaseOpenError || error instanceof Error ? error.message : String(error);
    process.stderr.write(`ctu start: ${message}\n`);
    return 1;
  }
  if (config.sandbox) {
    const u = service.urls;
    const pageUrl = u.page !== undefined && service.sandboxKey !== undefined ? `${u.page}#key=${service.sandboxKey}` : undefined;
    process.stdout.write(
      [
        '',
        'Click-to-Unlock is running in sandbox mode (META_ACCESS_TOKEN is unset); a built-in Meta simulator plays Graph API.',
        `  webhook        ${u.webhook ?? '(not in this role)'}`,
        `  REST API       ${u.api ?? '(not in this role)'}   (Authorization: Bearer ${service.sandboxKey ?? '…'})`,
        `  WebSocket      ${u.ws ?? '(not in this role)'}`,
        `  dashboard      ${pageUrl ?? '(not in this role)'}`,
        `  metrics        ${u.metrics ?? '(not served)'}`,
        `  app secret     ${config.appSecrets[0] === SANDBOX_APP_SECRET ? `${SANDBOX_APP_SECRET} (development only)` : '(from META_APP_SECRET)'}`,
        `  verify token   ${config.verifyToken}`,
        `  database       ${config.databasePath}`,
        '',
        'Try it: in another terminal, run',
        '  npx ctu simulate --contacts 50 --rate 10 --duration 30s',
        '',
      ].join('\n') + '\n',
    );
  }

  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'shutting down');
      const deadline = setTimeout(() => {
        log.error('shutdown took longer than 15 s; exiting');
        process.exit(1);
      }, 15_000);
      deadline.unref();
      service
        .close()
        .then(() => runtime.shutdown())
        .then(() => {
          exitBackstop(log);
          resolve();
        }, (error: unknown) => {
        log.error({ err: (error as Error).message }, 'shutdown failed');
        process.exit(1);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}

/**
 * After a clean shutdown the process ends when nothing is left to run. A span export still
 * retrying against a dead collector is something: the exporter retries on timers of its own,
 * for up to its timeout (10 s by default), after telemetry's bounded flush gave up on it.
 * Those spans are lost either way, so they may not hold the process: if it is still alive a
 * second later, it exits with the code it has.
 */
function exitBackstop(log: Logger): void {
  const timer = setTimeout(() => {
    log.warn('span exports still retrying at exit; their spans are dropped');
    log.flush(() => process.exit(process.exitCode ?? 0));
  }, 1_000);
  timer.unref();
}

async function simulate(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: {
      contacts: { type: 'string' },
      rate: { type: 'string' },
      duration: { type: 'string' },
      'duplicate-rate': { type: 'string' },
      pack: { type: 'string' },
      settle: { type: 'string' },
    },
  });
  const options = parseSimulateArgs(values);
  if (typeof options === 'string') {
    process.stderr.write(`ctu simulate: ${options}\n`);
    return 2;
  }
  const config = configOrExit();
  try {
    const tally = await runSimulate(config, loadCatalog(config.packsFile), options);
    return tally.possibleDuplicates === 0 ? 0 : 1;
  } catch (error) {
    process.stderr.write(`ctu simulate: ${(error as Error).message}\n`);
    return 1;
  }
}

function keys(args: readonly string[]): number {
  const [action, ...rest] = args;
  const { values, positionals } = parseArgs({ args: rest, options: { name: { type: 'string' } }, allowPositionals: true });
  const config = configOrExit();
  const db = openDatabase(config.databasePath);
  try {
    switch (action) {
      case 'create': {
        const name = values.name?.trim() ?? '';
        if (name === '' || name.length > 100) {
          process.stderr.write('ctu keys create: --name is required (1-100 characters), e.g. --name "dashboard team"\n');
          return 2;
        }
        const { id, key } = createApiKey(db, name);
        process.stdout.write(`created key #${id} "${name}". It is shown only this once; store it now:\n${key}\n`);
        return 0;
      }
      case 'list': {
        const rows = listApiKeys(db);
        if (rows.length === 0) process.stdout.write('no API keys\n');
        for (const k of rows) {
          const state = k.revokedAt === null ? 'active' : `revoked ${new Date(k.revokedAt).toISOString()}`;
          process.stdout.write(`#${k.id}\t${k.prefix}…\t${k.name}\tcreated ${new Date(k.createdAt).toISOString()}\t${state}\n`);
        }
        return 0;
      }
      case 'revoke': {
        const id = Number(positionals[0]);
        if (!Number.isSafeInteger(id) || id <= 0) {
          process.stderr.write('ctu keys revoke: give the key\'s id, as shown by ctu keys list\n');
          return 2;
        }
        if (!revokeApiKey(db, id)) {
          process.stderr.write(`ctu keys revoke: no active key #${id}\n`);
          return 1;
        }
        process.stdout.write(`revoked key #${id}; its WebSocket connections close within seconds\n`);
        return 0;
      }
      default:
        process.stderr.write('usage: ctu keys create --name <name> | ctu keys list | ctu keys revoke <id>\n');
        return 2;
    }
  } finally {
    db.close();
  }
}

function sendTeaser(args: readonly string[]): number {
  const { values } = parseArgs({ args: [...args], options: { to: { type: 'string' }, pack: { type: 'string' } } });
  if (values.to === undefined || !/^\+?\d{6,20}$/.test(values.to)) {
    process.stderr.write('ctu send-teaser: --to needs the contact\'s WhatsApp number (digits, country code first)\n');
    return 2;
  }
  const config = configOrExit();
  const catalog = loadCatalog(config.packsFile);
  const pack = catalog.byId(values.pack ?? '');
  if (pack === undefined) {
    process.stderr.write(`ctu send-teaser: --pack must be one of: ${catalog.packs.map((p) => p.id).join(', ')}\n`);
    return 2;
  }
  const db = openDatabase(config.databasePath);
  try {
    const id = enqueueTeaser(createDeliveryStore(db), values.to.replace(/^\+/, ''), teaserMessage(pack), pack.id, Date.now());
    process.stdout.write(`queued teaser #${id} for pack "${pack.id}"; the running service sends it\n`);
  } finally {
    db.close();
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`ctu: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
