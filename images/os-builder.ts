// Builds a real operating-system image from a recipe (os-recipe.ts): the root tree by mmdebstrap
// (cached), its kernel as the image's own /boot/vmlinuz-<release>, the Shoal busybox initramfs
// with the NIC, loop, squashfs and overlay modules taken (with their dependencies) from the
// image's own /lib/modules/<release>, and the tree as root.squashfs, which that initramfs fetches,
// checks and mounts read-only under an overlay on a tmpfs before switching into the image's
// systemd. The output is the same layout as a busybox image: vmlinuz, initrd.img, image.json,
// plus root.squashfs, with its size and sha256 in the manifest and in the image's digest.
// An imported container image (oci-import.ts) is written by the same `writeRootImage`.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, link, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { INITRD_FILE, KERNEL_FILE, MANIFEST_FILE, initramfsEntries, prepareBusybox, writeImageDir, sha256, sourceDateEpochFromEnv, type BuildOptions, type BuiltImage } from './builder.js';
import { sha256File, type DebianPackage } from './debian.js';
import { modulesToLoad } from './kernel-modules.js';
import { imageDigest, kernelSignedOf, parseManifest, type ImageManifest } from './manifest.js';
import { ensureRootTree } from './mmdebstrap.js';
import { writeNewc } from './newc.js';
import type { OsRecipe } from './os-recipe.js';
import { KERNEL_MODULES } from './recipes.js';
import { SQUASHFS_COMPRESSION, writeSquashfs, type SquashfsOptions } from './squashfs.js';

export const ROOTFS_SQUASHFS_FILE = 'root.squashfs';

/** What the initramfs loads before it can mount the root: the NICs and power button, then the root's block device and filesystems. */
export const OS_INITRAMFS_MODULES = [...KERNEL_MODULES, 'loop', 'squashfs', 'overlay'] as const;

const execFileAsync = promisify(execFile);

/** The one kernel in a root tree's /boot (`bootDir`), as its release ("6.1.0-NN-amd64"); undefined when there is none. */
export async function treeKernelRelease(bootDir: string, ref: string): Promise<string | undefined> {
  const kernels = (await readdir(bootDir).catch(() => [])).filter((f) => f.startsWith('vmlinuz-')).sort();
  if (kernels.length > 1) throw new Error(`${ref}: the root tree's /boot has ${kernels.length} kernels (${kernels.join(', ')}); it must hold exactly one`);
  return kernels[0]?.slice('vmlinuz-'.length);
}

/** The installed package owning /boot/vmlinuz-<release>, from the tree's own dpkg database. */
export async function treeKernelPackage(tree: string, release: string): Promise<{ name: string; version: string }> {
  const name = `linux-image-${release}`;
  const { stdout } = await execFileAsync('dpkg-query', [`--admindir=${join(tree, 'var/lib/dpkg')}`, '-W', '-f', '${Version}', name]);
  return { name, version: stdout.trim() };
}

/** Writes `tree` as a squashfs at `out`, saying so and how long it took. */
export async function writeRootSquashfs(tree: string, out: string, sourceDateEpoch: number, ref: string, progress: (line: string) => void, options: SquashfsOptions = {}): Promise<void> {
  progress(`${ref}: writing root.squashfs (mksquashfs, ${SQUASHFS_COMPRESSION})`);
  const started = performance.now();
  await writeSquashfs(tree, out, sourceDateEpoch, options);
  progress(`${ref}: root.squashfs ${(await stat(out)).size} bytes in ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

/** The squashfs of a tree, cached beside it (`<tree>.squashfs`): the same tree always gives the same bytes. */
async function ensureSquashfs(treeDir: string, sourceDateEpoch: number, ref: string, progress: (line: string) => void): Promise<string> {
  const path = `${treeDir}.${SQUASHFS_COMPRESSION}.squashfs`;
  if (existsSync(path)) return path;
  const staging = `${path}.${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeRootSquashfs(treeDir, staging, sourceDateEpoch, ref, progress);
    await rename(staging, path);
  } finally {
    await rm(staging, { force: true });
  }
  return path;
}

/** What a root image is made of, whether its tree came from a recipe or a container image. */
export interface RootImageParts {
  name: string;
  version: string;
  description: string;
  cmdline: string;
  /** The kernel to boot and the tree whose /lib/modules/<release> holds its modules. */
  kernelPath: string;
  release: string;
  modulesTree: string;
  squashfsPath: string;
  busybox: { busyboxPackage: DebianPackage; busyboxTree: string };
  sourceDateEpoch: number;
  /** Provenance beyond the kernel, busybox and modules: the recipe or the container image. */
  builtFrom: Pick<ImageManifest['builtFrom'], 'kernelPackage' | 'recipe' | 'oci'>;
}

/**
 * Writes an image of a real OS into `<outDir>/<name>@<version>/`: the kernel, the Shoal busybox
 * initramfs with the modules the root needs (from `modulesTree`), the squashfs and image.json.
 */
export async function writeRootImage(parts: RootImageParts, outDir: string, progress: (line: string) => void): Promise<BuiltImage> {
  const ref = `${parts.name}@${parts.version}`;
  const { release, sourceDateEpoch } = parts;
  const moduleDir = `lib/modules/${release}`;
  const [modulesDep, modulesBuiltin] = await Promise.all(
    ['modules.dep', 'modules.builtin'].map((f) =>
      readFile(join(parts.modulesTree, moduleDir, f), 'utf8').catch((error: NodeJS.ErrnoException) => {
        throw new Error(`${ref}: kernel ${release} has no /${moduleDir}/${f} (${error.code ?? error.message}); the initramfs needs the kernel's own modules`);
      }),
    ),
  );
  const modulePaths = modulesToLoad(OS_INITRAMFS_MODULES, modulesDep!, modulesBuiltin!, release).map((p) => `${moduleDir}/${p}`);

  progress(`${ref}: writing initramfs (kernel ${release}, ${modulePaths.length} modules from the image)`);
  const kernel = await readFile(parts.kernelPath);
  const initrd = gzipSync(writeNewc(await initramfsEntries(parts, { busyboxTree: parts.busybox.busyboxTree, kernelTree: parts.modulesTree }, release, modulePaths), sourceDateEpoch), { level: 9 });
  const rootfs = { file: ROOTFS_SQUASHFS_FILE, sha256: await sha256File(parts.squashfsPath), size: (await stat(parts.squashfsPath)).size };

  const kernelSha256 = sha256(kernel);
  const initrdSha256 = sha256(initrd);
  const manifest: ImageManifest = {
    name: parts.name,
    version: parts.version,
    arch: 'x86_64',
    kernel: { file: KERNEL_FILE, sha256: kernelSha256, size: kernel.length },
    initrd: { file: INITRD_FILE, sha256: initrdSha256, size: initrd.length },
    rootfs,
    cmdline: parts.cmdline,
    kernelSigned: kernelSignedOf(kernel),
    digest: imageDigest({ kernelSha256, initrdSha256, rootfsSha256: rootfs.sha256, cmdline: parts.cmdline }),
    builtFrom: {
      ...(parts.builtFrom.kernelPackage ? { kernelPackage: parts.builtFrom.kernelPackage } : {}),
      busyboxPackage: { name: parts.busybox.busyboxPackage.name, version: parts.busybox.busyboxPackage.version },
      kernelRelease: release,
      modules: modulePaths.map((p) => basename(p, '.ko')),
      sourceDateEpoch,
      ...(parts.builtFrom.recipe ? { recipe: parts.builtFrom.recipe } : {}),
      ...(parts.builtFrom.oci ? { oci: parts.builtFrom.oci } : {}),
    },
  };
  const manifestText = `${JSON.stringify(manifest, null, 2)}\n`;
  parseManifest(manifestText, `${ref} ${MANIFEST_FILE}`); // what we write, readers must accept

  const finalDir = await writeImageDir(outDir, ref, manifestText, async (stagingDir) => {
    await writeFile(join(stagingDir, KERNEL_FILE), kernel);
    await writeFile(join(stagingDir, INITRD_FILE), initrd);
    // Hundreds of MB: a hard link to the squashfs when the output is on the same filesystem.
    await link(parts.squashfsPath, join(stagingDir, ROOTFS_SQUASHFS_FILE)).catch(() => copyFile(parts.squashfsPath, join(stagingDir, ROOTFS_SQUASHFS_FILE)));
  });
  progress(`${ref}: initrd ${initrd.length} bytes, root.squashfs ${rootfs.size} bytes, ${manifest.digest}`);
  return {
    ref,
    dir: finalDir,
    kernelPath: join(finalDir, KERNEL_FILE),
    initrdPath: join(finalDir, INITRD_FILE),
    rootfsPath: join(finalDir, ROOTFS_SQUASHFS_FILE),
    manifest,
  };
}

/** Builds `recipe` into `<options.outDir>/<name>@<version>/`; an image whose manifest is unchanged is left as is. */
export async function buildOsImage(recipe: OsRecipe, options: BuildOptions): Promise<BuiltImage> {
  const ref = `${recipe.name}@${recipe.version}`;
  const progress = options.progress ?? (() => {});
  const sourceDateEpoch = options.sourceDateEpoch ?? sourceDateEpochFromEnv();
  const busybox = await prepareBusybox(options.cacheDir, progress);
  const tree = await ensureRootTree(recipe, options.cacheDir, sourceDateEpoch, progress);
  const release = await treeKernelRelease(join(tree.dir, 'boot'), ref);
  if (release === undefined) throw new Error(`${ref}: the root tree's /boot has no kernel; the recipe must install exactly one (linux-image-…)`);
  return writeRootImage(
    {
      ...recipe,
      kernelPath: join(tree.dir, 'boot', `vmlinuz-${release}`),
      release,
      modulesTree: tree.dir,
      squashfsPath: await ensureSquashfs(tree.dir, sourceDateEpoch, ref, progress),
      busybox,
      sourceDateEpoch,
      builtFrom: {
        kernelPackage: await treeKernelPackage(tree.dir, release),
        recipe: { file: basename(recipe.source), suite: recipe.suite, mirror: recipe.mirror, treeKey: tree.key },
      },
    },
    options.outDir,
    progress,
  );
}
