// Builds a raw GPT disk image (BIOS and UEFI, images/disk-image.ts) from a shipped recipe's root tree:
//   npx tsx images/build-disk.ts [--out DIR] [--cache DIR] [--slack MIB] [--image DIR [--raw]] NAME@VERSION
// Output: DIR/<name>@<version>/disk.raw and disk.raw.zst (default DIR: data/disks/, gitignored).
// With --image, the disk (.zst, or the raw one with --raw) is also added to the image directory
// build.ts made from the same recipe (image-disk.ts), so that the image store imports it with the image.
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_CACHE_DIR } from './catalog.js';
import { buildRecipeDisk } from './disk-recipe.js';
import { addDiskToImageDir, imageManifestIn } from './image-disk.js';

const DEFAULT_OUT_DIR = resolve(import.meta.dirname, '..', 'data', 'disks');

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: {
      out: { type: 'string' },
      cache: { type: 'string' },
      slack: { type: 'string' },
      image: { type: 'string' },
      raw: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
  });
  if (values.help || positionals.length !== 1 || (values.raw && !values.image)) {
    console.log(`usage: npx tsx images/build-disk.ts [--out DIR] [--cache DIR] [--slack MIB] [--image DIR [--raw]] NAME@VERSION
  --out DIR    where disk images go (default ${DEFAULT_OUT_DIR}/<name>@<version>/)
  --cache DIR  root trees and their initrds (default ${DEFAULT_CACHE_DIR})
  --slack MIB  free space in the root filesystem beyond the tree (default 256); it grows on first boot
  --image DIR  also add the disk to the image directory build.ts made from the same recipe (its image.json
               and digest change); then \`shoal image add DIR\` stores the disk with the image
  --raw        with --image: add disk.raw, uncompressed, instead of disk.raw.zst`);
    if (!values.help) process.exit(2);
    return;
  }
  const ref = positionals[0]!;
  const imageDir = values.image === undefined ? undefined : resolve(values.image);
  if (imageDir) await imageManifestIn(imageDir);
  const started = performance.now();
  const slack = values.slack === undefined ? undefined : Number(values.slack);
  if (slack !== undefined && !(Number.isInteger(slack) && slack >= 0)) throw new Error(`--slack must be a whole number of MiB, not ${values.slack}`);
  const result = await buildRecipeDisk(ref, {
    cacheDir: resolve(values.cache ?? DEFAULT_CACHE_DIR),
    outDir: join(resolve(values.out ?? DEFAULT_OUT_DIR), ref),
    ...(slack !== undefined ? { slackBytes: slack * 1024 * 1024 } : {}),
    progress: (line: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(1)}s] ${ref}: ${line}`),
  });
  console.log(`${result.raw.path}\t${result.raw.size}\tsha256:${result.raw.sha256}`);
  console.log(`${result.zst.path}\t${result.zst.size}\tsha256:${result.zst.sha256}`);
  console.log(`boot environment block (shoal_args): ${result.raw.path} bytes ${result.bootEnv.offset}+${result.bootEnv.size}`);
  if (imageDir) {
    const stored = values.raw ? result.raw : result.zst;
    const manifest = await addDiskToImageDir(imageDir, { raw: result.raw, stored, format: values.raw ? 'raw' : 'zstd', treeKey: result.treeKey, bootEnv: result.bootEnv });
    console.log(`${imageDir}: disk ${manifest.disk!.file}, digest ${manifest.digest} (a store holding ${manifest.name}@${manifest.version} with the old digest refuses it: remove it first, or build another version)`);
  }
  console.log(`built in ${((performance.now() - started) / 1000).toFixed(1)}s`);
}

main().catch((error: unknown) => {
  console.error(`images/build-disk: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
