// Which nodes this appliance acts on. Several appliances may share one cluster (a PostgreSQL
// store): each acts only on the nodes of the leases it holds, and the engine and modules ask this
// contract, never the store (src/state/ownership.ts implements it; src/state/README.md says how).
import type { NodeId } from '../domain/node.js';

export interface NodeOwnership {
  /** This appliance's name. */
  readonly appliance: string;
  /** Whether this appliance acts on the node now: fires its steps, answers its boot requests. */
  owns(nodeId: NodeId): boolean;
  /** Called when what this appliance owns changes (a lease taken, lost, or expired unrenewed); returns the unsubscribe. */
  onChange(listener: () => void): () => void;
}
