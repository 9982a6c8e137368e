// Desired and observed state: the two sources of truth per node (DESIGN.md, idea 1).
import { z } from 'zod';
import { ValidationError, type FacetName, type FacetValue, type NodeId } from './node.js';

const IMAGE_REF = /^[a-z0-9][a-z0-9._-]{0,62}@[a-z0-9][a-z0-9._-]{0,31}$/;

/** What an operator may ask of a node. Facets left out are "don't care". */
export const DesiredPatchSchema = z
  .object({
    power: z.enum(['on', 'off']).nullable(),
    boot: z.enum(['network', 'disk']).nullable(),
    run: z.enum(['ready']).nullable(),
    image: z.string().regex(IMAGE_REF, 'an image is name@version, e.g. compute@2').nullable(),
  })
  .partial()
  .strict()
  .refine((d) => Object.keys(d).length > 0, 'the patch sets no facet; use power, boot, run or image')
  .refine((d) => !(d.power === 'off' && d.run === 'ready'), 'power=off contradicts run=ready');
/** A patch: a value sets a facet, null clears it back to "don't care". */
export type DesiredPatch = z.infer<typeof DesiredPatchSchema>;

export type DesiredState = Partial<Record<'power' | 'boot' | 'run' | 'image', string>>;

export function applyDesiredPatch(current: DesiredState, patch: DesiredPatch): DesiredState {
  const next: DesiredState = { ...current };
  for (const [facet, value] of Object.entries(patch) as [keyof DesiredState, string | null][]) {
    if (value === null) delete next[facet];
    else next[facet] = value;
  }
  if (next.power === 'off' && next.run === 'ready') throw new ValidationError('power=off contradicts run=ready');
  return next;
}

/** `power=on image=compute@2 boot=-` → a patch (`-` clears). Used by the CLI. */
export function parseDesiredAssignments(args: string[]): DesiredPatch {
  const raw: Record<string, string | null> = {};
  for (const arg of args) {
    const m = /^([a-z]+)=(.*)$/.exec(arg);
    if (!m) throw new ValidationError(`"${arg}" is not facet=value (e.g. power=on, image=compute@2, boot=- to clear)`);
    raw[m[1]!] = m[2] === '-' ? null : m[2]!;
  }
  return DesiredPatchSchema.parse(raw);
}

export interface Observation {
  value: FacetValue;
  /** Context that qualifies the value: the image a boot is armed for, the reason of a failure. */
  detail?: string;
  at: number;
  source: string;
}

export type ObservedState = Record<FacetName, Observation>;

export interface NodeStateView {
  id: NodeId;
  desired: DesiredState;
  observed: ObservedState;
}
