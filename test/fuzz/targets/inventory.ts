// Inventory files as an operator, a script or a hostile upload could write them: rows of every
// shape (valid, wrong types, missing fields), YAML anchors and aliases, alias bombs ("billion
// laughs"), custom and language tags (!!js/function, !foo), duplicate keys, huge scalars and
// byte-level damage. Every one must come back as rows or an InventoryError, in bounded time.
import { stringify } from 'yaml';
import { DesiredVocabulary } from '../../../src/engine/desired.js';
import { standardFacets } from '../../../src/facets/standard.js';
import { InventoryError, parseInventory } from '../../../src/state/inventory.js';
import { classify, mutateJson, type FuzzTarget, type Gen } from '../kit.js';

/** Longer than this per megabyte (and 2 s for any file) is a parser that can be made to spin. */
const MAX_MS_PER_MEGABYTE = 2_000;

function mac(g: Gen): string {
  return Array.from({ length: 6 }, () => g.int(256).toString(16).padStart(2, '0')).join(g.pick([':', ':', '-']));
}

function row(g: Gen, i: number): Record<string, unknown> {
  const r: Record<string, unknown> = {
    name: `n${i}`,
    macs: Array.from({ length: 1 + g.int(2) }, () => mac(g)),
    bmc: g.pick(['ipmi://admin:pw@10.0.0.1', 'redfish+https://10.0.0.2/redfish/v1/Systems/1', 'ipmi://10.0.0.3:623']),
  };
  if (g.chance(0.3)) r['arch'] = g.pick(['x86_64', 'arm64', 'sparc']);
  if (g.chance(0.3)) r['labels'] = { rack: `r${g.int(9)}`, role: g.pick(['compute', 'gpu']) };
  if (g.chance(0.5)) r['desired'] = { power: g.pick(['on', 'off']), ...(g.chance(0.5) ? { image: `compute@${g.int(5)}` } : {}) };
  return r;
}

function bomb(g: Gen): string {
  const width = 2 + g.int(9);
  const depth = 2 + g.int(9);
  let text = `a0: &a0 [${Array(width).fill('"lol"').join(', ')}]\n`;
  for (let level = 1; level < depth; level++) text += `a${level}: &a${level} [${Array(width).fill(`*a${level - 1}`).join(', ')}]\n`;
  const top = `*a${depth - 1}`;
  return text + g.pick([`nodes: ${top}\n`, `nodes: [${top}]\n`, `nodes:\n  - name: n1\n    macs: ["52:54:00:00:00:01"]\n    bmc: ipmi://10.0.0.1\n    labels: ${top}\n`]);
}

const TAGS = ['!!js/function', '!!js/undefined', '!!js/regexp', '!foo', '!!binary', '!!set', '!!omap', '!!timestamp', '!<tag:yaml.org,2002:str>', '!!python/object:os.system', '!!float', '!!int', '!!map', '!!seq'];

/** Damages YAML text the ways that matter to a YAML parser, not only at random. */
function mutateYaml(g: Gen, text: string): string {
  const lines = text.split('\n');
  const at = () => g.int(lines.length);
  const rounds = 1 + g.int(3);
  for (let r = 0; r < rounds; r++) {
    switch (g.int(9)) {
      case 0: // a tag on some value
        lines[at()] = lines[at()]!.replace(/: /, `: ${g.pick(TAGS)} `);
        break;
      case 1: // a duplicate key
        {
          const i = at();
          lines.splice(i, 0, lines[i]!);
        }
        break;
      case 2: // an anchor here, an alias there (maybe undefined, maybe recursive)
        lines[at()] = lines[at()]!.replace(/: /, ': &x ');
        lines[at()] = lines[at()]!.replace(/: .*/, g.pick([': *x', ': *undefined', ': [*x, *x]']));
        break;
      case 3: // a huge scalar
        lines[at()] = lines[at()]!.replace(/: .*/, `: ${g.pick(['a', '9', '"\\u0000', "'"])}${'a'.repeat(g.chance(0.02) ? 1_000_000 : g.chance(0.2) ? 100_000 : 1000)}`);
        break;
      case 4: // indentation damaged
        lines[at()] = g.pick(['  ', '\t', '', '    ']) + lines[at()]!.trimStart();
        break;
      case 5: // flow/block syntax injected
        lines.splice(at(), 0, g.pick(['- [', '{', '? ', '--- ', '...', '%YAML 1.1', '%TAG !e! tag:example.com,2000:', '<<: *x', '- !!merge <<: {}', 'nodes: ~']));
        break;
      case 6: // byte damage
        return g.mutateBytes(Buffer.from(lines.join('\n'))).toString('utf8');
      case 7: // deep nesting
        lines.push(`deep: ${'['.repeat(g.pick([100, 1000, 10_000]))}`);
        break;
      case 8: // keys that are collections or odd scalars
        lines.splice(at(), 0, g.pick(['? [a, b]\n: 1', '? {a: 1}\n: 2', '__proto__: {polluted: true}', 'constructor: 1', '"": x', '.inf: 1']));
        break;
    }
  }
  return lines.join('\n');
}

function inventoryText(g: Gen): string {
  switch (g.int(6)) {
    case 0:
      return bomb(g);
    case 1: // random structure from a valid document
      return stringify(mutateJson(g, { nodes: Array.from({ length: g.int(4) }, (_, i) => row(g, i)) }));
    default: {
      const doc: Record<string, unknown> = { nodes: Array.from({ length: 1 + g.int(4) }, (_, i) => row(g, i)) };
      return g.chance(0.2) ? stringify(doc) : mutateYaml(g, stringify(doc));
    }
  }
}

export const inventoryFuzzTarget: FuzzTarget = {
  name: 'inventory yaml',
  async open() {
    const vocabulary = new DesiredVocabulary(standardFacets);
    const parseDesired = (raw: unknown) => vocabulary.parsePatch(raw);
    return {
      one(g) {
        const text = inventoryText(g);
        const started = performance.now();
        const outcome = classify(() => parseInventory(text, parseDesired), (error) => error instanceof InventoryError);
        const ms = performance.now() - started;
        if (ms > MAX_MS_PER_MEGABYTE * Math.max(1, text.length / 1_000_000)) throw new Error(`parseInventory took ${Math.round(ms)} ms on ${JSON.stringify(text.slice(0, 200))}`);
        return outcome;
      },
      async close() {},
    };
  },
};
