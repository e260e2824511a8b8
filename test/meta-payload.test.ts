import { describe, expect, it } from 'vitest';
import { parseGraphError, parseTimestamp, parseWebhook, statusRank, type WebhookItem } from '../src/meta-payload';
import { fixtureBytes } from './helpers/webhook';

type Json = Record<string, unknown>;

const PHONE_NUMBER_ID = '106540352242922';

function fixture(name: string): Json {
  return JSON.parse(fixtureBytes(name).toString('utf8')) as Json;
}

/** The first change's value of a fixture, to name the raw objects items must carry. */
function valueOf(body: Json): Json {
  const entry = (body.entry as Json[])[0] as Json;
  return ((entry.changes as Json[])[0] as Json).value as Json;
}

const messagesOf = (body: Json): Json[] => valueOf(body).messages as Json[];
const statusesOf = (body: Json): Json[] => valueOf(body).statuses as Json[];

describe('parseWebhook: inbound messages', () => {
  it('when a text message arrives, then it is one message item with its text decoded from the escapes', () => {
    const body = fixture('text');
    expect(parseWebhook(body)).toEqual({
      object: 'whatsapp_business_account',
      items: [
        {
          kind: 'message',
          phoneNumberId: PHONE_NUMBER_ID,
          wamid: 'wamid.fixture.text.1',
          from: '16505551234',
          type: 'text',
          timestampMs: 1_749_416_383_000,
          text: 'Olá! Is https://example.com/pack open?',
          errors: [],
          raw: messagesOf(body)[0],
        },
      ],
    });
  });

  it('when an interactive button_reply arrives, then it is a tap whose trigger is the button id', () => {
    const body = fixture('interactive-button-reply');
    expect(parseWebhook(body).items).toEqual([
      {
        kind: 'message',
        phoneNumberId: PHONE_NUMBER_ID,
        wamid: 'wamid.fixture.button-reply.1',
        from: '16505551234',
        type: 'interactive',
        timestampMs: 1_749_854_575_000,
        tap: { trigger: 'unlock:starter', source: 'button_reply', title: 'Unlock' },
        errors: [],
        raw: messagesOf(body)[0],
      },
    ]);
  });

  it('when an interactive list_reply arrives, then it is an interactive message kept without a tap', () => {
    const body = fixture('interactive-list-reply');
    expect(parseWebhook(body).items).toEqual([
      {
        kind: 'message',
        phoneNumberId: PHONE_NUMBER_ID,
        wamid: 'wamid.fixture.list-reply.1',
        from: '16505551234',
        type: 'interactive',
        timestampMs: 1_749_854_580_000,
        errors: [],
        raw: messagesOf(body)[0],
      },
    ]);
  });

  it('when a template quick-reply button arrives, then it is a tap whose trigger is the payload', () => {
    const body = fixture('template-button');
    expect(parseWebhook(body).items).toEqual([
      {
        kind: 'message',
        phoneNumberId: PHONE_NUMBER_ID,
        wamid: 'wamid.fixture.quick-reply.1',
        from: '16505559876',
        type: 'button',
        timestampMs: 1_749_854_590_000,
        tap: { trigger: 'unlock:premium', source: 'quick_reply', title: 'Unlock now' },
        errors: [],
        raw: messagesOf(body)[0],
      },
    ]);
  });

  it('when image and reaction messages arrive together, then both are message items of their own type', () => {
    const body = fixture('image');
    const [image, reaction] = messagesOf(body);
    expect(parseWebhook(body).items).toEqual([
      { kind: 'message', phoneNumberId: PHONE_NUMBER_ID, wamid: 'wamid.fixture.image.1', from: '16505551234', type: 'image', timestampMs: 1_750_090_702_000, errors: [], raw: image },
      { kind: 'message', phoneNumberId: PHONE_NUMBER_ID, wamid: 'wamid.fixture.reaction.1', from: '16505551234', type: 'reaction', timestampMs: 1_750_090_710_000, errors: [], raw: reaction },
    ]);
  });

  it('when an unsupported message carries errors[], then they are parsed with code, title, message and details', () => {
    const body = fixture('unsupported');
    expect(parseWebhook(body).items).toEqual([
      {
        kind: 'message',
        phoneNumberId: PHONE_NUMBER_ID,
        wamid: 'wamid.fixture.unsupported.1',
        from: '16505551234',
        type: 'unsupported',
        timestampMs: 1_750_090_720_000,
        errors: [{ code: 131051, title: 'Message type unknown', message: 'Message type unknown', details: 'Message type is currently not supported.' }],
        raw: messagesOf(body)[0],
      },
    ]);
  });
});

describe('parseWebhook: statuses', () => {
  it('when a sent status carries conversation, pricing and biz_opaque_callback_data, then it keeps the callback data and the raw object', () => {
    const body = fixture('status-sent');
    expect(parseWebhook(body).items).toEqual([
      {
        kind: 'status',
        phoneNumberId: PHONE_NUMBER_ID,
        wamid: 'wamid.fixture.outbound.1',
        status: 'sent',
        timestampMs: 1_750_263_773_000,
        recipient: '16505551234',
        errors: [],
        callbackData: 'unlock:42:1',
        raw: statusesOf(body)[0],
      },
    ]);
  });

  it.each([
    ['status-delivered', 'delivered', 1_750_263_774_000],
    ['status-read', 'read', 1_750_263_780_000],
  ])('when a %s webhook arrives, then it is a %s status item', (name, status, timestampMs) => {
    const body = fixture(name);
    expect(parseWebhook(body).items).toEqual([
      {
        kind: 'status',
        phoneNumberId: PHONE_NUMBER_ID,
        wamid: 'wamid.fixture.outbound.1',
        status,
        timestampMs,
        recipient: '16505551234',
        errors: [],
        callbackData: 'unlock:42:1',
        raw: statusesOf(body)[0],
      },
    ]);
  });

  it('when a failed status carries errors[], then the error code and details are parsed', () => {
    const body = fixture('status-failed');
    expect(parseWebhook(body).items).toEqual([
      {
        kind: 'status',
        phoneNumberId: PHONE_NUMBER_ID,
        wamid: 'wamid.fixture.outbound.2',
        status: 'failed',
        timestampMs: 1_750_263_790_000,
        recipient: '16505550000',
        errors: [{ code: 131026, title: 'Message undeliverable', message: 'Message undeliverable', details: 'Message Undeliverable.' }],
        callbackData: 'unlock:43:1',
        raw: statusesOf(body)[0],
      },
    ]);
  });

  it('when a status name is unknown, then it is still a status item (stored, never ranked)', () => {
    const body = { object: 'whatsapp_business_account', entry: [{ id: '1', changes: [{ field: 'messages', value: { statuses: [{ id: 'wamid.x', status: 'deleted', timestamp: '1' }] } }] }] };
    const items = parseWebhook(body).items;
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ kind: 'status', wamid: 'wamid.x', status: 'deleted', timestampMs: 1000, recipient: undefined, callbackData: undefined });
    expect(statusRank('deleted')).toBeUndefined();
  });
});

describe('parseWebhook: errors and other fields', () => {
  it('when a messages change carries value-level errors[], then each is a value_error item', () => {
    const body = fixture('value-errors');
    const raw = (valueOf(body).errors as Json[])[0];
    expect(parseWebhook(body).items).toEqual([
      {
        kind: 'value_error',
        field: 'messages',
        error: { code: 130429, title: 'Rate limit hit', message: '(#130429) Rate limit hit', details: 'Cloud API message throughput has been reached.' },
        raw,
      },
    ]);
  });

  it.each([
    ['template-status-update', 'message_template_status_update'],
    ['account-alerts', 'account_alerts'],
  ])('when a %s change arrives, then it is an "other" item with the whole change as raw', (name, field) => {
    const body = fixture(name);
    const change = ((body.entry as Json[])[0]?.changes as Json[])[0];
    expect(parseWebhook(body).items).toEqual([{ kind: 'other', field, raw: change }]);
  });

  it('when a messages change has no messages, statuses or errors list, then it is kept as "other"', () => {
    const change = { field: 'messages', value: { messaging_product: 'whatsapp', something_new: {} } };
    expect(parseWebhook({ entry: [{ changes: [change] }] }).items).toEqual([{ kind: 'other', field: 'messages', raw: change }]);
  });
});

describe('parseWebhook: malformed items next to good ones', () => {
  it('when a batch holds broken entries, changes, messages, statuses and errors, then each bad one is invalid and the good ones survive', () => {
    const body = fixture('malformed-neighbours');
    const entries = body.entry as unknown[];
    const changes = (entries[1] as Json).changes as Json[];
    const value = (changes[1] as Json).value as Json;
    const messages = value.messages as unknown[];
    const statuses = value.statuses as unknown[];
    const items = parseWebhook(body).items;
    expect(items.map((item) => [item.kind, item.kind === 'invalid' ? item.reason : ''])).toEqual([
      ['invalid', 'entry has no changes array'],
      ['invalid', 'change needs a field and an object value'],
      ['invalid', 'message has no id'],
      ['message', ''],
      ['invalid', 'message is not an object'],
      ['invalid', 'status has no valid timestamp'],
      ['status', ''],
      ['invalid', 'value error has no numeric code'],
    ]);
    expect(items[0]?.raw).toBe(entries[0]);
    expect(items[1]?.raw).toBe(changes[0]);
    expect(items[2]?.raw).toBe(messages[0]);
    expect(items[3]).toMatchObject({ kind: 'message', wamid: 'wamid.fixture.survivor.1', text: 'I survive my neighbours' });
    expect(items[4]?.raw).toBe(42);
    expect(items[5]?.raw).toBe(statuses[0]);
    expect(items[6]).toMatchObject({ kind: 'status', wamid: 'wamid.fixture.outbound.3', status: 'sent', timestampMs: 1_750_263_822_000 });
  });

  it.each<[string, Json, string]>([
    ['no from', { id: 'w', timestamp: '1', type: 'text' }, 'message has no valid from'],
    ['a non-numeric from', { id: 'w', from: '+1 650', timestamp: '1', type: 'text' }, 'message has no valid from'],
    ['no type', { id: 'w', from: '16505551234', timestamp: '1' }, 'message has no type'],
    ['a bad timestamp', { id: 'w', from: '16505551234', timestamp: '-5', type: 'text' }, 'message has no valid timestamp'],
    ['an empty id', { id: '', from: '16505551234', timestamp: '1', type: 'text' }, 'message has no id'],
  ])('when a message has %s, then it is invalid with that reason', (_label, message, reason) => {
    const items = parseWebhook({ entry: [{ changes: [{ field: 'messages', value: { messages: [message] } }] }] }).items;
    expect(items).toEqual([{ kind: 'invalid', reason, raw: message }]);
  });

  it.each<[string, unknown, string]>([
    ['no id', { status: 'sent', timestamp: '1' }, 'status has no id'],
    ['no status', { id: 'w', timestamp: '1' }, 'status has no status'],
    ['not an object', 'sent', 'status is not an object'],
  ])('when a status has %s, then it is invalid with that reason', (_label, status, reason) => {
    const items = parseWebhook({ entry: [{ changes: [{ field: 'messages', value: { statuses: [status] } }] }] }).items;
    expect(items).toEqual([{ kind: 'invalid', reason, raw: status }]);
  });

  it.each<[string, unknown]>([
    ['null', null],
    ['an array', [{ entry: [] }]],
    ['a string', 'hello'],
    ['a number', 7],
  ])('when the body is %s, then the result is one invalid item', (_label, body) => {
    expect(parseWebhook(body)).toEqual({ object: undefined, items: [{ kind: 'invalid', reason: 'body is not a JSON object', raw: body }] });
  });

  it('when the body has no entry array, then it is one invalid item and the object is kept', () => {
    const body = { object: 'page' };
    expect(parseWebhook(body)).toEqual({ object: 'page', items: [{ kind: 'invalid', reason: 'body has no entry array', raw: body }] });
  });

  it('when entries and changes are empty, then there are no items', () => {
    expect(parseWebhook({ object: 'whatsapp_business_account', entry: [] }).items).toEqual([]);
    expect(parseWebhook({ object: 'whatsapp_business_account', entry: [{ id: '1', changes: [] }] }).items).toEqual([]);
  });

  it('when one change batches messages, statuses and errors, then items come in that order within the change', () => {
    const value = {
      metadata: { phone_number_id: '1' },
      errors: [{ code: 1 }],
      statuses: [{ id: 's', status: 'read', timestamp: '2' }],
      messages: [{ id: 'm', from: '123456', timestamp: '3', type: 'text', text: { body: 'hi' } }],
    };
    const items: readonly WebhookItem[] = parseWebhook({ entry: [{ changes: [{ field: 'messages', value }] }] }).items;
    expect(items.map((item) => item.kind)).toEqual(['message', 'status', 'value_error']);
  });
});

describe('parseTimestamp, parseGraphError, statusRank', () => {
  it('when given Unix seconds as a string or number, then milliseconds; anything else, undefined', () => {
    expect(parseTimestamp('1749416383')).toBe(1_749_416_383_000);
    expect(parseTimestamp(12)).toBe(12_000);
    expect(parseTimestamp('0')).toBe(0);
    expect(parseTimestamp('1.5')).toBeUndefined();
    expect(parseTimestamp('')).toBeUndefined();
    expect(parseTimestamp('1234567890123')).toBeUndefined();
    expect(parseTimestamp(null)).toBeUndefined();
  });

  it('when an error code is a number or digit string, then it is parsed; otherwise undefined', () => {
    expect(parseGraphError({ code: 131047 })).toEqual({ code: 131047 });
    expect(parseGraphError({ code: '131056', title: 'Pair rate limit' })).toEqual({ code: 131056, title: 'Pair rate limit' });
    expect(parseGraphError({ code: 'x' })).toBeUndefined();
    expect(parseGraphError([])).toBeUndefined();
  });

  it('when ranking statuses, then sent < failed < delivered < read', () => {
    expect([statusRank('sent'), statusRank('failed'), statusRank('delivered'), statusRank('read')]).toEqual([1, 2, 3, 4]);
  });
});
