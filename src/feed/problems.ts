/**
 * The feed's one registry of error answers (RFC 9457 problem details). Every answer that is
 * not a success comes from here, so bodies never carry a stack, SQL or a file path, and every
 * code is documented in docs/api.md (a test checks it).
 */
import type { Response } from 'express';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export const PROBLEMS = {
  bad_request: { status: 400, title: 'The request is not valid' },
  unauthorized: { status: 401, title: 'A valid API key is required' },
  forbidden_origin: { status: 403, title: 'This origin is not allowed' },
  not_found: { status: 404, title: 'No such resource' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  too_many_requests: { status: 429, title: 'Too many requests for this API key' },
  internal: { status: 500, title: 'Internal error' },
  unavailable: { status: 503, title: 'The database cannot be read right now' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ProblemCode = keyof typeof PROBLEMS;

export function problemType(code: ProblemCode): string {
  return `urn:click-to-unlock:problem:${code}`;
}

export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail?: string;
  readonly errors?: ReadonlyArray<{ readonly path: string; readonly message: string }>;
}

export function problem(code: ProblemCode, detail?: string, errors?: Problem['errors']): Problem {
  const { status, title } = PROBLEMS[code];
  return {
    type: problemType(code),
    title,
    status,
    ...(detail !== undefined ? { detail } : {}),
    ...(errors !== undefined && errors.length > 0 ? { errors } : {}),
  };
}

export function sendProblem(res: Response, body: Problem, headers: Record<string, string> = {}): void {
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.status(body.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(body));
}

/** Thrown by handlers; the error handler turns it into its problem answer. */
export class ProblemError extends Error {
  constructor(
    readonly body: Problem,
    readonly headers: Record<string, string> = {},
  ) {
    super(body.detail ?? body.title);
    this.name = 'ProblemError';
  }
}
