/**
 * Import this first (cli.ts's first import): the SDK must be running before the modules it
 * instruments (express) are required, because require-in-the-middle patches them on load.
 * Reads the same environment as the rest of the service (process.env over .env).
 */
import { readEnvironment } from '../config';
import { startTelemetry, type TelemetryRuntime } from './sdk';

export const runtime: TelemetryRuntime = startTelemetry({ env: readEnvironment() });
export const telemetry = runtime.telemetry;
