// How other code (the vm-test harness, the image store's tests) gets built node images:
// `ensureImages(['compute@1'], cacheDir)` builds what is missing or stale and returns where
// each image's files are, with its validated manifest.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { buildImages, type BuiltImage } from './builder.js';

export type { BuiltImage } from './builder.js';
export type { ImageManifest } from './manifest.js';

/** Where `images/build.ts` keeps downloaded Debian packages unless told otherwise. */
export const DEFAULT_CACHE_DIR = join(homedir(), '.cache', 'shoal', 'images');

/**
 * Images are built into `<cacheDir>/built/<name>@<version>/` next to the cached Debian
 * packages. Every call runs the build, which with warm caches takes about a second per image
 * and leaves an identical image untouched; that is how a changed recipe, agent or kernel
 * package is never served stale.
 */
export function ensureImages(names: readonly string[], cacheDir: string): Promise<BuiltImage[]> {
  return buildImages(names, { outDir: join(cacheDir, 'built'), cacheDir });
}
