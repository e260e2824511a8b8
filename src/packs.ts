/**
 * The pack catalog (PACKS_FILE, JSON): which button trigger unlocks which ordered list of
 * Graph API messages. Validated once at start; errors name the pack and the field.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { sqlDirectory } from './store/database';

const link = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' });
const media = z
  .object({ link: link.optional(), id: z.string().min(1).optional(), caption: z.string().max(1024).optional(), filename: z.string().optional() })
  .refine((m) => m.link !== undefined || m.id !== undefined, { message: 'needs a link (or a media id)' });

const message = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text'), text: z.object({ body: z.string().min(1).max(4096), preview_url: z.boolean().optional() }) }),
  z.object({ type: z.literal('image'), image: media }),
  z.object({ type: z.literal('video'), video: media }),
  z.object({ type: z.literal('audio'), audio: media }),
  z.object({ type: z.literal('document'), document: media }),
  z.object({ type: z.literal('sticker'), sticker: media }),
]);

const pack = z.object({
  id: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, 'must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter or digit'),
  trigger: z.string().min(1).max(256),
  title: z.string().min(1).max(200).optional(),
  teaser: z.string().min(1).max(1024).optional(),
  messages: z.array(message).min(1).max(100),
});

const catalogSchema = z.object({ packs: z.array(pack).min(1) });

export type PackMessage = z.infer<typeof message>;
export type Pack = z.infer<typeof pack>;

export interface Catalog {
  readonly packs: readonly Pack[];
  byTrigger(trigger: string): Pack | undefined;
  byId(id: string): Pack | undefined;
}

export class CatalogError extends Error {
  constructor(file: string, problem: string) {
    super(`pack catalog ${file}: ${problem}`);
    this.name = 'CatalogError';
  }
}

export function sampleCatalogPath(): string {
  return join(sqlDirectory(), '..', 'packs', 'sample.json');
}

export function loadCatalog(file: string = sampleCatalogPath()): Catalog {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new CatalogError(file, `cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new CatalogError(file, `not valid JSON (${(error as Error).message})`);
  }
  return parseCatalog(json, file);
}

export function parseCatalog(json: unknown, file = '(inline)'): Catalog {
  const result = catalogSchema.safeParse(json);
  if (!result.success) {
    const problems = result.error.issues.slice(0, 5).map((issue) => `${describePath(json, issue.path)}: ${issue.message}`);
    throw new CatalogError(file, problems.join('; '));
  }
  const packs = result.data.packs;
  const seenIds = new Set<string>();
  const seenTriggers = new Set<string>();
  for (const p of packs) {
    if (seenIds.has(p.id)) throw new CatalogError(file, `pack "${p.id}": id is used twice`);
    if (seenTriggers.has(p.trigger)) throw new CatalogError(file, `pack "${p.id}": trigger "${p.trigger}" is used by another pack`);
    seenIds.add(p.id);
    seenTriggers.add(p.trigger);
  }
  const byTrigger = new Map(packs.map((p) => [p.trigger, p]));
  const byId = new Map(packs.map((p) => [p.id, p]));
  return Object.freeze({ packs: Object.freeze(packs), byTrigger: (t: string) => byTrigger.get(t), byId: (id: string) => byId.get(id) });
}

/** `pack "starter" (packs[0]).messages[2].image.link` rather than a bare index path. */
function describePath(json: unknown, path: readonly PropertyKey[]): string {
  if (path[0] !== 'packs' || typeof path[1] !== 'number') return path.length === 0 ? 'catalog' : path.map(String).join('.');
  const packs = (json as { packs?: Array<{ id?: unknown }> }).packs;
  const id = packs?.[path[1]]?.id;
  const name = typeof id === 'string' ? `pack "${id}" (packs[${path[1]}])` : `packs[${path[1]}]`;
  const rest = path.slice(2).map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
  return `${name}${rest}`;
}

/** The teaser: an interactive message whose reply button's id is the pack's trigger. */
export function teaserMessage(p: Pack): Record<string, unknown> {
  return {
    type: 'interactive',
    interactive: {
      type: 'button',
      body: { text: p.teaser ?? `${p.title ?? p.id}: ${p.messages.length} messages. Tap Unlock to get them.` },
      action: { buttons: [{ type: 'reply', reply: { id: p.trigger, title: 'Unlock' } }] },
    },
  };
}
