// Inventory files: an operator enrolls a rack at once from YAML, with the profiles that configure
// it, and gets the same shape back. Every row and profile is validated before anything is written;
// a bad one is reported with its line.
import { isAlias, isCollection, isMap, isSeq, LineCounter, parseDocument, stringify, visit } from 'yaml';
import { z } from 'zod';
import { formatBmcUrl, nodeSpecFromInput, type NodeRecord, type NodeSpec } from '../domain/node.js';
import { ProfileInputSchema, ProfileNameSchema, SettingsSchema, type Profile, type Settings } from '../domain/profile.js';
import type { DesiredPatch, DesiredState } from '../domain/state.js';
import { formatZodIssues } from '../domain/zod-issues.js';

export interface InventoryRow {
  spec: NodeSpec;
  bmcPassword?: string;
  desired?: DesiredPatch;
  /** The node's own configuration overrides. */
  config?: Settings;
  line: number;
}

export interface InventoryProfile {
  profile: Profile;
  line: number;
}

export class InventoryError extends Error {
  constructor(readonly problems: { line: number; message: string }[]) {
    super(`inventory has ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n  ${problems.map((p) => `line ${p.line}: ${p.message}`).join('\n  ')}`);
  }
}

/** Parses an inventory file; `parseDesired` validates each row's desired patch against the facets that can be desired. */
export function parseInventory(text: string, parseDesired: (raw: unknown) => DesiredPatch): { rows: InventoryRow[]; profiles: InventoryProfile[] } {
  const lineCounter = new LineCounter();
  const lineAt = (offset: number | undefined) => (offset === undefined ? 1 : lineCounter.linePos(offset).line);
  if (text.length > MAX_INVENTORY_CHARS) {
    throw new InventoryError([{ line: 1, message: `an inventory file is at most ${MAX_INVENTORY_CHARS} characters, this one has ${text.length}` }]);
  }
  refuseDeepNesting(text);
  // Known tags off: !!binary, !!set, !!js/function and !foo are then unresolved, reported below.
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, resolveKnownTags: false });
  // An unresolved tag is only a warning to the yaml package; in an inventory it is a mistake or an attack.
  const findings = [...doc.errors, ...doc.warnings];
  if (findings.length > 0) {
    throw new InventoryError(findings.map((e) => ({ line: lineAt(e.pos[0]), message: e.message.split('\n')[0]! })));
  }
  // A list or mapping as a key would be stringified into a key nobody wrote.
  const collectionKeys: { line: number; message: string }[] = [];
  visit(doc, {
    Pair(_, pair) {
      if (isCollection(pair.key)) collectionKeys.push({ line: lineAt(pair.key.range?.[0]), message: 'a mapping key must be a plain value, not a list or a mapping' });
    },
  });
  if (collectionKeys.length > 0) throw new InventoryError(collectionKeys);
  let data: unknown;
  try {
    // Aliases resolve here, for the whole document at once: a row's toJSON() alone resolves them to
    // nothing. The cap refuses alias bombs ("billion laughs") instead of expanding them.
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    throw new InventoryError([{ line: 1, message: `the aliases expand too far (at most ${MAX_ALIAS_COUNT} alias uses): ${describeError(err)}` }]);
  }
  const top = isMap(doc.contents) ? doc.contents.get('nodes', true) : undefined;
  const nodes = isAlias(top) ? top.resolve(doc) : top;
  const rawRows = (data as { nodes?: unknown } | null)?.nodes;
  if (!isSeq(nodes) || !Array.isArray(rawRows)) throw new InventoryError([{ line: 1, message: 'expected a top-level "nodes:" list' }]);
  const problems: { line: number; message: string }[] = [];
  const rows: InventoryRow[] = [];
  const names = new Map<string, number>();
  const macs = new Map<string, number>();
  nodes.items.forEach((item, index) => {
    const line = lineAt((item as { range?: [number] }).range?.[0]);
    const raw = rawRows[index] as Record<string, unknown> | null;
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
      problems.push({ line, message: 'a node row is a mapping with name, macs and bmc' });
      return;
    }
    const { desired, config, ...input } = raw;
    try {
      const { spec, bmcPassword } = nodeSpecFromInput(input);
      const row: InventoryRow = { spec, line };
      if (bmcPassword !== undefined) row.bmcPassword = bmcPassword;
      if (desired !== undefined) row.desired = parseDesired(desired);
      if (config !== undefined) row.config = SettingsSchema.parse(config);
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
  const profiles = parseProfiles(doc, lineAt, (data as { profiles?: unknown }).profiles, problems);
  if (problems.length > 0) throw new InventoryError(problems);
  return { rows, profiles };
}

/** The optional top-level `profiles:` list: each a mapping with a name and the fields of PUT /profiles/NAME. */
function parseProfiles(doc: ReturnType<typeof parseDocument>, lineAt: (offset: number | undefined) => number, raw: unknown, problems: { line: number; message: string }[]): InventoryProfile[] {
  if (raw === undefined) return [];
  const top = isMap(doc.contents) ? doc.contents.get('profiles', true) : undefined;
  const node = isAlias(top) ? top.resolve(doc) : top;
  if (!isSeq(node) || !Array.isArray(raw)) {
    problems.push({ line: lineAt((top as { range?: [number] } | undefined)?.range?.[0]), message: '"profiles:" is a list of profiles, each with a name' });
    return [];
  }
  const profiles: InventoryProfile[] = [];
  const names = new Map<string, number>();
  node.items.forEach((item, index) => {
    const line = lineAt((item as { range?: [number] }).range?.[0]);
    const entry = raw[index] as Record<string, unknown> | null;
    try {
      if (!entry || typeof entry !== 'object' || Array.isArray(entry)) throw new Error('a profile is a mapping with a name and its settings');
      const { name, ...input } = entry;
      const profileName = ProfileNameSchema.parse(name);
      const seen = names.get(profileName);
      if (seen) throw new Error(`profile ${profileName} is listed twice (first on line ${seen})`);
      names.set(profileName, line);
      profiles.push({ profile: { name: profileName, ...ProfileInputSchema.parse(input) }, line });
    } catch (err) {
      problems.push({ line, message: describeError(err) });
    }
  });
  return profiles;
}

/** 10,000 nodes fit in a quarter of this; the yaml parser takes about a second per megabyte of a long quoted scalar. */
const MAX_INVENTORY_CHARS = 4 * 1024 * 1024;
/** Alias uses one file may make; a rack's worth of shared labels needs far fewer. */
const MAX_ALIAS_COUNT = 1000;
/** Deeper flow collections ([[[...) cost the yaml parser its stack and seconds for a few kilobytes. */
const MAX_FLOW_DEPTH = 64;

/** Refuses flow nesting deeper than MAX_FLOW_DEPTH before the parser sees it (brackets in quoted text count too). */
function refuseDeepNesting(text: string): void {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_FLOW_DEPTH) {
        throw new InventoryError([{ line: text.slice(0, i).split('\n').length, message: `collections nested deeper than ${MAX_FLOW_DEPTH} levels` }]);
      }
    } else if ((c === 0x5d || c === 0x7d) && depth > 0) depth--;
  }
}

export function exportInventory(nodes: { node: NodeRecord; desired: DesiredState; config: Settings }[], profiles: Profile[]): string {
  return stringify({
    ...(profiles.length ? { profiles: profiles.map(({ name, ...rest }) => ({ name, ...rest })) } : {}),
    nodes: nodes.map(({ node, desired, config }) => ({
      name: node.name,
      macs: node.macs,
      bmc: formatBmcUrl(node.bmc),
      arch: node.arch,
      firmware: node.firmware,
      ...(node.ipv4 ? { ipv4: node.ipv4 } : {}),
      ...(Object.keys(node.labels).length ? { labels: node.labels } : {}),
      ...(Object.keys(desired).length ? { desired } : {}),
      ...(Object.keys(config).length ? { config } : {}),
    })),
  });
}

export function describeError(err: unknown): string {
  if (err instanceof z.ZodError) return formatZodIssues(err).join('; ');
  return err instanceof Error ? err.message : String(err);
}
