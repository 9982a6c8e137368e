// Inventory files: an operator enrolls a rack at once from YAML, and gets the same shape back.
// Every row is validated before anything is written; a bad row is reported with its line.
import { isMap, isSeq, LineCounter, parseDocument, stringify } from 'yaml';
import { z } from 'zod';
import { formatBmcUrl, nodeSpecFromInput, type NodeRecord, type NodeSpec } from '../domain/node.js';
import type { DesiredPatch, DesiredState } from '../domain/state.js';
import { formatZodIssues } from '../domain/zod-issues.js';

export interface InventoryRow {
  spec: NodeSpec;
  bmcPassword?: string;
  desired?: DesiredPatch;
  line: number;
}

export class InventoryError extends Error {
  constructor(readonly problems: { line: number; message: string }[]) {
    super(`inventory has ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n  ${problems.map((p) => `line ${p.line}: ${p.message}`).join('\n  ')}`);
  }
}

/** Parses an inventory file; `parseDesired` validates each row's desired patch against the facets that can be desired. */
export function parseInventory(text: string, parseDesired: (raw: unknown) => DesiredPatch): InventoryRow[] {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true });
  const lineAt = (offset: number | undefined) => (offset === undefined ? 1 : lineCounter.linePos(offset).line);
  if (doc.errors.length > 0) {
    throw new InventoryError(doc.errors.map((e) => ({ line: lineAt(e.pos[0]), message: e.message.split('\n')[0]! })));
  }
  const nodes = isMap(doc.contents) ? doc.contents.get('nodes', true) : undefined;
  if (!isSeq(nodes)) throw new InventoryError([{ line: 1, message: 'expected a top-level "nodes:" list' }]);
  const problems: { line: number; message: string }[] = [];
  const rows: InventoryRow[] = [];
  const names = new Map<string, number>();
  const macs = new Map<string, number>();
  nodes.items.forEach((item) => {
    const line = lineAt((item as { range?: [number] }).range?.[0]);
    const raw = (item as { toJSON(): unknown }).toJSON() as Record<string, unknown> | null;
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
      problems.push({ line, message: 'a node row is a mapping with name, macs and bmc' });
      return;
    }
    const { desired, ...input } = raw;
    try {
      const { spec, bmcPassword } = nodeSpecFromInput(input);
      const row: InventoryRow = { spec, line };
      if (bmcPassword !== undefined) row.bmcPassword = bmcPassword;
      if (desired !== undefined) row.desired = parseDesired(desired);
      const seen = names.get(spec.name);
      if (seen) throw new Error(`node ${spec.name} is listed twice (first on line ${seen})`);
      names.set(spec.name, line);
      for (const mac of spec.macs) {
        const first = macs.get(mac);
        if (first) throw new Error(`MAC ${mac} is listed twice (first on line ${first})`);
        macs.set(mac, line);
      }
      rows.push(row);
    } catch (err) {
      problems.push({ line, message: describeError(err) });
    }
  });
  if (problems.length > 0) throw new InventoryError(problems);
  return rows;
}

export function exportInventory(nodes: { node: NodeRecord; desired: DesiredState }[]): string {
  return stringify({
    nodes: nodes.map(({ node, desired }) => ({
      name: node.name,
      macs: node.macs,
      bmc: formatBmcUrl(node.bmc),
      arch: node.arch,
      firmware: node.firmware,
      ...(node.ipv4 ? { ipv4: node.ipv4 } : {}),
      ...(Object.keys(node.labels).length ? { labels: node.labels } : {}),
      ...(Object.keys(desired).length ? { desired } : {}),
    })),
  });
}

export function describeError(err: unknown): string {
  if (err instanceof z.ZodError) return formatZodIssues(err).join('; ');
  return err instanceof Error ? err.message : String(err);
}
