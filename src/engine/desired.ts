// What an operator may desire, built from the registered facets: every facet that declares a
// `desired` spec can be asked for, through the API, the CLI, the inventory file and rollouts alike.
// Patches are validated here, at the edge, with problems that name the facet and its allowed values;
// a desired state becomes the planner's target by merging what each desired facet asks for.
import { z } from 'zod';
import { ValidationError } from '../domain/errors.js';
import type { FacetName } from '../domain/node.js';
import { applyDesiredPatch, type DesiredPatch, type DesiredState } from '../domain/state.js';
import type { DesiredSpec, FacetDefinition, Target } from './facet.js';

export class DesiredVocabulary {
  /** The facets an operator can desire, in registration order. */
  readonly facets: FacetName[];
  /** A desired-state patch: each key a desirable facet, each value one it accepts or null (clear). */
  readonly patchSchema: z.ZodType<DesiredPatch>;
  private readonly specs: Map<FacetName, DesiredSpec>;

  constructor(definitions: readonly FacetDefinition[]) {
    this.specs = new Map(definitions.flatMap((d) => (d.desired ? [[d.name, d.desired] as const] : [])));
    this.facets = [...this.specs.keys()];
    const known = this.facets.join(', ');
    const shape = Object.fromEntries([...this.specs].map(([facet, spec]) => [facet, valueSchema(facet, spec).nullable().optional()]));
    this.patchSchema = z
      .strictObject(shape, {
        error: (issue) => (issue.code === 'unrecognized_keys' ? `${issue.keys.join(', ')}: not a facet that can be desired; these can: ${known}` : undefined),
      })
      .refine((patch) => Object.keys(patch).length > 0, `the patch sets no facet; use ${known}`)
      .superRefine((patch, ctx) => {
        const conflict = this.conflict(patch as DesiredState);
        if (conflict) ctx.addIssue({ code: 'custom', message: conflict });
      }) as unknown as z.ZodType<DesiredPatch>;
  }

  /** Validates a patch from outside (API body, inventory row, CLI assignments); throws zod's error. */
  parsePatch(raw: unknown): DesiredPatch {
    return this.patchSchema.parse(raw);
  }

  /** The desired state after `patch`, refused with a ValidationError when its facets contradict each other. */
  apply(current: DesiredState, patch: DesiredPatch): DesiredState {
    const next = applyDesiredPatch(current, patch);
    this.check(next);
    return next;
  }

  /** Throws a ValidationError when the desired state's facets contradict each other. */
  readonly check = (desired: DesiredState): void => {
    const conflict = this.conflict(desired);
    if (conflict) throw new ValidationError(conflict);
  };

  /** What the desired state asks of the facets: each desired facet's target, merged (a facet asked twice keeps the values both allow). */
  target(desired: DesiredState): Target {
    const target: Target = {};
    for (const [facet, spec] of this.specs) {
      const value = desired[facet];
      if (value === undefined) continue;
      for (const [name, allowed] of Object.entries(spec.target(value, desired))) {
        const before = target[name];
        target[name] = before ? before.filter((v) => allowed!.includes(v)) : [...allowed!];
      }
    }
    return target;
  }

  /** Each desirable facet with what it accepts, in registration order (for forms and documents). */
  describe(): Array<{ facet: FacetName; values: string[] } | { facet: FacetName; pattern: string; describe: string }> {
    return [...this.specs].map(([facet, { accepts }]) => ('pattern' in accepts ? { facet, pattern: accepts.pattern.source, describe: accepts.describe } : { facet, values: [...accepts] }));
  }

  private conflict(desired: DesiredState): string | undefined {
    for (const [facet, spec] of this.specs) {
      const value = desired[facet];
      const conflict = value === undefined || value === null ? undefined : spec.conflict?.(value, desired);
      if (conflict) return conflict;
    }
    return undefined;
  }
}

function valueSchema(facet: FacetName, spec: DesiredSpec): z.ZodType<string> {
  const { accepts } = spec;
  if ('pattern' in accepts) return z.string({ error: `${facet}: ${accepts.describe}` }).regex(accepts.pattern, `${facet}: ${accepts.describe}`);
  return z.enum(accepts as [string, ...string[]], { error: `${facet} is one of ${accepts.join(', ')}` });
}
