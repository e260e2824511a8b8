/**
 * Checks a `POST /{version}/{phone_number_id}/messages` body the way Graph does before it
 * accepts a message: the fields each message type needs and their limits (reply button
 * titles ≤ 20 characters, text ≤ 4096, callback data ≤ 512). A problem becomes Graph error
 * 100 with the reason in `error_data.details`.
 */

type Json = Record<string, unknown>;

export type SendCheck =
  | { readonly ok: true; readonly kind: 'message'; readonly to: string; readonly waId: string; readonly type: string; readonly callbackData: string | undefined }
  | { readonly ok: true; readonly kind: 'mark_read'; readonly messageId: string }
  | { readonly ok: false; readonly code: number; readonly details: string };

export const MESSAGE_TYPES = ['text', 'image', 'audio', 'video', 'document', 'sticker', 'location', 'contacts', 'interactive', 'template', 'reaction'] as const;
const MEDIA_TYPES = new Set(['image', 'audio', 'video', 'document', 'sticker']);
const INTERACTIVE_TYPES = new Set(['button', 'list', 'cta_url', 'product', 'product_list', 'flow', 'location_request_message']);
const CALLBACK_DATA_MAX = 512;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isText = (v: unknown, max: number): v is string => typeof v === 'string' && v.length >= 1 && v.length <= max;
const invalid = (details: string): SendCheck => ({ ok: false, code: 100, details });

export function checkSend(body: unknown): SendCheck {
  if (!isObject(body)) return invalid('The request body must be a JSON object.');
  if (body.messaging_product !== 'whatsapp') return invalid('The parameter messaging_product is required and must be "whatsapp".');
  if (body.status === 'read') {
    return typeof body.message_id === 'string' && body.message_id !== ''
      ? { ok: true, kind: 'mark_read', messageId: body.message_id }
      : invalid('The parameter message_id is required.');
  }
  if (body.recipient_type !== undefined && body.recipient_type !== 'individual') return invalid('Param recipient_type must be "individual".');
  if (body.to === undefined || body.to === '') return invalid('The parameter to is required.');
  if (typeof body.to !== 'string') return invalid('Param to must be a string.');
  const waId = body.to.replace(/^\+/, '').replace(/[\s-]/g, '');
  if (!/^\d{5,20}$/.test(waId)) return invalid(`Param to is not a valid phone number: ${body.to.slice(0, 40)}`);
  const type = body.type ?? 'text';
  if (typeof type !== 'string' || !(MESSAGE_TYPES as readonly string[]).includes(type)) {
    return invalid(`Param type must be one of {${MESSAGE_TYPES.join(', ')}}.`);
  }
  const callbackData = body.biz_opaque_callback_data;
  if (callbackData !== undefined && !isText(callbackData, CALLBACK_DATA_MAX)) {
    return invalid(`Param biz_opaque_callback_data must be a string of 1 to ${CALLBACK_DATA_MAX} characters.`);
  }
  const content = body[type];
  if (!isObject(content) && !(type === 'contacts' && Array.isArray(content))) return invalid(`The parameter ${type} is required.`);
  const problem = checkContent(type, content);
  if (problem !== undefined) return invalid(problem);
  return { ok: true, kind: 'message', to: body.to, waId, type, callbackData };
}

function checkContent(type: string, content: unknown): string | undefined {
  if (type === 'contacts') return Array.isArray(content) && content.length > 0 ? undefined : 'Param contacts must be a non-empty array.';
  const c = content as Json;
  if (type === 'text') return isText(c.body, 4096) ? undefined : 'Param text.body is required, 1 to 4096 characters.';
  if (MEDIA_TYPES.has(type)) return checkMedia(type, c);
  if (type === 'interactive') return checkInteractive(c);
  if (type === 'template') {
    if (!isText(c.name, 512)) return 'Param template.name is required.';
    return isObject(c.language) && isText(c.language.code, 16) ? undefined : 'Param template.language.code is required.';
  }
  if (type === 'location') return typeof c.latitude === 'number' && typeof c.longitude === 'number' ? undefined : 'Params location.latitude and location.longitude are required.';
  if (type === 'reaction') return isText(c.message_id, 512) ? undefined : 'Param reaction.message_id is required.';
  return undefined;
}

function checkMedia(type: string, c: Json): string | undefined {
  const hasLink = typeof c.link === 'string' && /^https?:\/\/\S+$/.test(c.link);
  if (!hasLink && !isText(c.id, 128)) return `Param ${type} needs a valid http(s) link or a media id.`;
  if (c.caption !== undefined && (type === 'audio' || type === 'sticker')) return `Param ${type}.caption is not supported.`;
  if (c.caption !== undefined && !isText(c.caption, 1024)) return `Param ${type}.caption must be 1 to 1024 characters.`;
  return undefined;
}

function checkInteractive(c: Json): string | undefined {
  if (typeof c.type !== 'string' || !INTERACTIVE_TYPES.has(c.type)) return `Param interactive.type must be one of {${[...INTERACTIVE_TYPES].join(', ')}}.`;
  if (c.type !== 'product' && c.type !== 'location_request_message' && !(isObject(c.body) && isText(c.body.text, 1024))) {
    return 'Param interactive.body.text is required, 1 to 1024 characters.';
  }
  if (!isObject(c.action)) return 'Param interactive.action is required.';
  if (c.type === 'button') return checkButtons(c.action.buttons);
  if (c.type === 'list') {
    if (!isText(c.action.button, 20)) return 'Param interactive.action.button is required. Button label length invalid. Min length: 1, Max length: 20';
    return Array.isArray(c.action.sections) && c.action.sections.length >= 1 && c.action.sections.length <= 10 ? undefined : 'Param interactive.action.sections must have 1 to 10 sections.';
  }
  return undefined;
}

function checkButtons(buttons: unknown): string | undefined {
  if (!Array.isArray(buttons) || buttons.length < 1 || buttons.length > 3) return 'Param interactive.action.buttons must have 1 to 3 buttons.';
  const ids = new Set<string>();
  for (const [i, button] of buttons.entries()) {
    if (!isObject(button) || button.type !== 'reply' || !isObject(button.reply)) return `Param interactive.action.buttons[${i}] must be {type: "reply", reply: {id, title}}.`;
    if (!isText(button.reply.title, 20)) return `Button title length invalid. Min length: 1, Max length: 20 (buttons[${i}].reply.title).`;
    if (!isText(button.reply.id, 256)) return `Button id length invalid. Min length: 1, Max length: 256 (buttons[${i}].reply.id).`;
    if (ids.has(button.reply.id)) return `Button ids must be unique (buttons[${i}].reply.id).`;
    ids.add(button.reply.id);
  }
  return undefined;
}
