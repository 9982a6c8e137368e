// Node selectors, one parser for the API's `?selector=`, rollouts and the dashboard's filter:
// label terms (`rack=r1,role!=login`) and terms on the hardware the node's agent reported
// (`hw.memory>=64Gi,hw.firmware=uefi`). Comma means and. No imports beyond types, so the
// dashboard bundles it as it is.
import type { Hardware } from '../contracts/hardware.js';
import { ValidationError } from './errors.js';

export interface Selectable {
  labels: Record<string, string>;
  /** What the node's agent reported; a node that has not reported matches no hardware term. */
  hardware?: Hardware | undefined;
}

export interface Selector {
  (node: Selectable): boolean;
  /** Whether any term reads the hardware, so callers look it up only then. */
  readonly usesHardware: boolean;
}

type Op = '=' | '!=' | '>=' | '<=' | '>' | '<';
type Field = { kind: 'number'; read: (h: Hardware) => number } | { kind: 'bytes'; read: (h: Hardware) => number } | { kind: 'text'; read: (h: Hardware) => string };

/** The hardware a selector can name, each read from the report in one place. */
const HARDWARE_FIELDS: Record<string, Field> = {
  memory: { kind: 'bytes', read: (h) => h.memoryBytes },
  'cpu.sockets': { kind: 'number', read: (h) => h.cpu.sockets },
  'cpu.cores': { kind: 'number', read: (h) => h.cpu.cores },
  'cpu.threads': { kind: 'number', read: (h) => h.cpu.threads },
  'cpu.model': { kind: 'text', read: (h) => h.cpu.model },
  disks: { kind: 'number', read: (h) => h.disks.length },
  /** The largest disk: "has a disk of at least …". */
  'disk.size': { kind: 'bytes', read: (h) => Math.max(0, ...h.disks.map((d) => d.sizeBytes)) },
  nics: { kind: 'number', read: (h) => h.nics.length },
  firmware: { kind: 'text', read: (h) => h.firmware },
  vendor: { kind: 'text', read: (h) => h.system.vendor },
  product: { kind: 'text', read: (h) => h.system.product },
};

const UNITS: Record<string, number> = { '': 1, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
const TERM = /^([^=!<>]+?)\s*(!=|>=|<=|=|>|<)\s*(.*)$/;

const compare = (op: Op, a: number | string, b: number | string): boolean =>
  op === '=' ? a === b : op === '!=' ? a !== b : op === '>=' ? a >= b : op === '<=' ? a <= b : op === '>' ? a > b : a < b;

/** Parses a selector; a term it cannot read is a ValidationError naming the term and what would do. */
export function parseSelector(raw: string): Selector {
  let usesHardware = false;
  const terms = raw
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)
    .map((term): ((node: Selectable) => boolean) => {
      const m = TERM.exec(term);
      if (!m) throw new ValidationError(`selector term "${term}" is not key=value, key!=value or hw.FIELD OP VALUE`);
      const [, key, op, value] = m as unknown as [string, string, Op, string];
      if (!key.startsWith('hw.')) {
        if (op !== '=' && op !== '!=') throw new ValidationError(`selector term "${term}": labels compare with = or != only`);
        return (node) => (node.labels[key] === value) !== (op === '!=');
      }
      usesHardware = true;
      const name = key.slice(3);
      const field = HARDWARE_FIELDS[name];
      if (!field) throw new ValidationError(`selector term "${term}": no hardware field "${name}"; use one of ${Object.keys(HARDWARE_FIELDS).map((f) => `hw.${f}`).join(', ')}`);
      if (field.kind === 'text') {
        if (op !== '=' && op !== '!=') throw new ValidationError(`selector term "${term}": hw.${name} is text, compared with = or != only`);
        return (node) => node.hardware !== undefined && compare(op, field.read(node.hardware), value);
      }
      const number = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti)?$/.exec(value);
      if (!number || (field.kind === 'number' && number[2])) {
        throw new ValidationError(`selector term "${term}": hw.${name} takes ${field.kind === 'bytes' ? 'a size in bytes or with Ki, Mi, Gi or Ti (64Gi)' : 'a whole number'}`);
      }
      const wanted = Number(number[1]) * UNITS[number[2] ?? '']!;
      return (node) => node.hardware !== undefined && compare(op, field.read(node.hardware), wanted);
    });
  const selector = (node: Selectable) => terms.every((matches) => matches(node));
  return Object.assign(selector, { usesHardware });
}
