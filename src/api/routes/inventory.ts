// Inventory files over the API: import a rack from YAML, all rows or none, and export it back.
import type express from 'express';
import { exportInventory, parseInventory } from '../../state/inventory.js';
import { HttpProblem } from '../problem.js';
import type { InventoryImported } from '../views.js';
import { writerOf, type RouteContext } from './context.js';

export function registerInventoryRoutes(api: express.Router, { state, engine }: RouteContext): void {
  api.post('/inventory', async (req, res) => {
    if (typeof req.body !== 'string') throw new HttpProblem(415, 'Unsupported body', 'send the inventory as YAML (content-type application/yaml)');
    const rows = parseInventory(req.body, (raw) => engine.desired.parsePatch(raw));
    const writer = writerOf(req);
    const nodes = await state.addNodes(
      rows.map((r) => ({ spec: r.spec, ...(r.bmcPassword !== undefined ? { bmcPassword: r.bmcPassword } : {}) })),
      writer,
    );
    for (const [i, row] of rows.entries()) if (row.desired) await state.setDesired(nodes[i]!.id, row.desired, writer);
    const imported: InventoryImported = { imported: nodes.length, nodes: nodes.map((n) => ({ id: n.id, name: n.name })) };
    res.status(201).json(imported);
  });

  api.get('/inventory', (_req, res) => {
    res.type('application/yaml').send(exportInventory(state.list().map((node) => ({ node, desired: state.desired(node.id) }))));
  });
}
