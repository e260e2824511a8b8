/**
 * The Graph API errors the simulator can answer with, keyed by Graph `error.code`.
 *
 * HTTP statuses follow Meta's Cloud API error-code table: throughput errors (4, 80007,
 * 130429, 131056) come back as **400**, not 429, which is why clients must classify by
 * `error.code` rather than by status. A plain HTTP 429 (with Retry-After) is a separate
 * fault mode (`http429`), the shape a proxy or the Graph edge gives when overloaded.
 * Codes missing from the table answer 400 with a generic title.
 */
import { randomBytes } from 'node:crypto';

export interface GraphErrorSpec {
  readonly status: number;
  readonly title: string;
  readonly details: string;
  readonly type?: string; // Graph's `type`; WhatsApp errors are mostly OAuthException
}

const CATALOG: Readonly<Record<number, GraphErrorSpec>> = {
  0: { status: 401, title: 'AuthException', details: 'We were unable to authenticate the app user.' },
  2: { status: 503, title: 'Service temporarily unavailable', details: 'Temporary due to downtime or due to being overloaded.' },
  3: { status: 500, title: 'Capability or permissions issue', details: 'The app does not have the capability to call this method.' },
  4: { status: 400, title: 'Application request limit reached', details: 'The app has reached its API call rate limit.' },
  10: { status: 403, title: 'Permission denied', details: 'Permission has not been granted or has been removed.' },
  100: { status: 400, title: 'Invalid parameter', details: 'The request included an invalid or unsupported parameter.' },
  190: { status: 401, title: 'Invalid OAuth access token - Cannot parse access token', details: 'The access token is invalid or has expired.' },
  200: { status: 403, title: 'API permission', details: 'Permission has not been granted or has been removed.' },
  368: { status: 403, title: 'Temporarily blocked for policies violations', details: 'The account is temporarily blocked for policy violations.' },
  2500: { status: 400, title: 'Unknown path components', details: 'The request path is not a Graph API endpoint.' },
  80007: { status: 400, title: 'Rate limit issues', details: 'The WhatsApp Business Account has reached its rate limit.' },
  130429: { status: 400, title: 'Rate limit hit', details: 'Cloud API message throughput has been reached.' },
  130472: { status: 400, title: "User's number is part of an experiment", details: 'Message was not sent as part of an experiment.' },
  131000: { status: 500, title: 'Something went wrong', details: 'Message failed to send due to an unknown error.' },
  131005: { status: 403, title: 'Access denied', details: 'Permission is either not granted or has been removed.' },
  131008: { status: 400, title: 'Required parameter is missing', details: 'The request is missing a required parameter.' },
  131009: { status: 400, title: 'Parameter value is not valid', details: 'One or more parameter values are invalid.' },
  131016: { status: 503, title: 'Service unavailable', details: 'A service is temporarily unavailable.' },
  131021: { status: 400, title: 'Recipient cannot be sender', details: 'Sender and recipient phone number is the same.' },
  131026: { status: 400, title: 'Message undeliverable', details: 'Unable to deliver message to the recipient.' },
  131031: { status: 403, title: 'Account has been locked', details: 'The business account was restricted or disabled.' },
  131042: { status: 400, title: 'Business eligibility payment issue', details: 'There was an error related to the payment method.' },
  131047: {
    status: 400,
    title: 'Re-engagement message',
    details: 'Message failed to send because more than 24 hours have passed since the customer last replied to this number.',
  },
  131048: { status: 400, title: 'Spam rate limit hit', details: 'Message failed to send because of restrictions on how many messages can be sent.' },
  131049: {
    status: 400,
    title: 'This message was not delivered to maintain healthy ecosystem engagement.',
    details: 'Meta chose not to deliver this message.',
  },
  131050: { status: 400, title: 'User stopped marketing messages', details: 'The recipient has stopped marketing messages from this business.' },
  131051: { status: 400, title: 'Unsupported message type', details: 'The message type is not supported.' },
  131052: { status: 400, title: 'Media download error', details: 'Unable to download the media sent by the user.' },
  131053: { status: 400, title: 'Media upload error', details: 'Unable to upload the media used in the message.' },
  131056: {
    status: 400,
    title: '(Business Account, Consumer Account) pair rate limit hit',
    details: 'Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.',
  },
  131057: { status: 500, title: 'Account in maintenance mode', details: 'The business account is in maintenance mode.' },
  132000: { status: 400, title: 'Template Param Count Mismatch', details: 'The number of variable parameter values does not match the template.' },
  132001: { status: 400, title: 'Template does not exist', details: 'The template does not exist in the specified language.' },
  133010: { status: 400, title: 'Phone number not registered', details: 'The phone number is not registered on the WhatsApp Business Platform.' },
};

export function graphErrorSpec(code: number): GraphErrorSpec {
  return CATALOG[code] ?? { status: 400, title: 'Unknown error', details: `Simulated Graph error ${code}.` };
}

export function knownGraphErrorCodes(): number[] {
  return Object.keys(CATALOG).map(Number);
}

export interface GraphErrorAnswer {
  readonly status: number;
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
}

export interface GraphErrorOptions {
  readonly status?: number; // override the catalog's HTTP status
  readonly details?: string;
  readonly subcode?: number;
  readonly retryAfterSeconds?: number;
}

/** The HTTP answer Graph gives for an error: `{"error":{message,type,code,error_subcode?,error_data,fbtrace_id}}`. */
export function graphErrorAnswer(code: number, options: GraphErrorOptions = {}): GraphErrorAnswer {
  const spec = graphErrorSpec(code);
  const error = {
    message: `(#${code}) ${spec.title}`,
    type: spec.type ?? 'OAuthException',
    code,
    ...(options.subcode !== undefined ? { error_subcode: options.subcode } : {}),
    error_data: { messaging_product: 'whatsapp', details: options.details ?? spec.details },
    fbtrace_id: randomBytes(12).toString('base64url'),
  };
  const headers: Record<string, string> = { 'Content-Type': 'application/json; charset=UTF-8' };
  if ((options.status ?? spec.status) === 401) headers['WWW-Authenticate'] = 'OAuth "Facebook Platform" "invalid_token"';
  if (options.retryAfterSeconds !== undefined) headers['Retry-After'] = String(options.retryAfterSeconds);
  return { status: options.status ?? spec.status, body: JSON.stringify({ error }), headers };
}

/** The `errors[]` entry of a `failed` status webhook. */
export function statusError(code: number): { code: number; title: string; message: string; error_data: { details: string } } {
  const spec = graphErrorSpec(code);
  return { code, title: spec.title, message: spec.title, error_data: { details: spec.details } };
}
