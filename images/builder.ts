// Builds node images from Debian packages: the Debian kernel as it ships, and a gzip'd newc
// initramfs holding busybox-static, the NIC and power-button modules, /init, the udhcpc script and the agent;
// for recipes that ask for one, a gzip'd tar root filesystem holding the same and a marker.
// Images of a real OS (os-builder.ts) reuse the initramfs parts from here.
// Same inputs give the same bytes: entries are sorted, owned by root, stamped with one fixed
// time (SOURCE_DATE_EPOCH, default 0), and the gzip header carries no time or name.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { fetchDeb, kernelRelease, listFiles, resolveKernelPackageName, resolvePackages, unpackDeb, type DebianPackage } from './debian.js';
import { imageDigest, parseManifest, type ImageManifest } from './manifest.js';
import { writeNewc, type CpioEntry } from './newc.js';
import { findRecipe, imageRef, KERNEL_MODULES, type ImageRecipe } from './recipes.js';
import { writeTar, type TarEntry } from './tar.js';

export interface BuiltImage {
  ref: string;
  dir: string;
  kernelPath: string;
  initrdPath: string;
  /** The root filesystem, for recipes that have one. */
  rootfsPath?: string;
  manifest: ImageManifest;
}

export interface BuildOptions {
  /** Each image goes to `<outDir>/<name>@<version>/`. */
  outDir: string;
  /** Downloaded .debs and their unpacked trees. */
  cacheDir: string;
  /** Seconds since the epoch stamped on every initramfs entry; default $SOURCE_DATE_EPOCH or 0. */
  sourceDateEpoch?: number;
  progress?: (line: string) => void;
}

/** The unpacked Debian packages every image is made from. */
export interface BuildInputs {
  kernelPackage: DebianPackage;
  kernelTree: string;
  busyboxPackage: DebianPackage;
  busyboxTree: string;
}

export const KERNEL_FILE = 'vmlinuz';
export const INITRD_FILE = 'initrd.img';
const ROOTFS_FILE = 'rootfs.tar.gz';
export const MANIFEST_FILE = 'image.json';

export function sourceDateEpochFromEnv(): number {
  const raw = process.env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return 0;
  if (!/^\d+$/.test(raw) || Number(raw) > 0xffffffff) throw new Error(`SOURCE_DATE_EPOCH must be whole seconds since 1970, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Resolves, downloads (when not cached) and unpacks the Debian packages images are made from. */
export async function prepareInputs(cacheDir: string, progress: (line: string) => void = () => {}): Promise<BuildInputs> {
  const [kernelPackage, busyboxPackage] = await resolvePackages([await resolveKernelPackageName(), 'busybox-static']);
  if (!kernelPackage || !busyboxPackage) throw new Error('apt-cache resolved fewer packages than asked for');
  progress(`using ${kernelPackage.name}=${kernelPackage.version}, ${busyboxPackage.name}=${busyboxPackage.version}`);
  const kernelTree = await unpackDeb(await fetchDeb(kernelPackage, cacheDir, progress), kernelPackage, cacheDir, progress);
  const busyboxTree = await unpackDeb(await fetchDeb(busyboxPackage, cacheDir, progress), busyboxPackage, cacheDir, progress);
  return { kernelPackage, kernelTree, busyboxPackage, busyboxTree };
}

/** busybox-static alone (an OS image brings its own kernel), downloaded and unpacked when not cached. */
export async function prepareBusybox(cacheDir: string, progress: (line: string) => void = () => {}): Promise<{ busyboxPackage: DebianPackage; busyboxTree: string }> {
  const [busyboxPackage] = await resolvePackages(['busybox-static']);
  if (!busyboxPackage) throw new Error('apt-cache resolved no busybox-static');
  const busyboxTree = await unpackDeb(await fetchDeb(busyboxPackage, cacheDir, progress), busyboxPackage, cacheDir, progress);
  return { busyboxPackage, busyboxTree };
}

/** Paths (inside the kernel tree, without leading "/") of the NIC and power-button modules, in load order. */
async function findModules(kernelTree: string, release: string): Promise<string[]> {
  const moduleRoot = `lib/modules/${release}`;
  const files = await listFiles(join(kernelTree, moduleRoot));
  return KERNEL_MODULES.map((name) => {
    // busybox insmod cannot read compressed modules; Debian 6.1 ships them uncompressed.
    const path = files.find((f) => f.endsWith(`/${name}.ko`));
    if (!path) throw new Error(`kernel ${release} has no module ${name}.ko under /${moduleRoot}`);
    return `${moduleRoot}/${path}`;
  });
}

/** /etc/shoal-image: what the agent reports as bakedImage (images/agent/PROTOCOL.md). */
export function shoalImageFile(recipe: Pick<ImageRecipe, 'name' | 'version' | 'description'>, release: string): string {
  return [`image=${imageRef(recipe)}`, `name=${recipe.name}`, `version=${recipe.version}`, `description=${recipe.description}`, `kernel=${release}`, ''].join(
    '\n',
  );
}

/** What an initramfs and a busybox root filesystem hold: busybox, /init, the agent, the modules (from `kernelTree`), the image marker. */
export async function systemEntries(
  recipe: Pick<ImageRecipe, 'name' | 'version' | 'description'>,
  inputs: Pick<BuildInputs, 'busyboxTree' | 'kernelTree'>,
  release: string,
  modulePaths: string[],
): Promise<CpioEntry[]> {
  const here = (path: string) => readFile(new URL(path, import.meta.url));
  const files: CpioEntry[] = [
    { kind: 'file', path: 'init', mode: 0o755, data: await here('./initramfs/init.sh') },
    { kind: 'file', path: 'etc/udhcpc.script', mode: 0o755, data: await here('./initramfs/udhcpc.script') },
    // busybox acpid runs /etc/acpi/<ACTION>/<PARAMETER>; PWRF/00000080 is the power button.
    { kind: 'file', path: 'etc/acpi/PWRF/00000080', mode: 0o755, data: await here('./initramfs/power-button.sh') },
    { kind: 'file', path: 'usr/bin/shoal-agent', mode: 0o755, data: await here('./agent/shoal-agent.sh') },
    { kind: 'file', path: 'bin/busybox', mode: 0o755, data: await readFile(join(inputs.busyboxTree, 'bin/busybox')) },
    { kind: 'symlink', path: 'bin/sh', target: 'busybox' },
    { kind: 'file', path: 'etc/shoal-image', mode: 0o644, data: Buffer.from(shoalImageFile(recipe, release)) },
    { kind: 'file', path: 'etc/shoal-modules', mode: 0o644, data: Buffer.from(modulePaths.map((p) => `/${p}\n`).join('')) },
  ];
  for (const path of modulePaths) files.push({ kind: 'file', path, mode: 0o644, data: await readFile(join(inputs.kernelTree, path)) });
  return files;
}

/** `files` plus the mount points and the directories busybox --install fills, plus every parent of a file. */
function withDirectories(files: CpioEntry[], extraDirs: string[] = []): CpioEntry[] {
  const dirs = new Set(['bin', 'dev', 'etc', 'proc', 'root', 'run', 'sbin', 'sys', 'tmp', 'usr', 'usr/bin', 'usr/sbin', ...extraDirs]);
  for (const entry of files) {
    const parts = entry.path.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  const dirEntries: CpioEntry[] = [...dirs].map((path) => ({ kind: 'dir', path, mode: path === 'tmp' ? 0o1777 : 0o755 }));
  return [...dirEntries, ...files];
}

export async function initramfsEntries(
  recipe: Pick<ImageRecipe, 'name' | 'version' | 'description'>,
  inputs: Pick<BuildInputs, 'busyboxTree' | 'kernelTree'>,
  release: string,
  modulePaths: string[],
): Promise<CpioEntry[]> {
  const files = await systemEntries(recipe, inputs, release, modulePaths);
  // The kernel opens /dev/console for init's stdio before /init can mount devtmpfs.
  files.push({ kind: 'char', path: 'dev/console', mode: 0o600, major: 5, minor: 1 });
  // Where a root filesystem is unpacked before switch_root (shoal.rootfs=URL).
  return withDirectories(files, ['newroot']);
}

/** The root filesystem: the same system as the initramfs, plus the marker that says /init runs from it. */
async function rootfsEntries(recipe: ImageRecipe, inputs: BuildInputs, modulePaths: string[]): Promise<TarEntry[]> {
  const files = await systemEntries(recipe, inputs, kernelRelease(inputs.kernelPackage), modulePaths);
  // The workload's marker: /init, seeing it, knows it already switched root and says so on the console.
  files.push({ kind: 'file', path: 'etc/shoal-rootfs', mode: 0o644, data: Buffer.from(`rootfs=${imageRef(recipe)}\n`) });
  return withDirectories(files);
}

/**
 * Writes an image directory `<outDir>/<ref>`: `writeFiles` fills a staging directory beside it, the
 * manifest goes in last, and the whole is moved into place (unless an identical image is already
 * there), so a reader never sees half an image. Returns the image's directory.
 */
export async function writeImageDir(outDir: string, ref: string, manifestText: string, writeFiles: (stagingDir: string) => Promise<void>): Promise<string> {
  await mkdir(outDir, { recursive: true });
  const stagingDir = join(outDir, `.${ref}.build-${process.pid}-${randomBytes(4).toString('hex')}`);
  const finalDir = join(outDir, ref);
  await mkdir(stagingDir);
  try {
    await writeFiles(stagingDir);
    await writeFile(join(stagingDir, MANIFEST_FILE), manifestText);
    await install(stagingDir, finalDir, manifestText);
  } finally {
    await rm(stagingDir, { recursive: true, force: true });
  }
  return finalDir;
}

/** Moves a finished build into `<outDir>/<ref>`, unless an identical image is already there. */
async function install(stagingDir: string, finalDir: string, manifestText: string): Promise<void> {
  const finalManifest = join(finalDir, MANIFEST_FILE);
  const sameAsInstalled = async () => existsSync(finalManifest) && (await readFile(finalManifest, 'utf8')) === manifestText;
  if (await sameAsInstalled()) return;
  await rm(finalDir, { recursive: true, force: true });
  try {
    await rename(stagingDir, finalDir);
  } catch (error) {
    // A concurrent build of the same inputs won the race; reproducibility makes its copy ours.
    if (!(await sameAsInstalled())) throw error;
  }
}

async function buildOne(recipe: ImageRecipe, inputs: BuildInputs, options: BuildOptions, progress: (line: string) => void): Promise<BuiltImage> {
  const ref = imageRef(recipe);
  const release = kernelRelease(inputs.kernelPackage);
  const sourceDateEpoch = options.sourceDateEpoch ?? sourceDateEpochFromEnv();
  const kernel = await readFile(join(inputs.kernelTree, `boot/vmlinuz-${release}`));
  const modulePaths = await findModules(inputs.kernelTree, release);

  progress(`${ref}: writing initramfs`);
  const cpio = writeNewc(await initramfsEntries(recipe, inputs, release, modulePaths), sourceDateEpoch);
  // Node's gzip header has mtime 0 and no file name: the same archive always gzips the same.
  const initrd = gzipSync(cpio, { level: 9 });
  let rootfs: Buffer | undefined;
  if (recipe.rootfs) {
    progress(`${ref}: writing root filesystem`);
    rootfs = gzipSync(writeTar(await rootfsEntries(recipe, inputs, modulePaths), sourceDateEpoch), { level: 9 });
  }

  const kernelSha256 = sha256(kernel);
  const initrdSha256 = sha256(initrd);
  const rootfsSha256 = rootfs && sha256(rootfs);
  const manifest: ImageManifest = {
    name: recipe.name,
    version: recipe.version,
    arch: 'x86_64',
    kernel: { file: KERNEL_FILE, sha256: kernelSha256, size: kernel.length },
    initrd: { file: INITRD_FILE, sha256: initrdSha256, size: initrd.length },
    ...(rootfs && rootfsSha256 ? { rootfs: { file: ROOTFS_FILE, sha256: rootfsSha256, size: rootfs.length } } : {}),
    cmdline: recipe.cmdline,
    digest: imageDigest({ kernelSha256, initrdSha256, rootfsSha256, cmdline: recipe.cmdline }),
    builtFrom: {
      kernelPackage: { name: inputs.kernelPackage.name, version: inputs.kernelPackage.version },
      busyboxPackage: { name: inputs.busyboxPackage.name, version: inputs.busyboxPackage.version },
      kernelRelease: release,
      modules: [...KERNEL_MODULES],
      sourceDateEpoch,
    },
  };
  const manifestText = `${JSON.stringify(manifest, null, 2)}\n`;
  parseManifest(manifestText, `${ref} ${MANIFEST_FILE}`); // what we write, readers must accept

  const finalDir = await writeImageDir(options.outDir, ref, manifestText, async (stagingDir) => {
    await writeFile(join(stagingDir, KERNEL_FILE), kernel);
    await writeFile(join(stagingDir, INITRD_FILE), initrd);
    if (rootfs) await writeFile(join(stagingDir, ROOTFS_FILE), rootfs);
  });
  progress(`${ref}: initrd ${initrd.length} bytes${rootfs ? `, rootfs ${rootfs.length} bytes` : ''}, ${manifest.digest}`);
  return {
    ref,
    dir: finalDir,
    kernelPath: join(finalDir, KERNEL_FILE),
    initrdPath: join(finalDir, INITRD_FILE),
    ...(rootfs ? { rootfsPath: join(finalDir, ROOTFS_FILE) } : {}),
    manifest,
  };
}

/**
 * Builds the named images (`name@version`) into `options.outDir`. Downloads and unpacked
 * packages are cached in `options.cacheDir`; an image whose manifest is unchanged is left as is.
 */
export async function buildImages(refs: readonly string[], options: BuildOptions): Promise<BuiltImage[]> {
  const recipes = refs.map(findRecipe); // reject bad names before any download
  if (recipes.length === 0) return [];
  const progress = options.progress ?? (() => {});
  const inputs = await prepareInputs(options.cacheDir, progress);
  const built: BuiltImage[] = [];
  for (const recipe of recipes) built.push(await buildOne(recipe, inputs, options, progress));
  return built;
}
