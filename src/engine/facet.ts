// The contract a facet is declared with: an xstate region whose states are the facet's values and
// whose events are the steps a module can take, plus what the executor needs to run each step.
import type { DesiredState, Observation } from '../domain/state.js';
import type { FacetName, FacetValue } from '../domain/node.js';

export type StepName = string;

export interface StepSpec {
  /** `action`: the owning module does something. `await`: nothing is fired; the world moves on its own. */
  kind: 'action' | 'await';
  /** Values of the owning facet whose observation confirms the step. */
  confirms: FacetValue[];
  /** Observed values that show the step under way (e.g. run: draining); they change no deadline. */
  progress?: FacetValue[];
  timeoutMs: number;
  /** What the owning facet is observed to be when the step is not confirmed in time. */
  failsTo: FacetValue;
  /** Actions through one BMC run one at a time. */
  serialize?: 'bmc';
  /** One line an operator reads in `shoal plan`. */
  explain: string;
}

/**
 * An xstate state-node config for one facet region. Typed loosely on purpose: xstate's own config
 * types are generic over the whole machine, and facets are composed at start-up.
 */
export type RegionStates = Record<FacetValue, Record<string, unknown>>;

export interface FacetDefinition {
  name: FacetName;
  /** Values in a stable order: the order drives state encoding and tie-breaks nothing. */
  values: FacetValue[];
  initial: FacetValue;
  states: RegionStates;
  /** Steps owned by this facet, in the order the planner tries them (earlier wins a tie). */
  steps: Record<StepName, StepSpec>;
  /** Values that mean something went wrong; each must have a way back (checked by the lint). */
  failureValues: FacetValue[];
  /** Values entered only by observation (no step leads there), still counted as reachable. */
  observedOnly: FacetValue[];
  /** Maps the stored observation to the value the planner reasons with, relative to desired state. */
  abstract?: (observation: Observation | undefined, desired: DesiredState) => FacetValue;
}

/** Allowed values per facet; facets not named are "don't care". */
export type Target = Partial<Record<FacetName, FacetValue[]>>;
