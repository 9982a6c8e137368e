// Puts a built disk image (disk-image.ts) into an image directory built before from the same
// recipe (build.ts): the disk file is copied next to image.json, and image.json gains its `disk`
// and the digest that covers it, so `shoal image add DIR` stores the disk with the image. The
// disk and the image must come from one root tree, or a node would boot one system over the
// network and write another to its disk under one digest.
import { copyFile, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { DiskFileInfo } from './disk-image.js';
import { parseManifest, withDisk, type DiskArtifact, type ImageManifest } from './manifest.js';

const MANIFEST_FILE = 'image.json';

export interface BuiltDisk {
  /** The uncompressed disk: its size and sha256 are the disk's raw ones. */
  raw: DiskFileInfo;
  /** The file the image carries: `raw` itself, or its compressed copy. */
  stored: DiskFileInfo;
  format: DiskArtifact['format'];
  /** The root tree the disk was made from (mmdebstrap.ts). */
  treeKey: string;
  /** As the disk builder reports it; image.json's schema checks it (withDisk). */
  bootEnv?: { offset: number; size: number };
}

/** The image.json in `dir`, validated: read before a disk is built for it, so a wrong directory fails at once. */
export async function imageManifestIn(dir: string): Promise<ImageManifest> {
  const manifestPath = join(dir, MANIFEST_FILE);
  const text = await readFile(manifestPath, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new Error(`${dir} is not a built image: cannot read its ${MANIFEST_FILE} (${err.code ?? err.message})`);
  });
  return parseManifest(text, manifestPath);
}

/** Adds `disk` to the image in `dir` (replacing a disk it had); returns the new manifest. */
export async function addDiskToImageDir(dir: string, disk: BuiltDisk): Promise<ImageManifest> {
  const manifestPath = join(dir, MANIFEST_FILE);
  const before = await imageManifestIn(dir);
  const imageTree = before.builtFrom.recipe?.treeKey;
  if (imageTree === undefined) throw new Error(`${dir} was not built from an OS recipe, so its root tree is not known to be the disk's`);
  if (imageTree !== disk.treeKey) throw new Error(`${dir} was built from root tree ${imageTree}, the disk from ${disk.treeKey}: build both from the same tree`);
  const file = basename(disk.stored.path);
  const artifact: DiskArtifact = {
    file,
    sha256: disk.stored.sha256,
    size: disk.stored.size,
    format: disk.format,
    rawSize: disk.raw.size,
    rawSha256: disk.raw.sha256,
    ...(disk.bootEnv ? { bootEnv: disk.bootEnv as NonNullable<DiskArtifact['bootEnv']> } : {}),
  };
  const after = withDisk(before, artifact);
  // The file first, then the manifest naming it, each renamed into place whole.
  await copyFile(disk.stored.path, join(dir, `${file}.partial`));
  await rename(join(dir, `${file}.partial`), join(dir, file));
  await writeFile(join(dir, `${MANIFEST_FILE}.partial`), `${JSON.stringify(after, null, 2)}\n`);
  await rename(join(dir, `${MANIFEST_FILE}.partial`), manifestPath);
  if (before.disk && before.disk.file !== file) await rm(join(dir, before.disk.file), { force: true });
  return after;
}
