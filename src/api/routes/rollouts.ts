// Rolling changes over a label selector, at most maxUnavailable nodes at a time
// (src/engine/rollout.ts): start, list, show, pause, resume, cancel.
import type express from 'express';
import { rolloutInputSchema, RolloutRejected } from '../../engine/rollout.js';
import { HttpProblem } from '../problem.js';
import type { RolloutList, RolloutView } from '../views.js';
import { writerOf, type RouteContext } from './context.js';

export function registerRolloutRoutes(api: express.Router, { state, engine }: RouteContext): void {
  // Built once: the facets that can be desired are fixed when the engine is.
  const inputSchema = rolloutInputSchema(engine.desired);
  api.post('/rollouts', async (req, res) => {
    const input = inputSchema.parse(req.body);
    try {
      const rollout: RolloutView = { ...(await engine.rollouts.create(input, writerOf(req))), revision: state.revision };
      res.status(201).location(`/api/v1/rollouts/${rollout.id}`).json(rollout);
    } catch (err) {
      if (err instanceof RolloutRejected) throw new HttpProblem(422, 'Nothing to roll out', err.message);
      throw err;
    }
  });

  api.get('/rollouts', (_req, res) => {
    const list: RolloutList = { rollouts: engine.rollouts.list(), revision: state.revision };
    res.json(list);
  });

  api.get('/rollouts/:id', (req, res) => {
    const rollout: RolloutView = { ...engine.rollouts.get(req.params.id), revision: state.revision };
    res.json(rollout);
  });

  for (const action of ['pause', 'resume', 'cancel'] as const) {
    api.post(`/rollouts/:id/${action}`, async (req, res) => {
      const rollout: RolloutView = await engine.rollouts[action](req.params.id, writerOf(req));
      res.json(rollout);
    });
  }
}
