// Composes the facet machines into one parallel xstate machine per node kind and compiles it, once
// at start-up, into a transition table over every combination of facet values. Planning and the
// lint then run on the table: xstate decides the semantics, the table makes 10,000 nodes cheap.
import { setup, transition, type AnyStateMachine } from 'xstate';
import type { FacetName, FacetValue } from '../domain/node.js';
import type { FacetDefinition, GuardName, StepName, StepSpec, Target } from './facet.js';

/** A composed state: one value per facet, in `FacetGraph.facets` order. */
export type StateVector = readonly FacetValue[];

export interface Edge {
  step: StepName;
  to: number;
}

export interface StepInfo extends StepSpec {
  name: StepName;
  facet: FacetName;
}

export class FacetGraph {
  readonly facets: FacetName[];
  readonly steps: StepInfo[];
  readonly machine: AnyStateMachine;
  /** Every combination of facet values, by index. */
  readonly states: StateVector[] = [];
  /** For each state, the state xstate settles it into (eventless reactions applied). */
  readonly settled: number[] = [];
  /** For each settled state, the steps enabled in it, in planner order. */
  readonly edges: Edge[][] = [];
  private readonly index = new Map<string, number>();
  private readonly stepIndex = new Map<StepName, StepInfo>();

  constructor(readonly definitions: FacetDefinition[]) {
    const names = new Set<string>();
    for (const d of definitions) {
      if (names.has(d.name)) throw new Error(`facet ${d.name} is declared twice`);
      names.add(d.name);
      for (const v of Object.keys(d.states)) {
        if (!d.values.includes(v)) throw new Error(`facet ${d.name}: state ${v} is not among its values`);
      }
    }
    this.facets = definitions.map((d) => d.name);
    this.steps = definitions.flatMap((d) => Object.entries(d.steps).map(([name, spec]) => ({ ...spec, name, facet: d.name })));
    for (const s of this.steps) {
      if (this.stepIndex.has(s.name)) throw new Error(`step ${s.name} is declared by two facets`);
      this.stepIndex.set(s.name, s);
    }
    const guards = collectGuards(definitions);
    this.machine = setup({ guards: guards as never }).createMachine({
      id: 'node',
      type: 'parallel',
      states: Object.fromEntries(
        definitions.map((d) => [
          d.name,
          {
            initial: d.initial,
            states: Object.fromEntries(d.values.map((v) => [v, d.states[v] ?? {}])),
          },
        ]),
      ),
    } as never) as unknown as AnyStateMachine;
    this.compile();
  }

  step(name: StepName): StepInfo {
    const s = this.stepIndex.get(name);
    if (!s) throw new Error(`unknown step ${name}`);
    return s;
  }

  key(vector: StateVector): string {
    return vector.join('|');
  }

  indexOf(vector: StateVector): number {
    const i = this.index.get(this.key(vector));
    if (i === undefined) throw new Error(`state ${this.describe(vector)} has a value no facet declares`);
    return i;
  }

  describe(vector: StateVector): string {
    return this.facets.map((f, i) => `${f}=${vector[i]}`).join(' ');
  }

  private compile(): void {
    const product = (lists: (readonly FacetValue[])[]): FacetValue[][] =>
      lists.reduce<FacetValue[][]>((acc, values) => acc.flatMap((prefix) => values.map((v) => [...prefix, v])), [[]]);
    for (const vector of product(this.definitions.map((d) => d.values))) {
      this.index.set(this.key(vector), this.states.length);
      this.states.push(vector);
    }
    const snapshots = this.states.map((vector) => this.machine.resolveState({ value: this.toValue(vector) } as Parameters<AnyStateMachine["resolveState"]>[0]));
    for (let i = 0; i < this.states.length; i++) {
      const [after] = transition(this.machine, snapshots[i]!, { type: 'shoal.settle' });
      this.settled.push(this.indexOf(this.fromValue(after.value as Record<string, string>)));
    }
    for (let i = 0; i < this.states.length; i++) {
      const edges: Edge[] = [];
      if (this.settled[i] === i) {
        const snapshot = snapshots[i]!;
        for (const step of this.steps) {
          if (!snapshot.can({ type: step.name })) continue;
          const [next] = transition(this.machine, snapshot, { type: step.name });
          const to = this.indexOf(this.fromValue(next.value as Record<string, string>));
          if (to !== i) edges.push({ step: step.name, to: this.settled[to]! });
        }
      }
      this.edges.push(edges);
    }
  }

  private toValue(vector: StateVector): Record<string, string> {
    return Object.fromEntries(this.facets.map((f, i) => [f, vector[i]!]));
  }

  private fromValue(value: Record<string, string>): StateVector {
    return this.facets.map((f) => value[f]!);
  }

  matches(state: number, target: Target): boolean {
    const vector = this.states[state]!;
    for (let i = 0; i < this.facets.length; i++) {
      const allowed = target[this.facets[i]!];
      if (allowed && !allowed.includes(vector[i]!)) return false;
    }
    return true;
  }
}

/**
 * The guards of every facet by name, refusing a name declared twice and a transition that names a
 * guard no facet declares (xstate would only find out when it first evaluated it).
 */
function collectGuards(definitions: FacetDefinition[]): Record<GuardName, unknown> {
  const guards: Record<GuardName, unknown> = {};
  const declaredBy = new Map<GuardName, string>();
  for (const d of definitions) {
    for (const [name, guard] of Object.entries(d.guards ?? {})) {
      const other = declaredBy.get(name);
      if (other) throw new Error(`guard ${name} is declared by facets ${other} and ${d.name}`);
      declaredBy.set(name, d.name);
      guards[name] = guard;
    }
  }
  for (const d of definitions) {
    for (const [value, state] of Object.entries(d.states)) {
      const transitions = [...Object.values(state?.on ?? {}), ...(state?.always ? [state.always] : [])].flatMap((t) => (Array.isArray(t) ? t : [t]));
      for (const t of transitions) {
        const guard = typeof t === 'object' && t !== null ? (t as { guard?: unknown }).guard : undefined;
        if (typeof guard === 'string' && !declaredBy.has(guard)) throw new Error(`facet ${d.name}: ${value} names guard ${guard}, which no facet declares`);
      }
    }
  }
  return guards;
}
