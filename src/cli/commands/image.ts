// `shoal image …`: import an image directory on the appliance host, list and remove stored images.
import { resolve } from 'node:path';
import type { ImageList, ImageView } from '../../api/views.js';
import { need, enc, UsageError } from '../args.js';
import type { ApiClient } from '../client.js';
import { formatColumns } from '../table.js';

export async function imageCommand(client: ApiClient, sub: string | undefined, args: string[]): Promise<number> {
  switch (sub) {
    case 'add': {
      // The appliance reads the directory itself: absolute, as the CLI sees it on the same host.
      const image = await client.request<ImageView>('POST', '/images', { path: resolve(need(args[0], 'image add needs a directory')) });
      console.log(`${image.ref} ${image.digest} (${formatBytes(image.size)})`);
      return 0;
    }
    case 'list': {
      const { images } = await client.request<ImageList>('GET', '/images');
      const rows = images.map((i) => [i.ref, i.digest.slice(0, 19), formatBytes(i.size), i.importedAt.slice(0, 19).replace('T', ' '), i.nodes.length ? `${i.nodes.length} (${i.nodes.slice(0, 3).join(', ')}${i.nodes.length > 3 ? ', …' : ''})` : '-']);
      console.log(formatColumns(['IMAGE', 'DIGEST', 'SIZE', 'IMPORTED (UTC)', 'WANTED BY'], rows));
      return 0;
    }
    case 'rm':
      await client.request('DELETE', `/images/${enc(need(args[0], 'image rm needs NAME@VERSION'))}`);
      console.log(`removed ${args[0]}`);
      return 0;
    default:
      throw new UsageError(`unknown image command "${sub ?? ''}"`);
  }
}

function formatBytes(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}
