// Turns a container image an operator already has into a bootable Shoal image, as Warewulf does:
// skopeo copies the source (a path to an OCI layout, an OCI archive or a `docker save` archive, or
// a skopeo reference: oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker://REF) into a
// private OCI layout, which is checked (oci-layout.ts) before umoci unpacks it into a root tree,
// layers in order with their whiteouts. The kernel is the tree's own /boot/vmlinuz-* with its
// /lib/modules, or, for the usual container without one, another built image's (--kernel-from),
// whose modules are copied into the tree so the booted system can load drivers too. The Shoal
// agent is installed as a systemd service, as a recipe build has it. The tree then becomes the
// same image as a recipe build (os-builder.ts writeRootImage): kernel, Shoal initramfs,
// root.squashfs, image.json naming the source and its OCI manifest digest. All work happens in a
// directory that is removed at the end; the image directory appears only when complete
// (writeImageDir).
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, open, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { basename, join, posix, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { MANIFEST_FILE, KERNEL_FILE, prepareBusybox, shoalImageFile, sourceDateEpochFromEnv, type BuildOptions, type BuiltImage } from './builder.js';
import { SKOPEO_REFERENCE } from '../src/contracts/services.js';
import { parseManifest, type ImageManifest } from './manifest.js';
import { checkLayers, OciImageError, readOciImage, walkTar } from './oci-layout.js';
import { ROOTFS_SQUASHFS_FILE, treeKernelPackage, treeKernelRelease, writeRootImage, writeRootSquashfs } from './os-builder.js';

export { OciImageError } from './oci-layout.js';

/** The tag skopeo gives the image in the private layout. */
const LAYOUT_TAG = 'shoal';
const DEFAULT_CMDLINE = 'console=ttyS0 quiet systemd.show_status=1';

const NAME = /^[a-z][a-z0-9-]{0,62}$/;
const VERSION = /^[0-9a-z][0-9a-z.-]{0,31}$/;

export const OciImportRequestSchema = z
  .object({
    /** An absolute path (an OCI layout directory, an OCI archive or a `docker save` archive), or a skopeo reference. */
    source: z
      .string()
      .refine((s) => s.startsWith('/') || SKOPEO_REFERENCE.test(s), 'an absolute path to an OCI layout or archive, or a skopeo reference: oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker://REF'),
    /** Defaults to the source's file name, made a valid name. */
    name: z.string().regex(NAME, 'lowercase letters, digits and dashes, starting with a letter').optional(),
    /** Defaults to the first 12 hex digits of the image's manifest digest: the same content, the same version. */
    version: z.string().regex(VERSION, 'lowercase letters, digits, dots and dashes').optional(),
    /** A built image with a root.squashfs (its directory, or NAME@VER under the output directory) whose kernel and modules to use. */
    kernelFrom: z.string().min(1).optional(),
    /** The init to run when the image has no /sbin/init: an absolute path inside the image. */
    init: z.string().regex(/^\/[^\0]*$/, 'an absolute path inside the image').refine((p) => !p.split('/').includes('..'), 'no .. parts').optional(),
    cmdline: z.string().max(1024).default(DEFAULT_CMDLINE),
  })
  .strict();
export type OciImportRequest = z.input<typeof OciImportRequestSchema>;

/** Runs a tool, printing nothing; its last stderr lines (skopeo's and umoci's `msg="…"`) become the error. */
function runTool(command: string, args: string[], what: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const lines: string[] = [];
    createInterface({ input: child.stderr }).on('line', (line) => lines.push(/msg="((?:[^"\\]|\\.)*)"/.exec(line)?.[1]?.replaceAll('\\"', '"') ?? line));
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(new OciImageError(error.code === 'ENOENT' ? `${command} is not installed (apt-get install ${command})` : `${command}: ${error.message}`)),
    );
    child.on('close', (code, signal) => {
      if (code === 0) resolvePromise();
      else reject(new OciImageError(`${what} failed (${signal ? `killed by ${signal}` : `${command} exit status ${code}`}): ${lines.slice(-3).join(' | ') || 'no message'}`));
    });
  });
}

/**
 * Where `path` (absolute, inside the tree) is on the host, with every symlink on the way followed
 * inside the tree: an image's absolute links (/lib -> /usr/lib, or a hostile /etc -> /etc) must
 * never lead the import to the host's own files. A missing part ends the walk (it cannot be a link).
 */
async function inTree(tree: string, path: string, hops = 0): Promise<string> {
  if (hops > 40) throw new OciImageError(`${path} in the image is a loop of symlinks`);
  const parts = path.split('/').filter(Boolean);
  let at = '/';
  for (const [i, part] of parts.entries()) {
    const next = posix.join(at, part);
    const info = await lstat(join(tree, next)).catch(() => undefined);
    if (!info) return join(tree, posix.join(next, ...parts.slice(i + 1)));
    if (info.isSymbolicLink()) {
      const target = await readlink(join(tree, next));
      return inTree(tree, posix.join(posix.resolve(at, target), ...parts.slice(i + 1)), hops + 1);
    }
    at = next;
  }
  return join(tree, at);
}

/** The host path to write `path` of the tree at: its directory resolved inside the tree and made, whatever was at the path removed. */
async function placeInTree(tree: string, path: string): Promise<string> {
  const dir = await inTree(tree, posix.dirname(path));
  await mkdir(dir, { recursive: true });
  const placed = join(dir, posix.basename(path));
  await rm(placed, { recursive: true, force: true });
  return placed;
}

async function isExecutableFile(tree: string, path: string): Promise<boolean> {
  const info = await lstat(await inTree(tree, path)).catch(() => undefined);
  return info !== undefined && info.isFile() && (info.mode & 0o111) !== 0;
}

/** A built image to take the kernel from: its directory, or NAME@VER in one of `searchDirs`. */
async function kernelImage(ref: string, searchDirs: string[]): Promise<{ dir: string; manifest: ImageManifest }> {
  const candidates = ref.includes('/') ? [resolve(ref)] : searchDirs.map((d) => join(d, ref));
  const dir = candidates.find((d) => existsSync(join(d, MANIFEST_FILE)));
  if (!dir) throw new OciImageError(`--kernel-from ${ref}: no built image there (looked in ${candidates.join(', ')}); build it first, e.g. npx tsx images/build.ts ${ref.includes('/') ? 'debian@12' : ref}`);
  const manifest = parseManifest(await readFile(join(dir, MANIFEST_FILE), 'utf8'), join(dir, MANIFEST_FILE));
  if (manifest.rootfs?.file !== ROOTFS_SQUASHFS_FILE) throw new OciImageError(`--kernel-from ${ref}: it has no ${ROOTFS_SQUASHFS_FILE} to take the kernel's modules from (an OS image such as debian@12 has)`);
  return { dir, manifest };
}

/**
 * The skopeo reference for a path: an OCI layout directory (it has `oci-layout`), or a tar that
 * is an OCI archive (it holds `oci-layout`) or a `docker save` / `podman save` archive (it holds
 * `manifest.json`). The tar's headers are read as a stream; its contents are not kept.
 */
async function skopeoReference(path: string): Promise<string> {
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
    throw new OciImageError(`${path}: ${error.code === 'ENOENT' ? 'no such file or directory' : error.message}`);
  });
  if (path.includes(':')) throw new OciImageError(`${path}: skopeo cannot take a path with ":" in it; rename it`);
  if (info.isDirectory()) {
    if (!existsSync(join(path, 'oci-layout'))) throw new OciImageError(`${path} is a directory but not an OCI image layout (it has no oci-layout file)`);
    return `oci:${path}`;
  }
  if (!info.isFile()) throw new OciImageError(`${path} is neither a file nor a directory`);
  const magic = Buffer.alloc(4);
  const file = await open(path);
  await file.read(magic, 0, 4, 0).finally(() => file.close());
  if (magic[0] === 0x1f && magic[1] === 0x8b) throw new OciImageError(`${path} is gzip-compressed; decompress it first (gunzip), skopeo reads plain tar archives`);
  if (magic.readUInt32LE(0) === 0xfd2fb528) throw new OciImageError(`${path} is zstd-compressed; decompress it first (zstd -d), skopeo reads plain tar archives`);
  const names = new Set<string>();
  await walkTar(createReadStream(path), (entry) => void names.add(entry.path.replace(/^(\.\/)+/, ''))).catch((error: Error) => {
    throw new OciImageError(`${path} is not a tar archive: ${error.message.replace(/^a layer is /, 'it is ')}`);
  });
  if (names.has('oci-layout')) return `oci-archive:${path}`;
  if (names.has('manifest.json')) return `docker-archive:${path}`;
  throw new OciImageError(`${path} is a tar but neither an OCI image archive (no oci-layout in it) nor a docker save archive (no manifest.json in it)`);
}

/** A name for an image imported without one: the source's file name, made a valid name. */
function defaultName(source: string): string {
  const file = basename(source.replace(SKOPEO_REFERENCE, ''));
  const name = file
    .replace(/\.(tar|oci|docker)$/, '')
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^[^a-z]+/, '')
    .replace(/-+$/, '')
    .slice(0, 63);
  return name === '' ? 'imported' : name;
}

const execFileAsync = promisify(execFile);
const here = (path: string) => readFile(new URL(path, import.meta.url));
const AGENT_BIN = '/usr/lib/shoal-agent/bin';
const UNIT_DIR = '/etc/systemd/system';

/** An enabled unit: the link systemctl enable makes in `<UNIT_DIR>/<target>.wants/`. */
async function enable(tree: string, target: string, unitPath: string): Promise<void> {
  await symlink(unitPath, await placeInTree(tree, `${UNIT_DIR}/${target}.wants/${posix.basename(unitPath)}`));
}

/** The image's own unit file named `unit`, where systemd looks for it, if it has one. */
async function vendorUnit(tree: string, unit: string): Promise<string | undefined> {
  for (const dir of ['/lib/systemd/system', '/usr/lib/systemd/system']) if (existsSync(await inTree(tree, `${dir}/${unit}`))) return `${dir}/${unit}`;
  return undefined;
}

/**
 * Puts the Shoal agent in the imported root, as a recipe build does (images/recipes/debian-12.yaml):
 * the script and its systemd unit, enabled. It runs on its own busybox-static with every applet
 * (as in the initramfs), so it needs nothing of the image but systemd. The workload target a drain
 * stops comes too, unless the image has one. With systemd-networkd in the image and no other
 * network manager enabled, every wired NIC takes a DHCP lease as in debian@12; otherwise the
 * image's own network setup must (the initramfs releases its lease before switching root).
 */
async function installAgent(tree: string, busyboxTree: string, progress: (line: string) => void): Promise<void> {
  const busybox = await placeInTree(tree, `${AGENT_BIN}/busybox`);
  await copyFile(join(busyboxTree, 'bin/busybox'), busybox);
  await chmod(busybox, 0o755);
  const applets = (await execFileAsync(join(busyboxTree, 'bin/busybox'), ['--list'])).stdout.split('\n');
  // An image made from a Shoal image (debian@12's tree, say) has some of these already.
  for (const applet of applets.filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== 'busybox')) {
    const link = join(posix.dirname(busybox), applet);
    await rm(link, { recursive: true, force: true });
    await symlink('busybox', link);
  }

  const agent = await placeInTree(tree, '/usr/bin/shoal-agent');
  await writeFile(agent, await here('./agent/shoal-agent.sh'));
  await chmod(agent, 0o755);
  await writeFile(await placeInTree(tree, `${UNIT_DIR}/shoal-agent.service`), await here('./agent/shoal-agent.service'));
  // The unit runs the script with the image's /bin/busybox; here it is the agent's own.
  await writeFile(
    await placeInTree(tree, `${UNIT_DIR}/shoal-agent.service.d/10-shoal-import.conf`),
    `# Written by the OCI import: the agent runs on its own busybox, not the image's.\n[Service]\nExecStart=\nExecStart=${AGENT_BIN}/busybox sh /usr/bin/shoal-agent\n`,
  );
  await enable(tree, 'multi-user.target', `${UNIT_DIR}/shoal-agent.service`);
  if (!(await vendorUnit(tree, 'shoal-workload.target')) && !existsSync(await inTree(tree, `${UNIT_DIR}/shoal-workload.target`))) {
    await writeFile(await placeInTree(tree, `${UNIT_DIR}/shoal-workload.target`), await here('./recipes/debian-12/shoal-workload.target'));
    await enable(tree, 'multi-user.target', `${UNIT_DIR}/shoal-workload.target`);
  }

  const networkd = await vendorUnit(tree, 'systemd-networkd.service');
  const wants = await readdir(await inTree(tree, `${UNIT_DIR}/multi-user.target.wants`)).catch(() => [] as string[]);
  const otherManager = wants.find((unit) => ['NetworkManager.service', 'networking.service', 'connman.service'].includes(unit));
  if (networkd && !otherManager) {
    await writeFile(await placeInTree(tree, '/etc/systemd/network/80-shoal-dhcp.network'), await here('./recipes/debian-12/80-shoal-dhcp.network'));
    if (!wants.includes('systemd-networkd.service')) await enable(tree, 'multi-user.target', networkd);
    progress('agent installed (shoal-agent.service); every wired NIC takes a DHCP lease through systemd-networkd');
  } else {
    progress(`agent installed (shoal-agent.service); the image's network setup is left as it is (${otherManager ?? 'no systemd-networkd'})`);
  }
}

export interface OciImportOptions extends BuildOptions {
  /** Where --kernel-from NAME@VER is looked for, after `outDir`. */
  kernelSearchDirs?: string[];
}

/**
 * Imports the container image `request.source` as `<options.outDir>/<name>@<version>/`. Any
 * refusal is an OciImageError naming the source and the reason; nothing is left behind then.
 */
export async function importOciImage(input: OciImportRequest, options: OciImportOptions): Promise<BuiltImage> {
  const parsed = OciImportRequestSchema.safeParse(input);
  if (!parsed.success) throw new OciImageError(`cannot import ${input.source}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  try {
    return await importNow(parsed.data, options);
  } catch (error) {
    throw new OciImageError(`cannot import ${parsed.data.source}: ${(error as Error).message}`);
  }
}

async function importNow(request: z.infer<typeof OciImportRequestSchema>, options: OciImportOptions): Promise<BuiltImage> {
  const report = options.progress ?? (() => {});
  const sourceDateEpoch = options.sourceDateEpoch ?? sourceDateEpochFromEnv();
  // Checked before the long work: a missing kernel image or an unknown kind of file is known at once.
  const kernelFrom = request.kernelFrom === undefined ? undefined : await kernelImage(request.kernelFrom, [options.outDir, ...(options.kernelSearchDirs ?? [])]);
  const transport = request.source.startsWith('/') ? await skopeoReference(request.source) : request.source;
  const busybox = await prepareBusybox(options.cacheDir, report);

  await mkdir(options.outDir, { recursive: true });
  // Beside the output: the squashfs is then hard-linked into the image, not copied.
  const work = join(options.outDir, `.oci-import-${process.pid}-${randomBytes(4).toString('hex')}`);
  const layout = join(work, 'layout');
  const tree = join(work, 'root');
  // The modules the initramfs takes, at lib/modules/<release> under here: read from the tree only through inTree.
  const kernelTree = join(work, 'kernel');
  try {
    await mkdir(work);
    report(`copying ${transport} (skopeo)`);
    await runTool('skopeo', ['copy', '--quiet', transport, `oci:${layout}:${LAYOUT_TAG}`], 'skopeo copy');
    const image = await readOciImage(layout, LAYOUT_TAG);
    const name = request.name ?? defaultName(request.source);
    const version = request.version ?? image.manifestDigest.slice('sha256:'.length, 'sha256:'.length + 12);
    const ref = `${name}@${version}`;
    const progress = (line: string) => report(`${ref}: ${line}`);
    progress(`image ${image.manifestDigest}, ${image.layers.length} layer(s)`);
    await checkLayers(layout, image, progress);

    progress('unpacking (umoci)');
    const rootless = process.getuid?.() !== 0;
    await runTool('umoci', ['raw', 'unpack', ...(rootless ? ['--rootless'] : []), '--image', `${layout}:${LAYOUT_TAG}`, tree], 'umoci raw unpack');
    await rm(layout, { recursive: true, force: true }); // the tree has it all now: half the space

    if (request.init !== undefined) {
      if (!(await isExecutableFile(tree, request.init))) throw new OciImageError(`--init ${request.init} is not an executable file in the image`);
      // The Shoal initramfs always switches into /sbin/init.
      await symlink(request.init, await placeInTree(tree, '/sbin/init'));
    } else if (!(await isExecutableFile(tree, '/sbin/init'))) {
      const systemd = ['/lib/systemd/systemd', '/usr/lib/systemd/systemd'];
      const found: string[] = [];
      for (const init of systemd) if (await isExecutableFile(tree, init)) found.push(init);
      if (found.length === 0) throw new OciImageError(`the image has no init (none of /sbin/init, ${systemd.join(', ')} is an executable file); install systemd-sysv in it, or name one with --init PATH`);
      await symlink(found[0]!, await placeInTree(tree, '/sbin/init'));
    }

    let release: string;
    let kernelPath: string;
    let kernelPackage: { name: string; version: string } | undefined;
    const own = await treeKernelRelease(await inTree(tree, '/boot'), ref);
    if (kernelFrom) {
      release = kernelFrom.manifest.builtFrom.kernelRelease;
      kernelPath = join(kernelFrom.dir, KERNEL_FILE);
      kernelPackage = kernelFrom.manifest.builtFrom.kernelPackage;
      progress(`kernel ${release} and its modules from ${kernelFrom.manifest.name}@${kernelFrom.manifest.version}`);
      await runTool('unsquashfs', ['-no-progress', '-dest', kernelTree, join(kernelFrom.dir, ROOTFS_SQUASHFS_FILE), `lib/modules/${release}`], `unsquashfs lib/modules/${release}`);
      // The booted system loads its drivers from there too.
      await runTool('cp', ['-a', join(kernelTree, 'lib/modules', release), await placeInTree(tree, `/lib/modules/${release}`)], 'copying the kernel modules into the image');
    } else if (own !== undefined) {
      release = own;
      kernelPath = await inTree(tree, `/boot/vmlinuz-${own}`);
      kernelPackage = await treeKernelPackage(tree, own).catch(() => undefined);
      progress(`kernel ${release} from the image's /boot`);
      await mkdir(join(kernelTree, 'lib/modules'), { recursive: true });
      await symlink(await inTree(tree, `/lib/modules/${release}`), join(kernelTree, 'lib/modules', release));
    } else {
      throw new OciImageError('the image has no kernel (/boot/vmlinuz-*); container images rarely do: name a built OS image to take one from with --kernel-from IMAGE (e.g. --kernel-from debian@12), or install a kernel package (linux-image-amd64) in the image');
    }

    await installAgent(tree, busybox.busyboxTree, progress);
    const description = `imported from ${request.source}`;
    await writeFile(await placeInTree(tree, '/etc/shoal-image'), shoalImageFile({ name, version, description }, release));
    const squashfsPath = join(work, ROOTFS_SQUASHFS_FILE);
    await writeRootSquashfs(tree, squashfsPath, sourceDateEpoch, ref, report, { allRoot: rootless });
    return await writeRootImage(
      {
        name,
        version,
        cmdline: request.cmdline,
        description,
        kernelPath,
        release,
        modulesTree: kernelTree,
        squashfsPath,
        busybox,
        sourceDateEpoch,
        builtFrom: {
          ...(kernelPackage ? { kernelPackage } : {}),
          oci: {
            source: request.source,
            manifestDigest: image.manifestDigest,
            configDigest: image.configDigest,
            ...(kernelFrom ? { kernelFrom: { image: `${kernelFrom.manifest.name}@${kernelFrom.manifest.version}`, digest: kernelFrom.manifest.digest } } : {}),
          },
        },
      },
      options.outDir,
      report,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
