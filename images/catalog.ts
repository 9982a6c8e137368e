// How other code (the vm-test harness, the image store's tests) gets built node images:
// `ensureImages(['compute@1', 'debian@12'], cacheDir)` builds what is missing or stale and returns
// where each image's files are, with its validated manifest. A name is either a busybox image
// (recipes.ts) or a real OS built from a shipped recipe (images/recipes/*.yaml, os-recipe.ts).
import { homedir } from 'node:os';
import { join } from 'node:path';
import { buildImages, type BuildOptions, type BuiltImage } from './builder.js';
import { buildOsImage } from './os-builder.js';
import { shippedOsRecipes } from './os-recipe.js';
import { imageRef, RECIPES } from './recipes.js';

export type { BuiltImage } from './builder.js';
export type { ImageManifest } from './manifest.js';

/** Where `images/build.ts` keeps downloaded Debian packages and built root trees unless told otherwise. */
export const DEFAULT_CACHE_DIR = join(homedir(), '.cache', 'shoal', 'images');

/** Every image name Shoal can build: the busybox ones, then the shipped OS recipes. */
export function knownImages(): string[] {
  return [...RECIPES.map(imageRef), ...shippedOsRecipes().map(imageRef)];
}

/** Builds the named images, in the order given; an unknown name fails before anything is built. */
export async function buildAnyImages(refs: readonly string[], options: BuildOptions): Promise<BuiltImage[]> {
  const busybox = new Set(RECIPES.map(imageRef));
  const osRecipes = new Map(shippedOsRecipes().map((r) => [imageRef(r), r]));
  const unknown = refs.filter((ref) => !busybox.has(ref) && !osRecipes.has(ref));
  if (unknown.length > 0) throw new Error(`no recipe for image ${unknown.join(', ')}; known: ${[...busybox, ...osRecipes.keys()].join(', ')}`);
  const busyboxBuilt = await buildImages(refs.filter((ref) => busybox.has(ref)), options);
  const built: BuiltImage[] = [];
  for (const ref of refs) {
    const recipe = osRecipes.get(ref);
    built.push(recipe ? await buildOsImage(recipe, options) : busyboxBuilt.find((i) => i.ref === ref)!);
  }
  return built;
}

/**
 * Images are built into `<cacheDir>/built/<name>@<version>/` next to the cached Debian
 * packages and root trees. Every call runs the build, which with warm caches takes about a second
 * per busybox image (and a few for an OS image: hashing its squashfs) and leaves an identical
 * image untouched; that is how a changed recipe, agent or kernel package is never served stale.
 */
export function ensureImages(names: readonly string[], cacheDir: string): Promise<BuiltImage[]> {
  return buildAnyImages(names, { outDir: join(cacheDir, 'built'), cacheDir });
}
