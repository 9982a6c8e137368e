// Builds node images: npx tsx images/build.ts [--out DIR] [--cache DIR] [--recipe FILE]... [NAME@VERSION...]
// With no names, builds every busybox image; a real OS (debian@12) is built when named, or from
// any recipe file with --recipe. Output: DIR/<name>@<version>/{vmlinuz,initrd.img,image.json[,root.squashfs]}.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { BuiltImage } from './builder.js';
import { buildAnyImages, DEFAULT_CACHE_DIR, knownImages } from './catalog.js';
import { buildOsImage } from './os-builder.js';
import { loadOsRecipe } from './os-recipe.js';
import { imageRef, RECIPES } from './recipes.js';

const DEFAULT_OUT_DIR = resolve(import.meta.dirname, '..', 'data', 'images');

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: { out: { type: 'string' }, cache: { type: 'string' }, recipe: { type: 'string', multiple: true }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
  });
  if (values.help) {
    console.log(`usage: npx tsx images/build.ts [--out DIR] [--cache DIR] [--recipe FILE]... [NAME@VERSION...]
  --out DIR      where images go (default ${DEFAULT_OUT_DIR})
  --cache DIR    downloaded Debian packages and built root trees (default ${DEFAULT_CACHE_DIR})
  --recipe FILE  also build the OS image a recipe file describes (images/README.md)
  images: ${knownImages().join(' ')} (default: ${RECIPES.map(imageRef).join(' ')})`);
    return;
  }
  // Every recipe file is read and validated before anything is built.
  const recipeFiles = (values.recipe ?? []).map((file) => loadOsRecipe(resolve(file)));
  const refs = positionals.length > 0 || recipeFiles.length > 0 ? positionals : RECIPES.map(imageRef);
  const started = performance.now();
  const options = {
    outDir: resolve(values.out ?? DEFAULT_OUT_DIR),
    cacheDir: resolve(values.cache ?? DEFAULT_CACHE_DIR),
    progress: (line: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(1)}s] ${line}`),
  };
  const built: BuiltImage[] = await buildAnyImages(refs, options);
  for (const recipe of recipeFiles) built.push(await buildOsImage(recipe, options));
  for (const image of built) console.log(`${image.ref}\t${image.manifest.digest}\t${image.dir}`);
  console.log(`built ${built.length} image(s) in ${((performance.now() - started) / 1000).toFixed(1)}s`);
}

main().catch((error: unknown) => {
  console.error(`images/build: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
