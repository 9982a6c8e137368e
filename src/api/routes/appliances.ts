// The appliances of the cluster and the leases on their nodes (a read: viewers may, by roles.ts).
import type express from 'express';
import type { Ownership } from '../../state/ownership.js';
import type { ApplianceList } from '../views.js';

export function registerApplianceRoutes(api: express.Router, ownership: Ownership): void {
  api.get('/appliances', async (_req, res) => {
    const list: ApplianceList = { self: ownership.appliance, appliances: await ownership.appliances() };
    res.json(list);
  });
}
