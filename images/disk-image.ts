// Install-to-disk, first block: a raw GPT disk image made from a recipe's root tree, bootable on
// BIOS and on UEFI with Debian's GRUB, built with no loop device and no mount of the image.
//
// Layout (512-byte sectors, every partition MiB-aligned):
//   1  BIOS boot   1 MiB   GRUB i386-pc core.img (boot.img in the MBR jumps to it)
//   2  EFI system 64 MiB   FAT32 with EFI/BOOT/BOOTX64.EFI (grub-mkimage -O x86_64-efi)
//   3  root        rest    ext4 from `mkfs.ext4 -d`, written in place at its offset (-E offset=)
// Both GRUB images carry the same early config: find the root filesystem by its UUID and read its
// /boot/grub/grub.cfg, which boots the tree's own kernel with an initramfs-tools initrd
// (root=UUID=…). The root partition has the discoverable-partitions type for x86-64 root, so the
// image's systemd-repart (an /etc/repart.d drop-in) grows it to the end of a bigger disk on first
// boot, and fstab's `x-systemd.growfs` grows the filesystem after it.
//
// The cached tree is never written: the initrd is made in a private mount namespace on an overlay
// of it (cached beside the tree, like its squashfs), and the files the disk adds (fstab, grub.cfg,
// the initrd, the repart drop-in) are a second, read-only overlay layer that mkfs.ext4 reads.
//
// The image is one file for every node, but the installed OS needs per-node words on its kernel
// command line: the ESP holds /shoal/grubenv, an empty GRUB environment block at a byte offset the
// build reports (bootEnv), which a deploy overwrites in place after writing the image; grub.cfg
// loads its shoal_args and appends them to the kernel's command line.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, open, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { sha256File } from './debian.js';

const execFileAsync = promisify(execFile);

export const SECTOR = 512;
const MIB = 1024 * 1024;
export const DISK_RAW_FILE = 'disk.raw';
export const DISK_ZST_FILE = 'disk.raw.zst';

/** GPT partition type GUIDs (UEFI spec; the root one from the Discoverable Partitions Specification, which systemd-repart's `Type=root` means on x86-64). */
export const PARTITION_TYPES = {
  biosBoot: '21686148-6449-6E6F-744E-656564454649',
  esp: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
  rootX86_64: '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709',
} as const;

/** A tool failed or is missing; the message names it and carries its stderr. */
export class DiskImageError extends Error {}

/** Which Debian package has each tool, for the "not installed" message. */
const TOOL_PACKAGES: Record<string, string> = {
  sfdisk: 'fdisk',
  'mkfs.ext4': 'e2fsprogs',
  'mkfs.vfat': 'dosfstools',
  mmd: 'mtools',
  mcopy: 'mtools',
  mshowfat: 'mtools',
  'grub-mkimage': 'grub-common',
  zstd: 'zstd',
  unshare: 'util-linux',
};

/** Runs a tool with execFile; a failure names the tool, how it ended and the end of its stderr. */
export async function runTool(tool: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<string> {
  try {
    const running = execFileAsync(tool, args, { maxBuffer: 64 * MIB, env: options.env ?? process.env, encoding: 'utf8' });
    running.child.stdin?.end(options.input);
    const { stdout } = await running;
    return stdout;
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string; code?: number | string; signal?: string };
    if (e.code === 'ENOENT') throw new DiskImageError(`${tool} is not installed${TOOL_PACKAGES[tool] ? ` (apt-get install ${TOOL_PACKAGES[tool]})` : ''}`);
    const how = e.signal ? `killed by ${e.signal}` : `exit status ${e.code}`;
    const stderr = (e.stderr ?? '').trim().split('\n').slice(-8).join(' | ');
    throw new DiskImageError(`${tool} failed (${how}): ${stderr || e.message}`);
  }
}

/** A UUID (version-4 shaped) derived from a seed and a role, so the same seed gives the same disk identities. */
export function derivedUuid(seed: string, role: string): string {
  const h = createHash('sha256').update(`shoal-disk\n${seed}\n${role}\n`).digest();
  h[6] = (h[6]! & 0x0f) | 0x40;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

/** A FAT volume id (8 hex digits) from a seed; mkfs.vfat -i takes it, and /dev/disk/by-uuid shows it as XXXX-XXXX. */
export function derivedFatVolumeId(seed: string): string {
  return createHash('sha256').update(`shoal-disk\n${seed}\nesp-volume\n`).digest('hex').slice(0, 8).toUpperCase();
}

/** A FAT volume id as a UUID, XXXX-XXXX: what fstab's UUID= and GRUB's search --fs-uuid (case-insensitive) match. */
export function fatUuid(volumeId: string): string {
  return `${volumeId.slice(0, 4)}-${volumeId.slice(4)}`;
}

/** Where on the ESP the deploy's boot arguments go, and the GRUB variable that carries them. */
export const BOOT_ENV_PATH = '/shoal/grubenv';
export const BOOT_ENV_VARIABLE = 'shoal_args';
export const GRUB_ENV_BLOCK_BYTES = 1024;
const GRUB_ENV_HEADER = '# GRUB Environment Block\n';

/**
 * A GRUB environment block as upstream grub-editenv writes it: the header line, one `name=value` line
 * per variable, `#` padding to 1024 bytes. Values with a backslash or newline (which GRUB escapes) are refused.
 */
export function grubEnvBlock(variables: Readonly<Record<string, string>> = {}): Buffer {
  const lines = Object.entries(variables).map(([name, value]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || /[\\\n]/.test(value)) throw new DiskImageError(`a GRUB environment variable needs a plain name and a value with no backslash or newline: ${name}`);
    return `${name}=${value}\n`;
  });
  const text = GRUB_ENV_HEADER + lines.join('');
  if (Buffer.byteLength(text) > GRUB_ENV_BLOCK_BYTES) throw new DiskImageError(`the GRUB environment block is ${Buffer.byteLength(text)} bytes, more than ${GRUB_ENV_BLOCK_BYTES}`);
  const block = Buffer.alloc(GRUB_ENV_BLOCK_BYTES, '#');
  block.write(text);
  return block;
}

export interface Partition {
  number: number;
  name: string;
  type: string;
  uuid: string;
  startSector: number;
  sectors: number;
}

export interface DiskLayout {
  diskBytes: number;
  diskUuid: string;
  bios: Partition;
  esp: Partition;
  root: Partition;
}

export interface LayoutOptions {
  rootBytes: number;
  seed: string;
  espBytes?: number;
}

const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;

/** The partitions of a disk whose root filesystem is `rootBytes` (rounded up to a MiB), with 1 MiB at the end for the backup GPT. */
export function planDiskLayout(options: LayoutOptions): DiskLayout {
  const espBytes = roundUp(options.espBytes ?? 64 * MIB, MIB);
  const rootBytes = roundUp(options.rootBytes, MIB);
  if (espBytes < 33 * MIB) throw new DiskImageError(`the EFI system partition must be at least 33 MiB for FAT32 (asked for ${espBytes} bytes)`);
  const mib = MIB / SECTOR;
  const part = (number: number, name: string, type: string, startMib: number, bytes: number): Partition => ({
    number,
    name,
    type,
    uuid: derivedUuid(options.seed, `partition-${name}`),
    startSector: startMib * mib,
    sectors: bytes / SECTOR,
  });
  const bios = part(1, 'bios-boot', PARTITION_TYPES.biosBoot, 1, MIB);
  const esp = part(2, 'esp', PARTITION_TYPES.esp, 2, espBytes);
  const root = part(3, 'root', PARTITION_TYPES.rootX86_64, 2 + espBytes / MIB, rootBytes);
  return { diskBytes: (root.startSector + root.sectors) * SECTOR + MIB, diskUuid: derivedUuid(options.seed, 'disk'), bios, esp, root };
}

/** sfdisk's input for the layout: a GPT with the three partitions at exactly their sectors. */
export function sfdiskScript(layout: DiskLayout): string {
  const line = (p: Partition) => `start=${p.startSector}, size=${p.sectors}, type=${p.type}, uuid=${p.uuid}, name="${p.name}"`;
  return ['label: gpt', `label-id: ${layout.diskUuid}`, 'unit: sectors', 'sector-size: 512', 'first-lba: 2048', '', ...[layout.bios, layout.esp, layout.root].map(line), ''].join('\n');
}

/** The config built into both GRUB images: find the root filesystem by UUID and read its /boot/grub/grub.cfg. */
export function grubEarlyConfig(rootFsUuid: string): string {
  return [`search --no-floppy --fs-uuid --set=root ${rootFsUuid}`, 'set prefix=($root)/boot/grub', `configfile $prefix/grub.cfg`, ''].join('\n');
}

export interface GrubConfigOptions {
  title: string;
  release: string;
  rootFsUuid: string;
  /** The ESP's FAT volume id, where the boot environment block is. */
  espVolumeId: string;
  cmdline: string;
}

/**
 * /boot/grub/grub.cfg in the root: the serial console, no menu wait, the tree's kernel with its disk
 * initrd and the command line's words plus the deploy's (shoal_args from the ESP's environment block,
 * whitelisted so the block can set nothing else; an empty block adds nothing).
 */
export function grubConfig(o: GrubConfigOptions): string {
  return [
    '# Written by Shoal (images/disk-image.ts) for the disk image; GRUB reads it through the early config built into its images.',
    'serial --unit=0 --speed=115200',
    'terminal_input serial console',
    'terminal_output serial console',
    'set timeout=0',
    'set default=0',
    `menuentry '${o.title.replaceAll("'", '')}' {`,
    `  search --no-floppy --fs-uuid --set=root ${o.rootFsUuid}`,
    `  if search --no-floppy --fs-uuid --set=esp ${fatUuid(o.espVolumeId)}; then`,
    `    load_env --file ($esp)${BOOT_ENV_PATH} ${BOOT_ENV_VARIABLE}`,
    '  fi',
    `  echo "Loading Linux ${o.release} ..."`,
    ['  linux', `/boot/vmlinuz-${o.release}`, `root=UUID=${o.rootFsUuid}`, 'ro', o.cmdline, `$${BOOT_ENV_VARIABLE}`].filter((w) => w !== '').join(' '),
    `  initrd /boot/initrd.img-${o.release}`,
    '}',
    '',
  ].join('\n');
}

/** The root's /etc/fstab: the root by UUID, grown by systemd-growfs after systemd-repart grew its partition; the ESP on /boot/efi. */
export function fstab(rootFsUuid: string, espVolumeId: string): string {
  return [
    '# Written by Shoal (images/disk-image.ts): the root grows to fill its partition (x-systemd.growfs) after',
    '# systemd-repart (/etc/repart.d/50-shoal-root.conf) grew the partition to the end of the disk.',
    `UUID=${rootFsUuid} / ext4 defaults,x-systemd.growfs 0 1`,
    `UUID=${fatUuid(espVolumeId)} /boot/efi vfat umask=0077,nofail 0 2`,
    '',
  ].join('\n');
}

/** systemd-repart's drop-in: the existing x86-64 root partition takes all free space after it. */
export const REPART_ROOT_CONFIG = ['# Written by Shoal (images/disk-image.ts): grow the root partition to the end of the disk on boot.', '[Partition]', 'Type=root', ''].join('\n');

/** The GRUB modules both images embed: enough to find the root by UUID on GPT, read ext4, load the ESP's environment block and boot Linux on a serial console, with no module files on disk. */
export const GRUB_MODULES_COMMON = ['part_gpt', 'part_msdos', 'ext2', 'fat', 'search', 'search_fs_uuid', 'normal', 'configfile', 'loadenv', 'linux', 'echo', 'test', 'serial', 'terminal', 'ls', 'cat', 'reboot', 'halt'] as const;
export const GRUB_MODULES_BIOS = ['biosdisk', ...GRUB_MODULES_COMMON] as const;
export const GRUB_MODULES_EFI = [...GRUB_MODULES_COMMON, 'efi_gop', 'all_video'] as const;

// GRUB's i386-pc boot sector layout (grub-core include/grub/i386/pc/boot.h) and diskboot.img's blocklist,
// which grub-bios-setup patches; it cannot here, since it insists on finding its --directory's
// disk among the device map's, and the image is only a file.
const BOOT_KERNEL_SECTOR = 0x5c; // u64 LE: where core.img's first sector (diskboot) is
const BOOT_DRIVE_CHECK = 0x66; // a 2-byte jmp; nop'd for hard disks (BIOSes that pass a wrong DL)
const BOOT_BPB_START = 0x03;
const BOOT_BPB_END = 0x5a;
const BOOT_NT_MAGIC = 0x1b8; // from here to 0x1fe: disk signature and partition table (the protective MBR)
const BOOT_PART_END = 0x1fe;
const DISKBOOT_BLOCKLIST = SECTOR - 12; // { u64 start; u16 len; u16 segment } at the end of diskboot's sector
const KERNEL_SEGMENT = 0x820; // GRUB_BOOT_I386_PC_KERNEL_SEG + 0x20: where the sectors after diskboot load

/**
 * What grub-bios-setup writes for core.img at `coreLba`: the MBR (boot.img with the existing
 * sector's BPB and partition table kept, the kernel sector set, the drive check off) and core.img
 * with its first blocklist naming the sectors after its first.
 */
export function patchBiosBoot(bootImg: Buffer, existingMbr: Buffer, coreImg: Buffer, coreLba: number): { mbr: Buffer; core: Buffer } {
  if (bootImg.length !== SECTOR) throw new DiskImageError(`boot.img is ${bootImg.length} bytes, not ${SECTOR}`);
  if (existingMbr.length !== SECTOR || existingMbr.readUInt16LE(0x1fe) !== 0xaa55) throw new DiskImageError('the disk has no protective MBR to put boot.img in (run sfdisk first)');
  const sectors = Math.ceil(coreImg.length / SECTOR);
  if (sectors < 2 || sectors - 1 > 0xffff) throw new DiskImageError(`core.img is ${coreImg.length} bytes; it must span 2 to 65536 sectors`);
  const core = Buffer.alloc(sectors * SECTOR);
  coreImg.copy(core);
  const segment = core.readUInt16LE(DISKBOOT_BLOCKLIST + 10);
  if (segment !== KERNEL_SEGMENT) throw new DiskImageError(`core.img has no i386-pc diskboot blocklist (segment 0x${segment.toString(16)}, expected 0x${KERNEL_SEGMENT.toString(16)}); make it with grub-mkimage -O i386-pc`);
  core.writeBigUInt64LE(BigInt(coreLba + 1), DISKBOOT_BLOCKLIST);
  core.writeUInt16LE(sectors - 1, DISKBOOT_BLOCKLIST + 8);
  const mbr = Buffer.from(bootImg);
  existingMbr.copy(mbr, BOOT_BPB_START, BOOT_BPB_START, BOOT_BPB_END);
  existingMbr.copy(mbr, BOOT_NT_MAGIC, BOOT_NT_MAGIC, BOOT_PART_END);
  mbr[BOOT_DRIVE_CHECK] = 0x90;
  mbr[BOOT_DRIVE_CHECK + 1] = 0x90;
  mbr.writeBigUInt64LE(BigInt(coreLba), BOOT_KERNEL_SECTOR);
  mbr.writeUInt16LE(0xaa55, 0x1fe);
  return { mbr, core };
}

/** A file the disk adds to the root (written into the read-only overlay layer above the tree). */
export interface DiskFile {
  path: string;
  content?: string | Buffer;
  /** A local file to copy (e.g. the initrd), instead of content. */
  source?: string;
  /** A symbolic link to this target, instead of a file. */
  symlink?: string;
  mode?: number;
}

export interface DiskImageOptions {
  /** The root tree (read, never written). */
  tree: string;
  /** Its kernel release: /boot/vmlinuz-<release> must be there. */
  release: string;
  /** The initrd for a disk root (ensureDiskInitrd), put at /boot/initrd.img-<release>. */
  initrdPath: string;
  /** Where disk.raw and disk.raw.zst are written (created). */
  outDir: string;
  /** The base kernel command line (the recipe's); root=UUID=… ro comes before it. */
  cmdline: string;
  /** The GRUB menu entry's title, e.g. debian@12. */
  title: string;
  /** Makes the disk's UUIDs (GPT, partitions, root filesystem, ESP volume id): the same seed, the same identities. Default: random. */
  seed?: string;
  /** Free space the root filesystem has beyond the tree (default 256 MiB); the root grows on first boot. */
  slackBytes?: number;
  /** More files in the root (a test's report unit, a site's config). */
  extraFiles?: readonly DiskFile[];
  /** Where temporary files go (default: a directory beside outDir). */
  workDir?: string;
  /** GRUB's platform directories (default /usr/lib/grub). */
  grubDir?: string;
  progress?: (line: string) => void;
}

export interface DiskFileInfo {
  path: string;
  size: number;
  sha256: string;
}

export interface DiskImageResult {
  raw: DiskFileInfo;
  zst: DiskFileInfo;
  layout: DiskLayout;
  rootFsUuid: string;
  espVolumeId: string;
  /** What the tree and the added files take on the root filesystem, in bytes (du). */
  contentBytes: number;
  /** Where in disk.raw the ESP's /shoal/grubenv is: a deploy overwrites these bytes with a GRUB environment block carrying shoal_args. */
  bootEnv: { offset: number; size: number };
}

/** Bytes and entry count of a directory as du and find see them (one filesystem). */
async function measureTree(dir: string): Promise<{ bytes: number; entries: number }> {
  const du = await runTool('du', ['-s', '-x', '--block-size=1', dir]);
  const bytes = Number(du.split(/\s/)[0]);
  const find = await runTool('find', [dir, '-xdev', '-printf', '.']);
  return { bytes, entries: find.length };
}

/** How big the root filesystem must be for `content` bytes in `entries` inodes plus `slack`: ext4's metadata and journal, rounded up to 64 MiB. */
export function rootFsBytes(contentBytes: number, entries: number, slackBytes: number): number {
  const metadata = Math.ceil(contentBytes * 0.06) + entries * 256 + 64 * MIB; // bitmaps, inode tables, directories; the journal
  return roundUp(contentBytes + metadata + slackBytes, 64 * MIB);
}

/** Inodes for a root of `bytes` holding `entries`: the usual one per 16 KiB, but never fewer than half again the tree's. */
export function rootFsInodes(bytes: number, entries: number): number {
  return Math.max(Math.ceil(bytes / 16384), Math.ceil(entries * 1.5));
}

async function writeDiskFiles(layer: string, files: readonly DiskFile[]): Promise<void> {
  for (const f of files) {
    if (!f.path.startsWith('/') || f.path.split('/').includes('..')) throw new DiskImageError(`a disk file's path must be absolute with no "..": ${f.path}`);
    const target = join(layer, f.path);
    await mkdir(dirname(target), { recursive: true, mode: 0o755 });
    if (f.symlink !== undefined) await symlink(f.symlink, target);
    else {
      if (f.source !== undefined) await copyFile(f.source, target);
      else await writeFile(target, f.content ?? '');
      await chmod(target, f.mode ?? 0o644);
    }
  }
}

/** Runs a shell script in a private mount namespace: its mounts (overlays, /proc) end with it, whatever happens. */
function inMountNamespace(script: string, args: readonly string[]): Promise<string> {
  return runTool('unshare', ['--mount', '--propagation', 'private', 'sh', '-ec', script, 'shoal-disk', ...args]);
}

// $1 tree, $2 added layer, $3 empty mount point; then mke2fs's arguments. The overlay has no upper
// layer: read-only, the tree is never touched.
const MKFS_SCRIPT = `tree=$1 layer=$2 merged=$3; shift 3
mount -t overlay shoal-disk -o "ro,lowerdir=$layer:$tree" "$merged"
mkfs.ext4 "$@" -d "$merged"`;

/**
 * Builds `<outDir>/disk.raw` (sparse) and `disk.raw.zst` from a root tree: partition table,
 * root filesystem at its offset, ESP, BIOS boot code. Needs root (the overlay), sfdisk, mkfs.ext4,
 * mkfs.vfat, mtools, grub-mkimage with /usr/lib/grub/{i386-pc,x86_64-efi}, and zstd.
 */
export async function buildDiskImage(o: DiskImageOptions): Promise<DiskImageResult> {
  const progress = o.progress ?? (() => {});
  const grubDir = o.grubDir ?? '/usr/lib/grub';
  const kernel = join(o.tree, 'boot', `vmlinuz-${o.release}`);
  if (!existsSync(kernel)) throw new DiskImageError(`the tree has no kernel /boot/vmlinuz-${o.release}`);
  for (const platform of ['i386-pc', 'x86_64-efi']) {
    if (!existsSync(join(grubDir, platform, 'kernel.img'))) throw new DiskImageError(`GRUB ${platform} is not installed in ${grubDir}/${platform} (apt-get install ${platform === 'i386-pc' ? 'grub-pc-bin' : 'grub-efi-amd64-bin'})`);
  }
  if (process.getuid?.() !== 0) throw new DiskImageError('building a disk image needs root: mkfs.ext4 reads the tree through an overlay in a private mount namespace');
  const seed = o.seed ?? randomBytes(16).toString('hex');
  const rootFsUuid = derivedUuid(seed, 'root-filesystem');
  const espVolumeId = derivedFatVolumeId(seed);
  await mkdir(o.outDir, { recursive: true });
  const work = await mkdtemp(join(o.workDir ?? dirname(o.outDir), '.shoal-disk-'));
  const raw = join(o.outDir, DISK_RAW_FILE);
  const rawStaging = join(work, DISK_RAW_FILE);
  try {
    // The files the disk adds above the tree.
    const layer = join(work, 'layer');
    await mkdir(layer, { mode: 0o755 });
    await writeDiskFiles(layer, [
      { path: `/boot/initrd.img-${o.release}`, source: o.initrdPath },
      { path: '/boot/grub/grub.cfg', content: grubConfig({ title: o.title, release: o.release, rootFsUuid, espVolumeId, cmdline: o.cmdline }) },
      { path: '/etc/fstab', content: fstab(rootFsUuid, espVolumeId) },
      { path: '/etc/repart.d/50-shoal-root.conf', content: REPART_ROOT_CONFIG },
      ...(o.extraFiles ?? []),
    ]);
    await mkdir(join(layer, 'boot', 'efi'), { recursive: true, mode: 0o755 });
    await chmod(layer, 0o755);

    const tree = await measureTree(o.tree);
    const added = await measureTree(layer);
    const contentBytes = tree.bytes + added.bytes;
    const rootBytes = rootFsBytes(contentBytes, tree.entries + added.entries, o.slackBytes ?? 256 * MIB);
    const layout = planDiskLayout({ rootBytes, seed });
    progress(`disk: ${(contentBytes / MIB).toFixed(0)} MiB in ${tree.entries + added.entries} entries; root filesystem ${rootBytes / MIB} MiB, disk ${(layout.diskBytes / MIB).toFixed(0)} MiB`);

    // 1. The partition table, on an empty sparse file of the final size.
    const fd = await open(rawStaging, 'w');
    await fd.truncate(layout.diskBytes);
    await fd.close();
    await sfdisk(rawStaging, sfdiskScript(layout));

    // 2. The root filesystem, in place at its partition's offset (nodiscard: mke2fs must not punch the rest of the file).
    progress(`disk: mkfs.ext4 -d (the tree plus ${added.entries} added entries, ${rootBytes / MIB} MiB)`);
    const started = performance.now();
    const merged = join(work, 'merged');
    await mkdir(merged);
    await inMountNamespace(MKFS_SCRIPT, [
      o.tree,
      layer,
      merged,
      '-q',
      '-F',
      '-t',
      'ext4',
      // GRUB 2.06 cannot read ext4 with metadata_csum_seed (an incompat feature), whatever this host's mke2fs.conf says.
      '-O',
      '^metadata_csum_seed,^orphan_file',
      '-L',
      'root',
      '-U',
      rootFsUuid,
      '-N',
      String(rootFsInodes(rootBytes, tree.entries + added.entries)),
      '-E',
      `offset=${layout.root.startSector * SECTOR},nodiscard,root_owner=0:0,hash_seed=${derivedUuid(seed, 'root-hash-seed')}`,
      rawStaging,
      `${rootBytes / 1024}k`,
    ]);
    progress(`disk: root filesystem written in ${((performance.now() - started) / 1000).toFixed(0)} s`);

    // 3. The EFI system partition: FAT32 in place, GRUB's EFI image and the empty boot environment block copied in with mtools.
    const efi = join(work, 'BOOTX64.EFI');
    const early = join(work, 'early.cfg');
    await writeFile(early, grubEarlyConfig(rootFsUuid));
    await runTool('grub-mkimage', ['-O', 'x86_64-efi', '-d', join(grubDir, 'x86_64-efi'), '-o', efi, '-p', '/boot/grub', '-c', early, ...GRUB_MODULES_EFI]);
    // -s 1: mkfs.fat sizes clusters by the whole file, not the block count, and 8-sector clusters leave a 64 MiB FAT32 too few.
    // -h: the hidden sectors before the partition, as a partitioned disk's FAT records them.
    const espKib = String((layout.esp.sectors * SECTOR) / 1024);
    await runTool('mkfs.vfat', ['-F', '32', '-s', '1', '-h', String(layout.esp.startSector), '-n', 'EFI', '-i', espVolumeId, '--offset', String(layout.esp.startSector), rawStaging, espKib]);
    const espImage = `${rawStaging}@@${layout.esp.startSector * SECTOR}`;
    const mtoolsEnv = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
    // One directory per mmd: given both, mmd 4.0.33 fails on the second ("No directory slots").
    await runTool('mmd', ['-i', espImage, '::/EFI'], { env: mtoolsEnv });
    await runTool('mmd', ['-i', espImage, '::/EFI/BOOT'], { env: mtoolsEnv });
    await runTool('mcopy', ['-i', espImage, efi, '::/EFI/BOOT/BOOTX64.EFI'], { env: mtoolsEnv });
    const bootEnvFile = join(work, 'grubenv');
    const bootEnvBlock = grubEnvBlock();
    await writeFile(bootEnvFile, bootEnvBlock);
    await runTool('mmd', ['-i', espImage, `::${dirname(BOOT_ENV_PATH)}`], { env: mtoolsEnv });
    await runTool('mcopy', ['-i', espImage, bootEnvFile, `::${BOOT_ENV_PATH}`], { env: mtoolsEnv });
    const bootEnv = { offset: await espFileOffset(rawStaging, layout.esp.startSector * SECTOR, BOOT_ENV_PATH, bootEnvBlock, mtoolsEnv), size: bootEnvBlock.length };
    progress(`disk: ESP with EFI/BOOT/BOOTX64.EFI (${(await stat(efi)).size} bytes) and ${BOOT_ENV_PATH.slice(1)} at byte ${bootEnv.offset}`);

    // 4. BIOS: core.img in the BIOS boot partition, boot.img in the MBR pointing at it.
    const coreFile = join(work, 'core.img');
    await runTool('grub-mkimage', ['-O', 'i386-pc', '-d', join(grubDir, 'i386-pc'), '-o', coreFile, '-p', '/boot/grub', '-c', early, ...GRUB_MODULES_BIOS]);
    const coreImg = await readFile(coreFile);
    if (coreImg.length > layout.bios.sectors * SECTOR) throw new DiskImageError(`core.img is ${coreImg.length} bytes, more than the BIOS boot partition's ${layout.bios.sectors * SECTOR}`);
    const disk = await open(rawStaging, 'r+');
    try {
      const existing = Buffer.alloc(SECTOR);
      await disk.read(existing, 0, SECTOR, 0);
      const { mbr, core } = patchBiosBoot(await readFile(join(grubDir, 'i386-pc', 'boot.img')), existing, coreImg, layout.bios.startSector);
      await disk.write(core, 0, core.length, layout.bios.startSector * SECTOR);
      await disk.write(mbr, 0, SECTOR, 0);
    } finally {
      await disk.close();
    }
    progress(`disk: BIOS boot code (core.img ${coreImg.length} bytes at sector ${layout.bios.startSector})`);

    // 5. The image and its zstd copy, moved into place only when whole.
    await rename(rawStaging, raw);
    progress('disk: compressing (zstd -T0)');
    const zst = join(o.outDir, DISK_ZST_FILE);
    await runTool('zstd', ['-T0', '-q', '-f', raw, '-o', `${zst}.partial`]);
    await rename(`${zst}.partial`, zst);
    const info = async (path: string): Promise<DiskFileInfo> => ({ path, size: (await stat(path)).size, sha256: await sha256File(path) });
    const result = { raw: await info(raw), zst: await info(zst), layout, rootFsUuid, espVolumeId, contentBytes, bootEnv };
    progress(`disk: ${DISK_RAW_FILE} ${result.raw.size} bytes sha256:${result.raw.sha256}; ${DISK_ZST_FILE} ${result.zst.size} bytes sha256:${result.zst.sha256}`);
    return result;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The byte offset in the disk of a file on the FAT filesystem at `espOffset`: its first cluster from
 * its chain (mshowfat) and the data area's start from the boot sector. The ESP has 512-byte clusters
 * (mkfs.vfat -s 1), so a 1024-byte file spans two; a deploy writes it as one run of bytes, so the
 * chain must be a single run (mcopy on a fresh FAT allocates in order). The bytes found there must be
 * the file's `content`, which checks the arithmetic.
 */
async function espFileOffset(disk: string, espOffset: number, path: string, content: Buffer, env: NodeJS.ProcessEnv): Promise<number> {
  const chain = (await runTool('mshowfat', ['-i', `${disk}@@${espOffset}`, `::${path}`], { env })).trim();
  const run = /<(\d+)(?:-(\d+))?>$/.exec(chain);
  if (!run) throw new DiskImageError(`${path} on the ESP is not in one run of clusters: ${chain}`);
  const fd = await open(disk, 'r');
  try {
    const boot = Buffer.alloc(SECTOR);
    await fd.read(boot, 0, SECTOR, espOffset);
    const bytesPerSector = boot.readUInt16LE(0x0b);
    const sectorsPerCluster = boot.readUInt8(0x0d);
    const dataSector = boot.readUInt16LE(0x0e) + boot.readUInt8(0x10) * boot.readUInt32LE(0x24); // reserved sectors + FATs × FAT32 sectors per FAT
    const first = Number(run[1]);
    const clusters = Number(run[2] ?? run[1]) - first + 1;
    if (clusters * sectorsPerCluster * bytesPerSector < content.length) throw new DiskImageError(`${path} on the ESP has ${clusters} clusters, too few for ${content.length} bytes: ${chain}`);
    const offset = espOffset + (dataSector + (first - 2) * sectorsPerCluster) * bytesPerSector;
    const found = Buffer.alloc(content.length);
    await fd.read(found, 0, content.length, offset);
    if (!found.equals(content)) throw new DiskImageError(`${path} is not at byte ${offset} of the disk where its FAT chain ${chain} says`);
    return offset;
  } finally {
    await fd.close();
  }
}

async function sfdisk(file: string, script: string): Promise<void> {
  await runTool('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', '--wipe', 'never', file], { input: script });
}

// $1 tree, $2 upper, $3 work, $4 mount point, $5 kernel release, $6 where the initrd goes.
const INITRD_SCRIPT = `tree=$1 upper=$2 work=$3 merged=$4 release=$5 out=$6
mount -t overlay shoal-initrd -o "lowerdir=$tree,upperdir=$upper,workdir=$work" "$merged"
mount -t proc proc "$merged/proc"
mount -t sysfs sysfs "$merged/sys"
mount --rbind /dev "$merged/dev"
chroot "$merged" mkinitramfs -o /tmp/shoal-disk-initrd "$release"
cp "$merged/tmp/shoal-disk-initrd" "$out"`;

/**
 * The tree's own initramfs-tools initrd (MODULES=most: it must find a disk on hardware nobody
 * listed), made by chroot mkinitramfs on a private overlay of the tree and cached beside it as
 * `<tree>.disk-initrd-<release>.img`: the tree is read-only to us, and a changed tree is a new tree.
 */
export async function ensureDiskInitrd(tree: string, release: string, progress: (line: string) => void = () => {}): Promise<string> {
  const cached = `${tree}.disk-initrd-${release}.img`;
  if (existsSync(cached)) {
    progress(`disk: initrd ${release} from the cache`);
    return cached;
  }
  if (!existsSync(join(tree, 'usr', 'sbin', 'mkinitramfs'))) throw new DiskImageError(`the tree has no /usr/sbin/mkinitramfs: a disk image needs initramfs-tools in the recipe`);
  const work = await mkdtemp(`${tree}.disk-initrd-work-`);
  try {
    for (const d of ['upper', 'work', 'merged']) await mkdir(join(work, d));
    progress(`disk: making the initrd for a disk root (chroot mkinitramfs ${release}, MODULES=most; minutes on a slow machine, then cached)`);
    const started = performance.now();
    const staging = join(work, 'initrd.img');
    await inMountNamespace(INITRD_SCRIPT, [tree, join(work, 'upper'), join(work, 'work'), join(work, 'merged'), release, staging]);
    await rename(staging, cached);
    progress(`disk: initrd ${(await stat(cached)).size} bytes in ${((performance.now() - started) / 1000).toFixed(0)} s`);
    return cached;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
