// The engine's side of a node and of the appliance: the plan and why, releasing a failed node,
// freezing and thawing, and the compiled facet graph.
import type express from 'express';
import type { DesirableFacetList, FrozenView, PlanView } from '../views.js';
import { nodeViewOf, writerOf, type RouteContext } from './context.js';

export function registerControlRoutes(api: express.Router, ctx: RouteContext): void {
  const { state, engine } = ctx;
  const executor = engine.executor;

  api.get('/nodes/:ref/plan', (req, res) => {
    const node = state.resolve(req.params.ref);
    const status = executor.status(node.id);
    const plan: PlanView = {
      node: node.name,
      phase: status.phase,
      ...(status.reason ? { reason: status.reason } : {}),
      ...(status.step ? { current: status.step } : {}),
      failures: status.failures,
      ...(status.lastError ? { lastError: status.lastError } : {}),
      from: status.plan.from,
      target: status.plan.target,
      reachable: status.plan.reachable,
      steps: status.plan.steps,
    };
    res.json(plan);
  });

  api.post('/nodes/:ref/retry', (req, res) => {
    const node = state.resolve(req.params.ref);
    executor.retry(node.id);
    res.json(nodeViewOf(ctx, node));
  });

  for (const [path, frozen] of [['freeze', true], ['thaw', false]] as const) {
    api.post(`/nodes/:ref/${path}`, async (req, res) => {
      const node = state.resolve(req.params.ref);
      await state.setFrozen(node.id, frozen, writerOf(req));
      res.json(nodeViewOf(ctx, node));
    });
    api.post(`/${path}`, async (req, res) => {
      await state.setFrozen(null, frozen, writerOf(req));
      const view: FrozenView = { frozen: state.isFrozen() };
      res.json(view);
    });
  }

  api.get('/desired-facets', (_req, res) => {
    const list: DesirableFacetList = { facets: engine.desired.describe() };
    res.json(list);
  });

  api.get('/graph', (_req, res) => {
    const g = engine.graph;
    res.json({
      facets: engine.definitions.map((d) => ({ name: d.name, values: d.values, failureValues: d.failureValues, steps: Object.keys(d.steps) })),
      steps: g.steps.map((s) => ({ name: s.name, facet: s.facet, kind: s.kind, confirms: s.confirms, timeoutMs: s.timeoutMs, failsTo: s.failsTo, explain: s.explain })),
      states: engine.lint.states,
      edges: g.states.flatMap((vector, i) => (g.settled[i] === i ? g.edges[i]!.map((e) => ({ from: g.describe(vector), step: e.step, to: g.describe(g.states[e.to]!) })) : [])),
      lint: engine.lint.problems,
    });
  });
}
