// The dashboard's own vocabulary, beside the API's wire types (src/api/views.ts, imported as types
// only): what a row is coloured by, and the facets the node page lays out first.
import type { Phase } from '../../src/api/views.js';

/** What a row is coloured by: the engine's phase, or `lost` when the node's agent went silent. */
export type NodeState = Phase | 'lost';
export const NODE_STATES: readonly NodeState[] = ['converged', 'converging', 'failed', 'lost', 'frozen', 'blocked'];

export const FACETS = ['power', 'boot', 'run', 'image'] as const;
