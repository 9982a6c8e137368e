// Nodes and their two sources of truth: enroll, list (by selector and phase), change and remove
// nodes; read desired and observed state, and patch desired state.
import type express from 'express';
import { z } from 'zod';
import { HARDWARE_FACET, parseHardware } from '../../contracts/hardware.js';
import { nodeSpecFromInput } from '../../domain/node.js';
import { parseSelector } from '../../domain/selector.js';
import { HttpProblem } from '../problem.js';
import type { DesiredView, HardwareView, NodeList, ObservedView } from '../views.js';
import { nodeViewOf, queryOf, writerOf, type RouteContext } from './context.js';

const ListQuerySchema = z
  .object({
    selector: z.string().optional(),
    phase: z.enum(['converged', 'converging', 'failed', 'frozen', 'blocked']).optional(),
  })
  .strict();

/** The id a node about to be enrolled renders its templates with: its own is minted when it is added. */
export const NEW_NODE_ID = '00000000-0000-0000-0000-000000000000';

export function registerNodeRoutes(api: express.Router, ctx: RouteContext): void {
  const { state, engine, profiles } = ctx;

  api.get('/nodes', (req, res) => {
    const query = ListQuerySchema.parse(queryOf(req));
    const selects = query.selector ? parseSelector(query.selector) : undefined;
    const nodes = (selects ? state.selectNodes(selects) : state.list())
      .map((n) => nodeViewOf(ctx, n))
      .filter((v) => !query.phase || v.phase === query.phase);
    const list: NodeList = { nodes, counts: engine.executor.phaseCounts(), revision: state.revision };
    res.json(list);
  });

  api.post('/nodes', async (req, res) => {
    const { spec, bmcPassword } = nodeSpecFromInput(req.body);
    // Its configuration must render before it is enrolled (the profiles its labels select).
    profiles.checkNode({ id: NEW_NODE_ID, ...spec });
    const [node] = await state.addNodes([{ spec, ...(bmcPassword !== undefined ? { bmcPassword } : {}) }], writerOf(req));
    res.status(201).location(`/api/v1/nodes/${node!.id}`).json(nodeViewOf(ctx, node!));
  });

  api.get('/nodes/:ref', (req, res) => {
    res.json(nodeViewOf(ctx, state.resolve(req.params.ref)));
  });

  api.put('/nodes/:ref', async (req, res) => {
    const current = state.resolve(req.params.ref);
    const { spec, bmcPassword } = nodeSpecFromInput(req.body);
    profiles.checkNode({ id: current.id, ...spec });
    res.json(nodeViewOf(ctx, await state.updateNode(current.id, spec, bmcPassword, writerOf(req))));
  });

  api.delete('/nodes/:ref', async (req, res) => {
    await state.removeNode(state.resolve(req.params.ref).id, writerOf(req));
    res.status(204).end();
  });

  api.get('/nodes/:ref/desired', (req, res) => {
    const desired: DesiredView = state.desired(state.resolve(req.params.ref).id);
    res.json(desired);
  });

  api.patch('/nodes/:ref/desired', async (req, res) => {
    const node = state.resolve(req.params.ref);
    const patch = engine.desired.parsePatch(req.body);
    await state.setDesired(node.id, patch, writerOf(req));
    res.json(nodeViewOf(ctx, node));
  });

  api.get('/nodes/:ref/observed', (req, res) => {
    const observed: ObservedView = state.observed(state.resolve(req.params.ref).id);
    res.json(observed);
  });

  api.get('/nodes/:ref/hardware', (req, res) => {
    const node = state.resolve(req.params.ref);
    const observation = state.observed(node.id)[HARDWARE_FACET];
    const hardware = parseHardware(observation?.detail);
    if (!hardware) throw new HttpProblem(404, 'No hardware report', `node ${node.name}'s agent has not reported its hardware: it reports at every hello, from images built with this appliance's agent`);
    const view: HardwareView = { node: node.name, at: observation!.at, digest: observation!.value, hardware };
    res.json(view);
  });
}
