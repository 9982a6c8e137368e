// What the grid derives from the nodes: each node's state, counts per state, and the filters.
import type { NodeView } from '../../src/api/views.js';
import { NODE_STATES, type NodeState } from './types.js';

/**
 * A failed node stays `failed` (the operator has to act); otherwise a node whose agent went silent
 * is `lost` whatever the engine is doing about it; otherwise the engine's phase.
 */
export function nodeState(node: NodeView): NodeState {
  if (node.phase === 'failed') return 'failed';
  if (node.observed.run?.value === 'lost') return 'lost';
  return node.phase;
}

export function countStates(nodes: Iterable<NodeView>): Record<NodeState, number> {
  const counts = Object.fromEntries(NODE_STATES.map((s) => [s, 0])) as Record<NodeState, number>;
  for (const node of nodes) counts[nodeState(node)]++;
  return counts;
}

export interface Filter {
  name: string;
  selector: string;
  state: NodeState | '';
  image: string;
}

export const NO_FILTER: Filter = { name: '', selector: '', state: '', image: '' };

/** The API's label selector (`rack=r1,role!=login`), so the grid filters as `GET /nodes?selector=` does. */
export function parseSelector(raw: string): ((labels: Record<string, string>) => boolean) | string {
  const terms: { key: string; negate: boolean; value: string }[] = [];
  for (const term of raw.split(',').map((t) => t.trim()).filter(Boolean)) {
    const m = /^([^=!]+?)\s*(!=|=)\s*(.*)$/.exec(term);
    if (!m) return `"${term}" is not key=value or key!=value`;
    terms.push({ key: m[1]!, negate: m[2] === '!=', value: m[3]! });
  }
  return (labels) => terms.every((t) => (labels[t.key] === t.value) !== t.negate);
}

/** A predicate for the filter, or the reason the selector cannot be read. */
export function matcher(filter: Filter): ((node: NodeView) => boolean) | string {
  const selects = parseSelector(filter.selector);
  if (typeof selects === 'string') return selects;
  const name = filter.name.trim().toLowerCase();
  const image = filter.image.trim();
  return (node) =>
    (!name || node.name.toLowerCase().includes(name)) &&
    (!filter.state || nodeState(node) === filter.state) &&
    (!image || node.desired.image === image || node.observed.image?.value === image) &&
    selects(node.labels);
}

/** Every image named by some node, desired or observed, for the image filter. */
export function imagesOf(nodes: Iterable<NodeView>): string[] {
  const images = new Set<string>();
  for (const node of nodes) {
    if (node.desired.image) images.add(node.desired.image);
    if (node.observed.image?.value) images.add(node.observed.image.value);
  }
  return [...images].sort();
}
