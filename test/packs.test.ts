import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CatalogError, loadCatalog, parseCatalog, teaserMessage } from '../src/packs';

const text = (body: string) => ({ type: 'text', text: { body } });

describe('pack catalog', () => {
  it('when the bundled sample loads, then it has a 6-message pack and a shorter one, with text and media', () => {
    const catalog = loadCatalog();
    const sizes = catalog.packs.map((p) => p.messages.length);
    expect(sizes).toContain(6);
    expect(Math.min(...sizes)).toBeLessThan(6);
    const types = new Set(catalog.packs.flatMap((p) => p.messages.map((m) => m.type)));
    expect(types.has('text') && types.has('image')).toBe(true);
    expect(catalog.byTrigger('unlock:starter')?.id).toBe('starter');
  });

  it('when a field is wrong, then the error names the pack and the field', () => {
    const bad = { packs: [{ id: 'ok', trigger: 't1', messages: [text('x')] }, { id: 'broken', trigger: 't2', messages: [text('x'), { type: 'image', image: { link: 'ftp://x' } }] }] };
    expect(() => parseCatalog(bad)).toThrow(/pack "broken" \(packs\[1\]\)\.messages\[1\]\.image\.link/);
    expect(() => parseCatalog({ packs: [{ id: 'p', trigger: 't', messages: [] }] })).toThrow(/pack "p".*messages/);
    expect(() => parseCatalog({ packs: [{ id: 'Bad Id', trigger: 't', messages: [text('x')] }] })).toThrow(/\.id/);
  });

  it('when two packs share an id or a trigger, then it is refused', () => {
    expect(() => parseCatalog({ packs: [{ id: 'a', trigger: 't', messages: [text('x')] }, { id: 'a', trigger: 'u', messages: [text('x')] }] })).toThrow(/used twice/);
    expect(() => parseCatalog({ packs: [{ id: 'a', trigger: 't', messages: [text('x')] }, { id: 'b', trigger: 't', messages: [text('x')] }] })).toThrow(/trigger "t"/);
  });

  it('when the file is missing or not JSON, then the error says so and names the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctu-packs-'));
    expect(() => loadCatalog(join(dir, 'missing.json'))).toThrow(CatalogError);
    expect(() => loadCatalog(join(dir, 'missing.json'))).toThrow(/missing\.json: cannot read it \(ENOENT\)/);
    writeFileSync(join(dir, 'bad.json'), '{ nope');
    expect(() => loadCatalog(join(dir, 'bad.json'))).toThrow(/bad\.json: not valid JSON/);
  });

  it('when a teaser is built, then its one reply button carries the trigger with a title of at most 20 characters', () => {
    const pack = loadCatalog().byId('starter');
    if (pack === undefined) throw new Error('sample pack missing');
    const teaser = teaserMessage(pack) as { interactive: { action: { buttons: Array<{ reply: { id: string; title: string } }> } } };
    const [button] = teaser.interactive.action.buttons;
    expect(button?.reply.id).toBe('unlock:starter');
    expect(button?.reply.title.length).toBeLessThanOrEqual(20);
  });
});
