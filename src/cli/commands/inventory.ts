// `shoal import FILE` and `shoal export`: a rack's inventory as YAML, enrolled all or none.
import { readFileSync } from 'node:fs';
import type { InventoryImported } from '../../api/views.js';
import { need } from '../args.js';
import type { ApiClient } from '../client.js';

export async function importCommand(client: ApiClient, file: string | undefined): Promise<number> {
  const text = readFileSync(need(file, 'import needs an inventory file'), 'utf8');
  const result = await client.request<InventoryImported>('POST', '/inventory', text, 'application/yaml');
  console.log(`imported ${result.imported} nodes`);
  return 0;
}

export async function exportCommand(client: ApiClient): Promise<number> {
  process.stdout.write(await client.request<string>('GET', '/inventory'));
  return 0;
}
