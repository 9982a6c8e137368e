// Builds node images from Debian packages: the Debian kernel as it ships, and a gzip'd newc
// initramfs holding busybox-static, the NIC and power-button modules, /init, the udhcpc script and the agent
// (and, for recipes that list them, programs from other Debian packages with the libraries they load);
// for recipes that ask for one, a gzip'd tar root filesystem holding the same and a marker.
// Images of a real OS (os-builder.ts) reuse the initramfs parts from here.
// Same inputs give the same bytes: entries are sorted, owned by root, stamped with one fixed
// time (SOURCE_DATE_EPOCH, default 0), and the gzip header carries no time or name.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readFile, readlink, rename, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { gzipSync } from 'node:zlib';
import { fetchDeb, kernelRelease, listFiles, resolveKernelPackageName, resolvePackages, unpackDeb, type DebianPackage } from './debian.js';
import { imageDigest, kernelSignedOf, parseManifest, type ImageManifest } from './manifest.js';
import { writeNewc, type CpioEntry } from './newc.js';
import { findRecipe, imageRef, KERNEL_MODULES, type DebianProgram, type ImageRecipe } from './recipes.js';
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
  programFiles: CpioEntry[] = [],
): Promise<CpioEntry[]> {
  const files = [...(await systemEntries(recipe, inputs, release, modulePaths)), ...programFiles];
  // The kernel opens /dev/console for init's stdio before /init can mount devtmpfs.
  files.push({ kind: 'char', path: 'dev/console', mode: 0o600, major: 5, minor: 1 });
  // Where a root filesystem is unpacked before switch_root (shoal.rootfs=URL).
  return withDirectories(files, ['newroot']);
}

/** What a dynamically linked ELF file asks the loader for: its interpreter (programs only) and its NEEDED libraries. */
export interface ElfDependencies {
  interpreter?: string;
  needed: string[];
}

/**
 * Reads an x86-64 ELF's program headers: PT_INTERP, and the DT_NEEDED entries of PT_DYNAMIC,
 * whose names are in the string table the DT_STRTAB address points to (mapped to a file offset
 * through the PT_LOAD segment holding it). A static file has neither.
 */
export function elfDependencies(elf: Buffer, what: string): ElfDependencies {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) throw new Error(`${what} is not a 64-bit little-endian ELF file`);
  const headers = [];
  for (let i = 0, at = Number(elf.readBigUInt64LE(0x20)); i < elf.readUInt16LE(0x38); i++, at += elf.readUInt16LE(0x36)) {
    headers.push({ type: elf.readUInt32LE(at), offset: Number(elf.readBigUInt64LE(at + 8)), vaddr: Number(elf.readBigUInt64LE(at + 16)), size: Number(elf.readBigUInt64LE(at + 32)) });
  }
  const cString = (at: number) => elf.subarray(at, elf.indexOf(0, at)).toString('latin1');
  const interp = headers.find((h) => h.type === 3);
  const dynamic = headers.find((h) => h.type === 2);
  const result: ElfDependencies = { needed: [], ...(interp ? { interpreter: cString(interp.offset) } : {}) };
  if (!dynamic) return result;
  const entries: [number, number][] = [];
  for (let at = dynamic.offset; at + 16 <= dynamic.offset + dynamic.size; at += 16) {
    const tag = Number(elf.readBigInt64LE(at));
    if (tag === 0) break; // DT_NULL
    entries.push([tag, Number(elf.readBigUInt64LE(at + 8))]);
  }
  const strtab = entries.find(([tag]) => tag === 5)?.[1]; // DT_STRTAB
  const load = headers.find((h) => h.type === 1 && strtab !== undefined && h.vaddr <= strtab && strtab < h.vaddr + h.size);
  if (strtab === undefined || !load) throw new Error(`${what}: its dynamic string table is in no loaded segment`);
  const strtabOffset = strtab - load.vaddr + load.offset;
  for (const [tag, value] of entries) if (tag === 1) result.needed.push(cString(strtabOffset + value)); // DT_NEEDED
  return result;
}

/** Where the loader of a Debian system finds libraries by name (Debian's glibc searches the multiarch directories). */
const LIBRARY_DIRS = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu', 'lib64', 'lib', 'usr/lib'];

/**
 * The initramfs entries for a program at `programPath` in `programTree` and every library it loads,
 * found in `libraryTrees` (unpacked packages) at the path the loader looks in. Symlinks on the way
 * (libz.so.1 -> libz.so.1.2.13, the loader's /lib64 link) are kept as symlinks, so nothing is stored twice.
 */
export async function programEntries(programTree: string, programPath: string, libraryTrees: readonly string[]): Promise<CpioEntry[]> {
  const entries = new Map<string, CpioEntry>();
  const exists = (path: string) => lstat(path).then(() => true, () => false);
  /** Adds `path` of `tree` (following its symlinks inside the tree) and returns the real file's contents. */
  const add = async (tree: string, path: string): Promise<Buffer> => {
    for (let hops = 0; hops < 16; hops++) {
      const stat = await lstat(join(tree, path));
      if (!stat.isSymbolicLink()) {
        const data = await readFile(join(tree, path));
        entries.set(path, { kind: 'file', path, mode: 0o755, data });
        return data;
      }
      const target = await readlink(join(tree, path));
      entries.set(path, { kind: 'symlink', path, target });
      path = target.startsWith('/') ? target.slice(1) : posix.normalize(posix.join(posix.dirname(path), target));
    }
    throw new Error(`${tree}/${path}: too many symbolic links`);
  };
  const find = async (paths: string[], asker: string): Promise<[string, string]> => {
    for (const tree of libraryTrees) for (const path of paths) if (await exists(join(tree, path))) return [tree, path];
    throw new Error(`${asker} needs ${paths[0]!.split('/').at(-1)}, which none of its library packages has (in /${LIBRARY_DIRS.join(', /')})`);
  };
  const pending: [string, Buffer][] = [[programPath, await add(programTree, programPath)]];
  for (let next = pending.shift(); next; next = pending.shift()) {
    const [asker, elf] = next;
    const { interpreter, needed } = elfDependencies(elf, asker);
    const wanted = [...(interpreter ? [[interpreter.slice(1)]] : []), ...needed.map((name) => LIBRARY_DIRS.map((dir) => `${dir}/${name}`))];
    for (const paths of wanted) {
      const [tree, path] = await find(paths, asker);
      if (!entries.has(path)) pending.push([path, await add(tree, path)]);
    }
  }
  return [...entries.values()];
}

/** Downloads and unpacks a recipe's programs' packages (cached) and returns their initramfs entries. */
async function recipeProgramEntries(programs: readonly DebianProgram[], cacheDir: string, progress: (line: string) => void): Promise<CpioEntry[]> {
  const unpacked = async (names: readonly string[]) =>
    Promise.all((await resolvePackages(names)).map(async (pkg) => unpackDeb(await fetchDeb(pkg, cacheDir, progress), pkg, cacheDir, progress)));
  const files: CpioEntry[] = [];
  for (const program of programs) {
    const [programTree] = await unpacked([program.package]);
    const found = await programEntries(programTree!, program.path, await unpacked(program.libraryPackages));
    // Two programs may share a library: keep one entry per path.
    files.push(...found.filter((entry) => !files.some((other) => other.path === entry.path)));
  }
  return files;
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

  const programFiles = recipe.programs ? await recipeProgramEntries(recipe.programs, options.cacheDir, progress) : [];
  progress(`${ref}: writing initramfs`);
  const cpio = writeNewc(await initramfsEntries(recipe, inputs, release, modulePaths, programFiles), sourceDateEpoch);
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
    kernelSigned: kernelSignedOf(kernel),
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
