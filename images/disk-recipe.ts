// A shipped recipe's disk image: its cached root tree (mmdebstrap.ts, built if missing), the tree's
// initramfs-tools initrd for a disk root (cached beside the tree), then buildDiskImage. The disk's
// UUIDs are derived from the tree key, so the same tree gives the same identities.
import { join } from 'node:path';
import { sourceDateEpochFromEnv } from './builder.js';
import { buildDiskImage, DiskImageError, ensureDiskInitrd, type DiskFile, type DiskImageResult } from './disk-image.js';
import { ensureRootTree } from './mmdebstrap.js';
import { treeKernelRelease } from './os-builder.js';
import { shippedOsRecipes } from './os-recipe.js';
import { imageRef } from './recipes.js';

export interface RecipeDiskOptions {
  cacheDir: string;
  outDir: string;
  slackBytes?: number;
  extraFiles?: readonly DiskFile[];
  progress?: (line: string) => void;
}

export async function buildRecipeDisk(ref: string, options: RecipeDiskOptions): Promise<DiskImageResult & { ref: string; treeKey: string; release: string }> {
  const recipe = shippedOsRecipes().find((r) => imageRef(r) === ref);
  if (!recipe) throw new DiskImageError(`no OS recipe for ${ref}; known: ${shippedOsRecipes().map(imageRef).join(', ')}`);
  const progress = options.progress ?? (() => {});
  const tree = await ensureRootTree(recipe, options.cacheDir, sourceDateEpochFromEnv(), progress);
  const release = await treeKernelRelease(join(tree.dir, 'boot'), ref);
  if (release === undefined) throw new DiskImageError(`${ref}: the root tree's /boot has no kernel`);
  const initrdPath = await ensureDiskInitrd(tree.dir, release, progress);
  const result = await buildDiskImage({
    tree: tree.dir,
    release,
    initrdPath,
    outDir: options.outDir,
    cmdline: recipe.cmdline,
    title: ref,
    seed: tree.key,
    ...(options.slackBytes !== undefined ? { slackBytes: options.slackBytes } : {}),
    ...(options.extraFiles ? { extraFiles: options.extraFiles } : {}),
    progress,
  });
  return { ...result, ref, treeKey: tree.key, release };
}
