// Seeded fuzzing of inventory files (test/fuzz/targets/inventory.ts), and the YAML features it
// found handled wrongly: aliases (resolved to nothing inside a row), alias bombs and custom tags.
import { describe, expect, it } from 'vitest';
import { DesiredVocabulary } from '../engine/desired.js';
import { standardFacets } from '../facets/standard.js';
import { runFuzzTarget } from '../../test/fuzz/kit.js';
import { inventoryFuzzTarget } from '../../test/fuzz/targets/inventory.js';
import { InventoryError, parseInventory } from './inventory.js';

const vocabulary = new DesiredVocabulary(standardFacets);
const parse = (text: string) => parseInventory(text, (raw) => vocabulary.parsePatch(raw));
const ROW = 'name: n1\n    macs: ["52:54:00:00:00:01"]\n    bmc: ipmi://10.0.0.1';

function refusal(text: string): string {
  try {
    parse(text);
  } catch (error) {
    expect(error).toBeInstanceOf(InventoryError);
    return (error as Error).message;
  }
  throw new Error('the inventory was accepted');
}

describe('inventory YAML fuzzing', () => {
  it('answers 1,500 generated files with rows or an InventoryError, each within 2 s per megabyte', async () => {
    const stats = await runFuzzTarget(inventoryFuzzTarget, { inputs: 1500, seed: 0x1a1a });
    expect(stats.crashReports).toEqual([]);
    expect(stats.accepted).toBeGreaterThan(100);
    expect(stats.refused).toBeGreaterThan(1000);
  });

  it('resolves an alias inside a row to what its anchor holds, not to nothing', () => {
    const { rows: [row] } = parse(`shared: &labels {rack: r1}\nnodes:\n  - ${ROW}\n    labels: *labels\n`);
    expect(row!.spec.labels).toEqual({ rack: 'r1' });
    const { rows: [whole] } = parse(`base: &n1\n  ${ROW.replace(/\n {4}/g, '\n  ')}\nnodes:\n  - *n1\n`);
    expect(whole!.spec.name).toBe('n1');
  });

  it('refuses an alias bomb quickly with an InventoryError instead of expanding it', () => {
    let text = 'a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n';
    for (let i = 1; i < 9; i++) text += `a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]\n`;
    const started = performance.now();
    expect(refusal(`${text}nodes:\n  - ${ROW}\n    labels: *a8\n`)).toMatch(/alias/i);
    expect(refusal(`${text}nodes: *a8\n`)).toMatch(/alias/i);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('refuses deeply nested flow collections before the parser spends its stack and seconds on them', () => {
    const started = performance.now();
    expect(refusal(`nodes: []\ndeep: ${'['.repeat(10_000)}\n`)).toMatch(/nested deeper than/);
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('refuses a file over 4 MiB before parsing it, so the parse time has a bound', () => {
    const started = performance.now();
    expect(refusal(`nodes:\n  - name: "\\u0000${'a'.repeat(5 * 1024 * 1024)}\n`)).toMatch(/at most \d+ characters/);
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('refuses a mapping key that is a list or a mapping, naming its line, instead of stringifying it', () => {
    expect(refusal(`nodes:\n  - ${ROW}\n    labels:\n      ? [a, b]\n      : x\n`)).toMatch(/line 6: .*key/);
  });

  it('refuses custom and language tags, naming the tag, rather than reading them as plain values', () => {
    expect(refusal(`nodes:\n  - !foo\n    ${ROW}\n`)).toContain('!foo');
    expect(refusal(`nodes:\n  - ${ROW}\n    arch: !!js/function "function () { return 1 }"\n`)).toContain('js/function');
  });
});
