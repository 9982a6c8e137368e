// Per-node templates (files, user-data, hostname) rendered with liquidjs, chosen over mustache and
// handlebars because it is maintained, safe by design (templates are data: no JavaScript runs, only
// tags and filters from a fixed set, with our own limits on time and memory), and strict on demand:
// with strictVariables and strictFilters an unknown variable or filter fails at save time, with its
// line, instead of rendering an empty string on a node at boot. include/render read nothing from
// disk: the template map is empty.
import { Liquid } from 'liquidjs';
import { isMap, parseDocument } from 'yaml';
import type { NodeRecord } from './node.js';

const liquid = new Liquid({
  strictVariables: true,
  strictFilters: true,
  ownPropertyOnly: true,
  templates: {},
  // A template is small; these stop a loop or a string doubling from costing the appliance.
  parseLimit: 1e6,
  renderLimit: 1000,
  memoryLimit: 16e6,
});

/** What a template sees of its node. */
export interface TemplateFields {
  name: string;
  id: string;
  macs: string[];
  /** The node's first MAC, the one it boots from. */
  mac: string;
  /** The node's reserved IPv4 address, or "" when it has none. */
  address: string;
  labels: Record<string, string>;
}

export function templateFields(node: NodeRecord): TemplateFields {
  return { name: node.name, id: node.id, macs: node.macs, mac: node.macs[0] ?? '', address: node.ipv4 ?? '', labels: node.labels };
}

/** A node with every field set, to check a profile that reaches no node yet. */
export const SAMPLE_NODE: NodeRecord = {
  id: '00000000-0000-0000-0000-000000000000',
  name: 'sample',
  macs: ['52:54:00:00:00:01'],
  bmc: { scheme: 'sim', host: 'sample' },
  arch: 'x86_64',
  firmware: 'auto',
  ipv4: '192.0.2.10',
  labels: {},
};

/** A template that does not render: what it is (`profile web, file /etc/motd`), the line, and why. */
export class TemplateError extends Error {
  constructor(
    readonly where: string,
    readonly line: number | undefined,
    readonly reason: string,
  ) {
    super(`${where}${line !== undefined ? `, line ${line}` : ''}: ${reason}`);
  }
}

/** Renders one template for a node; `where` names it in the error. */
export function renderTemplate(template: string, fields: TemplateFields, where: string): string {
  try {
    return liquid.parseAndRenderSync(template, fields) as string;
  } catch (err) {
    const e = err as Error & { token?: { getPosition?: () => [number, number] } };
    const position = e.token?.getPosition?.();
    const reason = (e.message ?? String(err)).replace(/, line:\d+, col:\d+$/, '');
    throw new TemplateError(where, position?.[0], reason);
  }
}

/** Refuses text that is not a cloud-config document: `#cloud-config` first, then a YAML mapping. */
export function checkCloudConfig(text: string, where: string): Record<string, unknown> {
  if (!/^#cloud-config[ \t]*(\r?\n|$)/.test(text)) throw new TemplateError(where, 1, 'user-data must start with a "#cloud-config" line');
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  const first = doc.errors[0];
  if (first) {
    const line = first.linePos?.[0]?.line;
    throw new TemplateError(where, line, `not valid YAML: ${first.message.split('\n')[0]}`);
  }
  if (doc.contents !== null && !isMap(doc.contents)) throw new TemplateError(where, 2, 'cloud-config is a YAML mapping at the top level');
  return (doc.toJS() as Record<string, unknown> | null) ?? {};
}
