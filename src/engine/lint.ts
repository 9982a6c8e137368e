// Checks the composed facet graph at start-up, before any node is planned with it: a facet value
// nothing can reach, a state with no way out, or a failure with no way back is a bug in a module's
// machine, and the appliance refuses to start with it.
import type { FacetGraph } from './graph.js';
import type { FacetDefinition } from './facet.js';
import type { FacetDriver } from './module.js';

export interface LintReport {
  problems: string[];
  states: number;
  edges: number;
}

export function lintGraph(graph: FacetGraph, definitions: FacetDefinition[]): LintReport {
  const problems: string[] = [];
  const settledStates = graph.states.map((_, i) => i).filter((i) => graph.settled[i] === i);

  // 1. Reachability from the initial state through steps, step failures and observation-only values.
  const initial = graph.settled[graph.indexOf(definitions.map((d) => d.initial))]!;
  const reached = new Set([initial]);
  const queue = [initial];
  const successors = (i: number): number[] => {
    const vector = graph.states[i]!;
    const next = graph.edges[i]!.map((e) => e.to);
    definitions.forEach((d, f) => {
      const failures = Object.values(d.steps).map((s) => s.failsTo);
      for (const value of [...failures, ...d.observedOnly]) {
        const changed = [...vector];
        changed[f] = value;
        next.push(graph.settled[graph.indexOf(changed)]!);
      }
    });
    return next;
  };
  for (let head = 0; head < queue.length; head++) {
    for (const n of successors(queue[head]!)) {
      if (!reached.has(n)) {
        reached.add(n);
        queue.push(n);
      }
    }
  }
  definitions.forEach((d, f) => {
    for (const value of d.values) {
      if (![...reached].some((i) => graph.states[i]![f] === value)) problems.push(`${d.name}=${value} is never reached`);
    }
  });

  // 2. No dead end: every reachable settled state has a step out of it.
  for (const i of reached) {
    if (graph.edges[i]!.length === 0) problems.push(`state ${graph.describe(graph.states[i]!)} has no way out`);
  }

  // 3. Every failure value has a way back: from each reachable state holding it, some path leaves it.
  definitions.forEach((d, f) => {
    for (const failure of d.failureValues) {
      for (const i of reached) {
        if (graph.states[i]![f] !== failure) continue;
        if (!leadsTo(graph, i, (j) => !d.failureValues.includes(graph.states[j]![f]!))) {
          problems.push(`${d.name}=${failure} has no recovery from ${graph.describe(graph.states[i]!)}`);
        }
      }
    }
  });

  return { problems, states: settledStates.length, edges: settledStates.reduce((n, i) => n + graph.edges[i]!.length, 0) };
}

function leadsTo(graph: FacetGraph, start: number, accept: (state: number) => boolean): boolean {
  const seen = new Set([start]);
  const queue = [start];
  for (let head = 0; head < queue.length; head++) {
    for (const { to } of graph.edges[queue[head]!]!) {
      if (accept(to)) return true;
      if (!seen.has(to)) {
        seen.add(to);
        queue.push(to);
      }
    }
  }
  return false;
}

/**
 * Checks each module's drivers against the composed graph: a driver for a facet no one declares, a
 * missing handler for an action step of its facet, or a handler for a step its facet does not own
 * (or that is an await step, which nothing fires) is a bug in that module.
 */
export function lintDrivers(graph: FacetGraph, modules: readonly { name: string; drivers?: readonly FacetDriver[] }[]): string[] {
  const problems: string[] = [];
  for (const module of modules) {
    for (const driver of module.drivers ?? []) {
      if (!graph.facets.includes(driver.facet)) {
        problems.push(`module ${module.name}: a driver for facet ${driver.facet}, which no facet declares`);
        continue;
      }
      const actions = graph.steps.filter((s) => s.facet === driver.facet && s.kind === 'action').map((s) => s.name);
      for (const step of actions) {
        if (!driver.steps[step]) problems.push(`module ${module.name}: its ${driver.facet} driver has no handler for step ${step}`);
      }
      for (const step of Object.keys(driver.steps)) {
        if (!actions.includes(step)) problems.push(`module ${module.name}: its ${driver.facet} driver has a handler for ${step}, which is not an action step of ${driver.facet}`);
      }
    }
  }
  return problems;
}
