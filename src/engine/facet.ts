// The contract a facet is declared with: an xstate region whose states are the facet's values and
// whose events are the steps a module can take, the guards those transitions name, what the
// executor needs to run each step, and how an operator's desired value becomes a planning target.
// Declared with `defineFacet`, a facet's values and step names are literal types, so a typo in a
// transition, a step's confirming value or its failure value is a compile error.
import type { DesiredState, Observation } from '../domain/state.js';
import type { FacetName, FacetValue } from '../domain/node.js';

export type StepName = string;

export interface StepSpec<V extends FacetValue = FacetValue> {
  /** `action`: the owning module does something. `await`: nothing is fired; the world moves on its own. */
  kind: 'action' | 'await';
  /** Values of the owning facet whose observation confirms the step. */
  confirms: readonly V[];
  /** Observed values that show the step under way (e.g. run: draining); they change no deadline. */
  progress?: readonly V[];
  timeoutMs: number;
  /** What the owning facet is observed to be when the step is not confirmed in time. */
  failsTo: V;
  /** Actions through one BMC run one at a time. */
  serialize?: 'bmc';
  /** One line an operator reads in `shoal plan`. */
  explain: string;
}

/** A guard by name (`guard: 'powerOff'`), as xstate's `setup({ guards })` takes it. */
export type GuardName = string;
/** A transition of a region: a target value, optionally behind a named guard. */
export type Transition<V extends FacetValue> = V | { target: V; guard?: GuardName } | ReadonlyArray<{ target: V; guard?: GuardName }>;

export interface RegionState<V extends FacetValue, E extends string> {
  /** Steps (of any facet: regions see every event) that move this facet, by event name. */
  on?: Partial<Record<E, Transition<V>>>;
  /** A reaction to other facets, taken without any step (power off ⇒ run off). */
  always?: { target: V; guard: GuardName };
}

/** How an operator may desire a facet, and what that asks of the graph. */
export interface DesiredSpec {
  /** The values accepted: a list, or a pattern with a description and an example for error messages. */
  accepts: readonly string[] | { pattern: RegExp; describe: string };
  /** What desiring `value` asks of the facets, given the rest of the desired state. */
  target(value: string, desired: DesiredState): Target;
  /** A contradiction between `value` and the rest of the desired state, as a sentence; undefined when none. */
  conflict?(value: string, desired: DesiredState): string | undefined;
}

export interface FacetDefinition<V extends FacetValue = FacetValue, S extends StepName = StepName> {
  name: FacetName;
  /** Values in a stable order: the order drives state encoding and tie-breaks nothing. */
  values: readonly V[];
  initial: V;
  /** Transitions per value; the events are step names of any facet. */
  states: Partial<Record<V, RegionState<V, StepName>>>;
  /** Guards the transitions name (implementations are xstate guards, e.g. `stateIn`). Names are global across facets. */
  guards?: Record<GuardName, unknown>;
  /** Steps owned by this facet, in the order the planner tries them (earlier wins a tie). */
  steps: Record<S, StepSpec<V>>;
  /** Values that mean something went wrong; each must have a way back (checked by the lint). */
  failureValues: readonly V[];
  /** Values entered only by observation (no step leads there), still counted as reachable. */
  observedOnly: readonly V[];
  /** Maps the stored observation to the value the planner reasons with, relative to desired state. */
  abstract?(observation: Observation | undefined, desired: DesiredState): V;
  /** Present when an operator can desire this facet. */
  desired?: DesiredSpec;
}

/** Declares a facet with its values and step names inferred as literal types; returns it unchanged. */
export function defineFacet<const V extends FacetValue, const S extends StepName>(definition: FacetDefinition<V, S>): FacetDefinition<V, S> {
  return definition;
}

/** Allowed values per facet; facets not named are "don't care". */
export type Target = Partial<Record<FacetName, FacetValue[]>>;
