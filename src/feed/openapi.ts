/**
 * The OpenAPI 3.1 document of the REST API, generated from the same zod schemas that validate
 * the queries and type the answers, so the document cannot drift from the code.
 */
import { z } from 'zod';
import { PROBLEM_CONTENT_TYPE, PROBLEMS, problemType } from './problems';
import * as q from './queries';
import * as r from './responses';

type JsonSchema = Record<string, unknown>;

function schemaOf(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const json = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as JsonSchema;
  delete json.$schema;
  return json;
}

const QUERY_HELP: Readonly<Record<string, string>> = {
  from: 'start of the window (inclusive): epoch milliseconds or ISO 8601; default `to` − 24 h',
  to: 'end of the window (exclusive): epoch milliseconds or ISO 8601; default now (or `from` + 24 h)',
  bucket: 'bucket size of the series',
  pack: 'only this pack',
  cursor: '`next_cursor` of the previous page',
  limit: 'page size',
  after: 'only events with a greater seq',
  types: 'comma-separated event types to keep, e.g. `click,message.status`',
};

function queryParameters(schema: z.ZodType): JsonSchema[] {
  const json = schemaOf(schema, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] };
  return Object.entries(json.properties ?? {}).map(([name, property]) => ({
    name,
    in: 'query',
    required: json.required?.includes(name) ?? false,
    ...(QUERY_HELP[name] !== undefined ? { description: QUERY_HELP[name] } : {}),
    schema: property,
  }));
}

const ref = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });
const problemResponse = (description: string): JsonSchema => ({ description, content: { [PROBLEM_CONTENT_TYPE]: { schema: ref('Problem') } } });

const COMMON_ERRORS = {
  '400': problemResponse('a query parameter is not valid'),
  '401': problemResponse('no active API key; the body is the same whatever was wrong'),
  '429': {
    ...problemResponse('this key made too many requests; retry after `Retry-After` seconds'),
    headers: { 'Retry-After': { schema: { type: 'integer', minimum: 1 } } },
  },
  '500': problemResponse('internal error (no details are disclosed)'),
  '503': problemResponse('the database cannot be read right now'),
};

function get(summary: string, description: string, query: z.ZodType | undefined, response: string, extra: JsonSchema[] = []): JsonSchema {
  return {
    summary,
    description,
    parameters: [...extra, ...(query !== undefined ? queryParameters(query) : [])],
    responses: { '200': { description: 'OK', content: { 'application/json': { schema: ref(response) } } }, ...COMMON_ERRORS },
  };
}

export function openApiDocument(version: string): JsonSchema {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Click-to-Unlock dashboard feed',
      version,
      description:
        'REST API for the dashboard team. Authenticate with `Authorization: Bearer <API key>`. Times are ISO 8601 (UTC) in answers and ' +
        'ISO 8601 or epoch milliseconds in queries. Errors are RFC 9457 problem details. The WebSocket feed is described in docs/api.md.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    security: [{ bearer: [] }],
    paths: {
      '/api/health': {
        get: {
          summary: 'Liveness and readiness',
          description: 'No key needed. 503 when the database cannot be read.',
          security: [],
          responses: {
            '200': { description: 'ready', content: { 'application/json': { schema: ref('Health') } } },
            '503': { description: 'not ready', content: { 'application/json': { schema: ref('Health') } } },
          },
        },
      },
      '/api/summary': { get: get('Totals in a window', 'From the per-minute and per-hour rollups, to the minute.', q.summaryQuery, 'Summary') },
      '/api/clicks': { get: get('Click and unlock time series', 'Whole UTC buckets covering the window, zeros included; at most 5000 buckets.', q.clicksQuery, 'Clicks') },
      '/api/contacts/{contact}/messages': {
        get: get('A contact\'s chat history', 'Inbound and outbound messages with their statuses, newest first, in pages.', q.historyQuery, 'History', [
          { name: 'contact', in: 'path', required: true, description: "the contact's WhatsApp id (phone number, digits only)", schema: schemaOf(q.contactParam, 'input') },
        ]),
      },
      '/api/performance': { get: get('Latency percentiles and Graph API error rates', 'From raw rows of the window, newest first, bounded by sample_limit.', q.performanceQuery, 'Performance') },
      '/api/events': { get: get('The event log after a seq', 'For backfill and gap repair; the same events as the WebSocket feed.', q.eventsQuery, 'Events') },
      '/api/packs': { get: get('The pack catalog with a funnel per pack', 'From the rollups.', q.packsQuery, 'Packs') },
      '/api/ws-ticket': {
        post: {
          summary: 'A one-time ticket to open the WebSocket from a browser',
          description: 'Valid for 30 seconds and one connection: `ws://host:WS_PORT/ws?ticket=…`.',
          responses: { '201': { description: 'issued', content: { 'application/json': { schema: ref('WsTicket') } } }, ...COMMON_ERRORS },
        },
      },
      '/api/openapi.json': {
        get: { summary: 'This document', security: [], responses: { '200': { description: 'OpenAPI 3.1', content: { 'application/json': {} } } } },
      },
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'an API key from `ctu keys create`' } },
      schemas: {
        Health: schemaOf(r.health, 'output'),
        Summary: schemaOf(r.summary, 'output'),
        Clicks: schemaOf(r.clicks, 'output'),
        History: schemaOf(r.history, 'output'),
        Performance: schemaOf(r.performance, 'output'),
        Events: schemaOf(r.events, 'output'),
        Event: schemaOf(r.event, 'output'),
        Packs: schemaOf(r.packs, 'output'),
        WsTicket: schemaOf(r.wsTicket, 'output'),
        Problem: {
          ...schemaOf(r.problemBody, 'output'),
          description: `RFC 9457 problem details. Types: ${Object.keys(PROBLEMS).map((code) => problemType(code as keyof typeof PROBLEMS)).join(', ')}`,
        },
      },
    },
  };
}
