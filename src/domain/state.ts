// Desired and observed state: the two sources of truth per node (DESIGN.md, idea 1).
import { ValidationError } from './errors.js';
import type { FacetName, FacetValue } from './node.js';

/** What an operator asks of a node: a value per facet. Facets left out are "don't care". Which facets
 * can be desired, and with which values, is declared by the facets themselves (src/engine/desired.ts). */
export type DesiredState = Partial<Record<FacetName, string>>;

/** A patch: a value sets a facet, null clears it back to "don't care". */
export type DesiredPatch = Partial<Record<FacetName, string | null>>;

export function applyDesiredPatch(current: DesiredState, patch: DesiredPatch): DesiredState {
  const next: DesiredState = { ...current };
  for (const [facet, value] of Object.entries(patch)) {
    if (value === null) delete next[facet];
    else if (value !== undefined) next[facet] = value;
  }
  return next;
}

/** `power=on image=compute@2 boot=-` → a patch (`-` clears), checked by the appliance it is sent to. Used by the CLI. */
export function parseDesiredAssignments(args: string[]): DesiredPatch {
  const patch: DesiredPatch = {};
  for (const arg of args) {
    const m = /^([a-z][a-z0-9_-]*)=(.*)$/.exec(arg);
    if (!m) throw new ValidationError(`"${arg}" is not facet=value (e.g. power=on, image=compute@2, boot=- to clear)`);
    patch[m[1]!] = m[2] === '-' ? null : m[2]!;
  }
  if (Object.keys(patch).length === 0) throw new ValidationError('no facet=value given (e.g. power=on, image=compute@2)');
  return patch;
}

export interface Observation {
  value: FacetValue;
  /** Context that qualifies the value: the image a boot is armed for, the reason of a failure. */
  detail?: string;
  at: number;
  source: string;
}

export type ObservedState = Record<FacetName, Observation>;
