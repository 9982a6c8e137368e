// `shoal discovered …`: machines that network-booted but are not in the inventory (the pxe
// module's list): show them, enroll one as a node, or forget one.
import { normalizeMac } from '../../domain/node.js';
import type { DiscoveredList, NodeView } from '../../api/views.js';
import { need, enc, UsageError, type CliValues } from '../args.js';
import type { ApiClient } from '../client.js';
import { formatColumns } from '../table.js';
import { nodeBody } from './node.js';

export async function discoveredCommand(client: ApiClient, sub: string | undefined, args: string[], values: CliValues): Promise<number> {
  const list = async () => (await client.request<DiscoveredList>('GET', '/discovered')).discovered;
  switch (sub) {
    case 'list': {
      const rows = (await list()).map((m) => [m.mac, m.firmware ?? '?', m.ip ?? '-', m.vendorClassId ?? '-', String(m.requests), m.lastSeen.slice(0, 19).replace('T', ' ')]);
      console.log(formatColumns(['MAC', 'FIRMWARE', 'ADDRESS', 'VENDOR CLASS', 'REQUESTS', 'LAST SEEN (UTC)'], rows));
      if (rows.length === 0) console.log('(none: every machine that network-booted is enrolled)');
      return 0;
    }
    case 'enroll': {
      const mac = normalizeMac(need(args[0], 'discovered enroll needs a MAC'));
      const name = need(args[1], 'discovered enroll needs a node name after the MAC');
      const machine = (await list()).find((m) => m.mac === mac);
      if (!machine) throw new UsageError(`${mac} is not a discovered machine (shoal discovered list)`);
      const node = await client.request<NodeView>('POST', '/nodes', nodeBody(name, [mac], values, 'discovered enroll', { firmware: machine.firmware }));
      console.log(`enrolled ${mac} as ${node.name} (${node.id})`);
      return 0;
    }
    case 'rm':
      await client.request('DELETE', `/discovered/${enc(need(args[0], 'discovered rm needs a MAC'))}`);
      console.log(`forgot ${args[0]}`);
      return 0;
    default:
      throw new UsageError(`unknown discovered command "${sub ?? ''}"`);
  }
}
