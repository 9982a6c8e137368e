// Finds, per node, the shortest sequence of steps from its observed state to any state that matches
// its desired state. Breadth-first over the compiled table with steps tried in declaration order,
// so the same inputs always give the same plan. Plans are cached per (state, target): a rack of
// 10,000 nodes has only a handful of distinct pairs.
import type { FacetName, FacetValue } from '../domain/node.js';
import type { StepName, Target } from './facet.js';
import type { FacetGraph, StateVector } from './graph.js';

export interface PlanStep {
  step: StepName;
  facet: FacetName;
  kind: 'action' | 'await';
  /** The composed state this step is expected to lead to. */
  expect: Record<FacetName, FacetValue>;
  explain: string;
}

export interface Plan {
  /** The observed state after the machines' own reactions (e.g. power off ⇒ run off). */
  from: Record<FacetName, FacetValue>;
  target: Target;
  /** False when no sequence of steps reaches the target from here. */
  reachable: boolean;
  steps: PlanStep[];
}

export class Planner {
  private readonly cache = new Map<string, Plan>();

  constructor(readonly graph: FacetGraph) {}

  plan(observed: StateVector, target: Target): Plan {
    const start = this.graph.settled[this.graph.indexOf(observed)]!;
    const key = `${start}>${targetKey(target)}`;
    let plan = this.cache.get(key);
    if (!plan) {
      plan = this.search(start, target);
      this.cache.set(key, plan);
    }
    return plan;
  }

  /** The observed state as the machines settle it: what the executor should record as implied. */
  settle(observed: StateVector): StateVector {
    return this.graph.states[this.graph.settled[this.graph.indexOf(observed)]!]!;
  }

  private search(start: number, target: Target): Plan {
    const graph = this.graph;
    const named = (i: number) => Object.fromEntries(graph.facets.map((f, j) => [f, graph.states[i]![j]!]));
    const parent = new Map<number, { from: number; step: StepName }>();
    const seen = new Set([start]);
    const queue = [start];
    let found = graph.matches(start, target) ? start : -1;
    for (let head = 0; found < 0 && head < queue.length; head++) {
      const state = queue[head]!;
      for (const edge of graph.edges[state]!) {
        if (seen.has(edge.to)) continue;
        seen.add(edge.to);
        parent.set(edge.to, { from: state, step: edge.step });
        if (graph.matches(edge.to, target)) {
          found = edge.to;
          break;
        }
        queue.push(edge.to);
      }
    }
    const steps: PlanStep[] = [];
    for (let at = found; at >= 0 && at !== start; ) {
      const link = parent.get(at)!;
      const info = graph.step(link.step);
      steps.unshift({ step: info.name, facet: info.facet, kind: info.kind, expect: named(at), explain: info.explain });
      at = link.from;
    }
    return { from: named(start), target, reachable: found >= 0, steps };
  }
}

export function targetKey(target: Target): string {
  return Object.keys(target)
    .sort()
    .map((f) => `${f}=${[...target[f]!].sort().join(',')}`)
    .join(';');
}
