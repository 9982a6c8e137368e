// Inventory files over the API: import a rack from YAML with its profiles, all rows or none, and
// export it back.
import type express from 'express';
import { exportInventory, parseInventory } from '../../state/inventory.js';
import { roleAllows } from '../../state/users.js';
import { userOf } from '../auth.js';
import { HttpProblem } from '../problem.js';
import type { InventoryImported } from '../views.js';
import { NEW_NODE_ID } from './nodes.js';
import { writerOf, type RouteContext } from './context.js';

export function registerInventoryRoutes(api: express.Router, { state, engine, profiles }: RouteContext): void {
  api.post('/inventory', async (req, res) => {
    if (typeof req.body !== 'string') throw new HttpProblem(415, 'Unsupported body', 'send the inventory as YAML (content-type application/yaml)');
    const { rows, profiles: imported } = parseInventory(req.body, (raw) => engine.desired.parsePatch(raw));
    // Every template renders for every node it will reach before a node or a profile is written.
    profiles.checkImport(
      rows.map((r) => ({ node: { id: NEW_NODE_ID, ...r.spec }, line: r.line, ...(r.config ? { config: r.config } : {}) })),
      imported,
    );
    const writer = writerOf(req);
    const nodes = await state.addNodes(
      rows.map((r) => ({ spec: r.spec, ...(r.bmcPassword !== undefined ? { bmcPassword: r.bmcPassword } : {}) })),
      writer,
    );
    await profiles.addImported(
      imported.map((i) => i.profile),
      rows.flatMap((r, i) => (r.config ? [{ node: nodes[i]!, config: r.config }] : [])),
      writer,
    );
    for (const [i, row] of rows.entries()) if (row.desired) await state.setDesired(nodes[i]!.id, row.desired, writer);
    const result: InventoryImported = { imported: nodes.length, nodes: nodes.map((n) => ({ id: n.id, name: n.name })) };
    res.status(201).json(result);
  });

  api.get('/inventory', (req, res) => {
    // Profiles and node overrides may hold secrets in user-data: only those who may read them get them.
    const withConfig = roleAllows(userOf(req).role, 'operator');
    const rows = state.list().map((node) => ({ node, desired: state.desired(node.id), config: withConfig ? profiles.overridesOf(node.id) : {} }));
    res.type('application/yaml').send(exportInventory(rows, withConfig ? profiles.list().map((e) => e.profile) : []));
  });
}
