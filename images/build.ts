// Builds node images: npx tsx images/build.ts [--out DIR] [--cache DIR] [NAME@VERSION...]
// With no names, builds every recipe. Output: DIR/<name>@<version>/{vmlinuz,initrd.img,image.json}.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { buildImages } from './builder.js';
import { DEFAULT_CACHE_DIR } from './catalog.js';
import { imageRef, RECIPES } from './recipes.js';

const DEFAULT_OUT_DIR = resolve(import.meta.dirname, '..', 'data', 'images');

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: { out: { type: 'string' }, cache: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
  });
  if (values.help) {
    console.log(`usage: npx tsx images/build.ts [--out DIR] [--cache DIR] [NAME@VERSION...]
  --out DIR    where images go (default ${DEFAULT_OUT_DIR})
  --cache DIR  downloaded and unpacked Debian packages (default ${DEFAULT_CACHE_DIR})
  images: ${RECIPES.map(imageRef).join(' ')} (default: all)`);
    return;
  }
  const refs = positionals.length > 0 ? positionals : RECIPES.map(imageRef);
  const started = performance.now();
  const built = await buildImages(refs, {
    outDir: resolve(values.out ?? DEFAULT_OUT_DIR),
    cacheDir: resolve(values.cache ?? DEFAULT_CACHE_DIR),
    progress: (line) => console.log(`[${((performance.now() - started) / 1000).toFixed(1)}s] ${line}`),
  });
  for (const image of built) console.log(`${image.ref}\t${image.manifest.digest}\t${image.dir}`);
  console.log(`built ${built.length} image(s) in ${((performance.now() - started) / 1000).toFixed(1)}s`);
}

main().catch((error: unknown) => {
  console.error(`images/build: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
