// `shoal image …`: import an image directory or a container image on the appliance host, list and
// remove stored images.
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ImageList, ImageView, ImportJobList, ImportJobView } from '../../api/views.js';
import { need, enc, UsageError, type CliValues } from '../args.js';
import type { ApiClient } from '../client.js';
import { formatColumns } from '../table.js';

export async function imageCommand(client: ApiClient, sub: string | undefined, args: string[], values: CliValues): Promise<number> {
  switch (sub) {
    case 'import':
      return importContainerImage(client, need(args[0], 'image import needs a path: an OCI layout directory, an OCI archive or a docker save archive'), values);
    case 'add': {
      // The appliance reads the directory itself: absolute, as the CLI sees it on the same host.
      const image = await client.request<ImageView>('POST', '/images', { path: resolve(need(args[0], 'image add needs a directory')) });
      console.log(`${image.ref} ${image.digest} (${formatBytes(image.size)})`);
      return 0;
    }
    case 'imports': {
      const { imports } = await client.request<ImportJobList>('GET', '/images/imports');
      const rows = imports.map((j) => [j.id, j.state, j.request.source, j.image?.ref ?? (j.error ? j.error.slice(0, 60) : '-'), j.queuedAt.slice(0, 19).replace('T', ' ')]);
      console.log(formatColumns(['IMPORT', 'STATE', 'SOURCE', 'IMAGE OR ERROR', 'QUEUED (UTC)'], rows));
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

const POLL_MS = 500;

/** Queues the import, then prints its progress as it comes until it ends: exit 0 stored, 1 failed. */
async function importContainerImage(client: ApiClient, path: string, values: CliValues): Promise<number> {
  // The appliance reads the path itself: absolute, as the CLI sees it on the same host. A skopeo
  // reference (docker://…, oci-archive:…) goes as it is.
  const source = /^[a-z-]+:/.test(path) ? path : resolve(path);
  const body = {
    source,
    ...(typeof values['name'] === 'string' ? { name: values['name'] } : {}),
    ...(typeof values['kernel-from'] === 'string' ? { kernelFrom: values['kernel-from'] } : {}),
    ...(typeof values['init'] === 'string' ? { init: values['init'] } : {}),
  };
  let job = await client.request<ImportJobView>('POST', '/images/import', body);
  console.log(`import ${job.id} queued: ${source} (Ctrl-C stops following it, not the import: shoal image imports)`);
  let printed = 0; // lines printed, counted from the import's first
  for (;;) {
    // The appliance keeps the last few hundred lines; what it dropped unseen is skipped.
    for (const line of job.progress.slice(Math.max(0, printed - job.progressFrom))) console.log(`  ${line}`);
    printed = job.progressFrom + job.progress.length;
    if (job.state === 'succeeded' || job.state === 'failed') break;
    await sleep(POLL_MS);
    job = await client.request<ImportJobView>('GET', `/images/imports/${enc(job.id)}`);
  }
  if (job.state === 'failed') {
    console.error(`shoal: import failed: ${job.error ?? 'no reason given'}`);
    return 1;
  }
  console.log(`${job.image!.ref} ${job.image!.digest}${job.image!.created ? '' : ' (already stored with the same content)'}`);
  return 0;
}

function formatBytes(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}
