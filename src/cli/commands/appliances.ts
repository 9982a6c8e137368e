// `shoal appliances`: the appliances sharing the cluster, each with its networks, the lease on its
// nodes (who holds it, at which epoch, how long until it expires unrenewed) and its node count.
import type { ApplianceList } from '../../api/views.js';
import type { ApiClient } from '../client.js';
import { formatColumns } from '../table.js';

export async function appliancesCommand(client: ApiClient, json: boolean | undefined): Promise<number> {
  const list = await client.request<ApplianceList>('GET', '/appliances');
  if (json) {
    console.log(JSON.stringify(list, null, 2));
    return 0;
  }
  const expires = (ms: number) => (ms >= 0 ? `${(ms / 1000).toFixed(1)} s` : `expired ${(-ms / 1000).toFixed(1)} s ago`);
  console.log(
    formatColumns(
      ['APPLIANCE', 'NETWORKS', 'STANDBY FOR', 'LEASE HOLDER', 'EPOCH', 'EXPIRES IN', 'NODES'],
      list.appliances.map((a) => [
        a.name === list.self ? `${a.name} *` : a.name,
        a.networks.join(','),
        a.standbyFor ?? '-',
        a.lease?.holder ?? '-',
        a.lease ? String(a.lease.epoch) : '-',
        a.lease ? expires(a.lease.expiresInMs) : '-',
        String(a.nodes),
      ]),
    ),
  );
  return 0;
}
