// What the grid derives from the nodes: each node's state, counts per state, and the filters.
import type { NodeView } from '../../src/api/views.js';
import type { Hardware } from '../../src/contracts/hardware.js';
import { parseSelector, type Selector } from '../../src/domain/selector.js';
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

/** A predicate for the filter, or the reason the selector cannot be read. */
export function matcher(filter: Filter): ((node: NodeView) => boolean) | string {
  let selects: Selector;
  try {
    selects = parseSelector(filter.selector);
  } catch (err) {
    return (err as Error).message;
  }
  const name = filter.name.trim().toLowerCase();
  const image = filter.image.trim();
  return (node) =>
    (!name || node.name.toLowerCase().includes(name)) &&
    (!filter.state || nodeState(node) === filter.state) &&
    (!image || node.desired.image === image || node.observed.image?.value === image) &&
    selects({ labels: node.labels, hardware: selects.usesHardware ? reportedHardware(node) : undefined });
}

/** The node's hardware report, as the appliance recorded it after validating it. */
function reportedHardware(node: NodeView): Hardware | undefined {
  const detail = node.observed.hardware?.detail;
  return detail ? (JSON.parse(detail) as Hardware) : undefined;
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
