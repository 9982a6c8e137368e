// Unit tests of the disk image's parts (layout, sfdisk script, GRUB configs, fstab, the BIOS boot
// sector patch, tool errors), then a whole image built from a tiny tree and read back with the
// tools themselves (sfdisk --json, debugfs and e2fsck at the root's offset, mtools on the ESP).
// The build needs root (its overlay) and the disk tools, and skips with the reason otherwise.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requirements, skipUnless } from '../test/support/environment.js';
import {
  BOOT_ENV_PATH,
  buildDiskImage,
  derivedFatVolumeId,
  derivedUuid,
  DiskImageError,
  fatUuid,
  fstab,
  grubConfig,
  grubEarlyConfig,
  grubEnvBlock,
  GRUB_MODULES_BIOS,
  GRUB_MODULES_EFI,
  PARTITION_TYPES,
  patchBiosBoot,
  planDiskLayout,
  rootFsBytes,
  rootFsInodes,
  runTool,
  SECTOR,
  sfdiskScript,
} from './disk-image.js';

const MIB = 1024 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('disk identities', () => {
  it('derives version-4 shaped UUIDs: the same seed and role give the same one, any other differs', () => {
    const a = derivedUuid('tree-key', 'root-filesystem');
    expect(a).toMatch(UUID);
    expect(derivedUuid('tree-key', 'root-filesystem')).toBe(a);
    expect(derivedUuid('tree-key', 'disk')).not.toBe(a);
    expect(derivedUuid('other-key', 'root-filesystem')).not.toBe(a);
    expect(derivedFatVolumeId('tree-key')).toMatch(/^[0-9A-F]{8}$/);
  });
});

describe('planDiskLayout', () => {
  it('puts BIOS boot, ESP and root in that order, MiB-aligned, not overlapping, with a MiB for the backup GPT', () => {
    const l = planDiskLayout({ rootBytes: 1000 * MIB + 1, seed: 's' });
    const parts = [l.bios, l.esp, l.root];
    expect(parts.map((p) => p.number)).toEqual([1, 2, 3]);
    expect(parts.map((p) => p.type)).toEqual([PARTITION_TYPES.biosBoot, PARTITION_TYPES.esp, PARTITION_TYPES.rootX86_64]);
    for (const p of parts) {
      expect(p.startSector % 2048).toBe(0);
      expect(p.sectors % 2048).toBe(0);
      expect(p.uuid).toMatch(UUID);
    }
    for (let i = 1; i < parts.length; i++) expect(parts[i]!.startSector).toBe(parts[i - 1]!.startSector + parts[i - 1]!.sectors);
    expect(l.bios.startSector).toBe(2048);
    expect(l.esp.sectors * SECTOR).toBe(64 * MIB);
    expect(l.root.sectors * SECTOR).toBe(1001 * MIB); // rounded up to the MiB
    expect(l.diskBytes).toBe((l.root.startSector + l.root.sectors) * SECTOR + MIB);
    expect(new Set(parts.map((p) => p.uuid)).size).toBe(3);
  });

  it('refuses an ESP too small for FAT32', () => {
    expect(() => planDiskLayout({ rootBytes: MIB, seed: 's', espBytes: 16 * MIB })).toThrow(DiskImageError);
  });

  it('sizes the root as the content plus metadata and slack, in 64 MiB steps, and never with fewer inodes than the tree needs', () => {
    const size = rootFsBytes(800 * MIB, 21000, 256 * MIB);
    expect(size % (64 * MIB)).toBe(0);
    expect(size).toBeGreaterThan(800 * MIB + 256 * MIB + 64 * MIB);
    expect(size).toBeLessThan(800 * MIB * 1.15 + 256 * MIB + 128 * MIB);
    expect(rootFsBytes(800 * MIB, 21000, 0)).toBeLessThan(size);
    expect(rootFsInodes(size, 21000)).toBe(Math.ceil(size / 16384));
    expect(rootFsInodes(64 * MIB, 21000)).toBe(31500);
  });
});

describe('sfdiskScript', () => {
  it('names every partition with its start, size, type and UUID, and the disk GUID', () => {
    const l = planDiskLayout({ rootBytes: 100 * MIB, seed: 's' });
    const script = sfdiskScript(l);
    expect(script).toContain('label: gpt\n');
    expect(script).toContain(`label-id: ${l.diskUuid}\n`);
    expect(script).toContain(`start=${l.root.startSector}, size=${l.root.sectors}, type=${PARTITION_TYPES.rootX86_64}, uuid=${l.root.uuid}, name="root"`);
    expect(script.match(/^start=/gm)).toHaveLength(3);
  });
});

describe('GRUB and fstab', () => {
  const uuid = derivedUuid('s', 'root-filesystem');
  it('the early config finds the root by filesystem UUID and reads its /boot/grub/grub.cfg', () => {
    expect(grubEarlyConfig(uuid)).toBe(`search --no-floppy --fs-uuid --set=root ${uuid}\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n`);
  });
  it('grub.cfg boots the tree kernel with root=UUID=… ro, the recipe cmdline and the deploy’s $shoal_args, on the serial console', () => {
    const cfg = grubConfig({ title: "debian@12 'x'", release: '6.1.0-50-amd64', rootFsUuid: uuid, espVolumeId: 'ABCD1234', cmdline: 'console=ttyS0 quiet' });
    expect(cfg).toContain(`  linux /boot/vmlinuz-6.1.0-50-amd64 root=UUID=${uuid} ro console=ttyS0 quiet $shoal_args\n`);
    expect(cfg).toContain('  initrd /boot/initrd.img-6.1.0-50-amd64\n');
    expect(cfg).toContain("menuentry 'debian@12 x' {");
    expect(cfg).toMatch(/^terminal_output serial console$/m);
  });
  it('grub.cfg loads only shoal_args from the ESP’s environment block, found by the ESP’s volume id, before the linux line', () => {
    const cfg = grubConfig({ title: 't', release: '1.2.3', rootFsUuid: uuid, espVolumeId: 'ABCD1234', cmdline: '' });
    const loadEnv = '  if search --no-floppy --fs-uuid --set=esp ABCD-1234; then\n    load_env --file ($esp)/shoal/grubenv shoal_args\n  fi\n';
    expect(cfg).toContain(loadEnv);
    expect(cfg.indexOf(loadEnv)).toBeLessThan(cfg.indexOf('  linux '));
    expect(cfg).toContain(`  linux /boot/vmlinuz-1.2.3 root=UUID=${uuid} ro $shoal_args\n`);
    for (const modules of [GRUB_MODULES_BIOS, GRUB_MODULES_EFI]) expect(modules).toContain('loadenv');
  });
  it('fstab mounts the root by UUID with x-systemd.growfs, and the ESP by its volume id', () => {
    const text = fstab(uuid, 'ABCD1234');
    expect(text).toContain(`UUID=${uuid} / ext4 defaults,x-systemd.growfs 0 1\n`);
    expect(text).toContain('UUID=ABCD-1234 /boot/efi vfat umask=0077,nofail 0 2\n');
  });
});

describe('grubEnvBlock', () => {
  it('is 1024 bytes: GRUB’s header line, a line per variable, then # to the end', () => {
    const empty = grubEnvBlock();
    expect(empty.length).toBe(1024);
    expect(empty.toString()).toBe('# GRUB Environment Block\n' + '#'.repeat(1024 - 25));
    const set = grubEnvBlock({ shoal_args: 'shoal.node=n1 shoal.url=http://10.0.0.1:8080' });
    expect(set.length).toBe(1024);
    expect(set.toString()).toMatch(/^# GRUB Environment Block\nshoal_args=shoal\.node=n1 shoal\.url=http:\/\/10\.0\.0\.1:8080\n#+$/);
  });
  it('refuses what GRUB would escape or what does not fit', () => {
    expect(() => grubEnvBlock({ shoal_args: 'a\nb' })).toThrow(DiskImageError);
    expect(() => grubEnvBlock({ shoal_args: 'a\\b' })).toThrow(DiskImageError);
    expect(() => grubEnvBlock({ shoal_args: 'x'.repeat(1000) })).toThrow(/more than 1024/);
  });
  it.skipIf(!requirements({ commands: ['grub-editenv'] }).ok)('is read by grub-editenv as GRUB reads it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-grubenv-'));
    try {
      const file = join(dir, 'grubenv');
      writeFileSync(file, grubEnvBlock());
      expect(execFileSync('grub-editenv', [file, 'list'], { encoding: 'utf8' })).toBe('');
      writeFileSync(file, grubEnvBlock({ shoal_args: 'shoal.node=n1 shoal.token=t' }));
      expect(execFileSync('grub-editenv', [file, 'list'], { encoding: 'utf8' })).toBe('shoal_args=shoal.node=n1 shoal.token=t\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('patchBiosBoot', () => {
  const bootImg = () => {
    const b = Buffer.alloc(512, 0xcc);
    b.writeUInt16LE(0xaa55, 510);
    return b;
  };
  const pmbr = () => {
    const m = Buffer.alloc(512);
    m.fill(0x11, 0x03, 0x5a); // a BPB to keep
    m.fill(0x22, 0x1b8, 0x1fe); // the disk signature and protective partition entry
    m.writeUInt16LE(0xaa55, 510);
    return m;
  };
  const coreImg = (bytes: number) => {
    const c = Buffer.alloc(bytes, 0x33);
    c.writeBigUInt64LE(2n, 500);
    c.writeUInt16LE(0, 508);
    c.writeUInt16LE(0x820, 510);
    return c;
  };

  it('points boot.img at core.img, keeps the partition table, and makes core.img load its own other sectors', () => {
    const { mbr, core } = patchBiosBoot(bootImg(), pmbr(), coreImg(512 * 300 + 7), 2048);
    expect(mbr.readBigUInt64LE(0x5c)).toBe(2048n);
    expect(mbr.subarray(0x1b8, 0x1fe).equals(Buffer.alloc(0x1fe - 0x1b8, 0x22))).toBe(true);
    expect(mbr.subarray(0x03, 0x5a).equals(Buffer.alloc(0x5a - 0x03, 0x11))).toBe(true);
    expect([mbr[0x66], mbr[0x67]]).toEqual([0x90, 0x90]);
    expect(mbr.readUInt16LE(510)).toBe(0xaa55);
    expect(mbr[0]).toBe(0xcc); // boot.img's own code stays
    expect(core.length).toBe(301 * 512); // padded to whole sectors
    expect(core.readBigUInt64LE(500)).toBe(2049n);
    expect(core.readUInt16LE(508)).toBe(300);
    expect(core.readUInt16LE(510)).toBe(0x820);
  });

  it('refuses a disk with no MBR and a core.img with no diskboot blocklist', () => {
    expect(() => patchBiosBoot(bootImg(), Buffer.alloc(512), coreImg(2048), 2048)).toThrow(/no protective MBR/);
    const notCore = coreImg(2048);
    notCore.writeUInt16LE(0, 510);
    expect(() => patchBiosBoot(bootImg(), pmbr(), notCore, 2048)).toThrow(/no i386-pc diskboot blocklist/);
  });

  it.skipIf(!existsSync('/usr/lib/grub/i386-pc/boot.img') || !requirements({ commands: ['grub-mkimage'] }).ok)('takes the boot.img and core.img of Debian’s GRUB', () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-core-'));
    try {
      execFileSync('grub-mkimage', ['-O', 'i386-pc', '-d', '/usr/lib/grub/i386-pc', '-o', join(dir, 'core.img'), '-p', '/boot/grub', 'biosdisk', 'part_gpt', 'ext2']);
      const core = readFileSync(join(dir, 'core.img'));
      const patched = patchBiosBoot(readFileSync('/usr/lib/grub/i386-pc/boot.img'), pmbr(), core, 2048);
      expect(patched.core.readUInt16LE(508)).toBe(Math.ceil(core.length / 512) - 1);
      expect(patched.core.subarray(512, core.length).equals(core.subarray(512))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('runTool', () => {
  it('names a missing tool and its package', async () => {
    await expect(runTool('zstd-no-such-tool', [])).rejects.toThrow(/zstd-no-such-tool is not installed/);
  });
  it('names a failing tool, its exit status and its stderr', async () => {
    await expect(runTool('sh', ['-c', 'echo first >&2; echo the reason >&2; exit 3'])).rejects.toThrow('sh failed (exit status 3): first | the reason');
  });
});

const buildSkip = skipUnless(
  'disk image build from a tiny tree',
  requirements({ root: true, commands: ['sfdisk', 'mkfs.ext4', 'debugfs', 'e2fsck', 'mkfs.vfat', 'mmd', 'mcopy', 'mdir', 'mtype', 'mshowfat', 'grub-mkimage', 'grub-fstest', 'grub-editenv', 'zstd', 'unshare'] }),
);

describe.skipIf(buildSkip || !existsSync('/usr/lib/grub/x86_64-efi/kernel.img') || !existsSync('/usr/lib/grub/i386-pc/boot.img'))('buildDiskImage from a tiny tree', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-disk-image-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const tinyTree = () => {
    const tree = join(dir, 'tree');
    for (const d of ['boot', 'etc', 'usr/bin']) mkdirSync(join(tree, d), { recursive: true });
    writeFileSync(join(tree, 'boot', 'vmlinuz-1.2.3-test'), 'not a kernel');
    writeFileSync(join(tree, 'etc', 'fstab'), '# UNCONFIGURED FSTAB\n');
    writeFileSync(join(tree, 'usr', 'bin', 'hello'), 'hello\n');
    return tree;
  };

  it('writes a GPT disk whose partitions hold what each firmware boots, and leaves the tree as it was', { timeout: 120_000 }, async () => {
    const tree = tinyTree();
    const before = execFileSync('find', [tree, '-printf', '%p %s %m\n'], { encoding: 'utf8' });
    const initrd = join(dir, 'initrd');
    writeFileSync(initrd, 'not an initrd');
    const lines: string[] = [];
    const r = await buildDiskImage({
      tree,
      release: '1.2.3-test',
      initrdPath: initrd,
      outDir: join(dir, 'out'),
      cmdline: 'console=ttyS0',
      title: 'tiny@1',
      seed: 'tiny',
      slackBytes: 0,
      extraFiles: [{ path: '/etc/motd', content: 'added\n', mode: 0o600 }],
      progress: (l) => lines.push(l),
    });
    expect(r.rootFsUuid).toBe(derivedUuid('tiny', 'root-filesystem'));
    expect(r.raw.size).toBe(r.layout.diskBytes);
    expect(r.raw.sha256).toBe(execFileSync('sha256sum', [r.raw.path], { encoding: 'utf8' }).split(' ')[0]);
    expect(r.zst.sha256).toBe(execFileSync('sha256sum', [r.zst.path], { encoding: 'utf8' }).split(' ')[0]);
    expect(execFileSync('sh', ['-c', 'zstd -dc "$1" | sha256sum', 'sh', r.zst.path], { encoding: 'utf8' }).split(' ')[0]).toBe(r.raw.sha256);
    expect(lines.some((l) => /disk\.raw \d+ bytes sha256:/.test(l))).toBe(true);
    expect(readdirSync(join(dir, 'out')).sort()).toEqual(['disk.raw', 'disk.raw.zst']);

    // The partition table, as sfdisk reads it back.
    const table = JSON.parse(execFileSync('sfdisk', ['--json', r.raw.path], { encoding: 'utf8' })).partitiontable;
    expect(table.label).toBe('gpt');
    expect(table.id).toBe(r.layout.diskUuid.toUpperCase());
    expect(table.partitions.map((p: { start: number; size: number; type: string; uuid: string }) => [p.start, p.size, p.type, p.uuid])).toEqual(
      [r.layout.bios, r.layout.esp, r.layout.root].map((p) => [p.startSector, p.sectors, p.type, p.uuid.toUpperCase()]),
    );

    // The root filesystem at its offset: clean, with its UUID, the tree and what the disk added.
    const root = `${r.raw.path}?offset=${r.layout.root.startSector * SECTOR}`;
    execFileSync('e2fsck', ['-fn', root], { stdio: 'pipe' });
    const debugfs = (request: string) => execFileSync('debugfs', ['-R', request, root], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    expect(debugfs('stats')).toMatch(new RegExp(`Filesystem UUID:\\s+${r.rootFsUuid}`));
    expect(debugfs('stats')).not.toMatch(/metadata_csum_seed|orphan_file/);
    expect(debugfs('cat /usr/bin/hello')).toBe('hello\n');
    expect(debugfs('cat /etc/fstab')).toBe(fstab(r.rootFsUuid, r.espVolumeId));
    expect(debugfs('cat /boot/initrd.img-1.2.3-test')).toBe('not an initrd');
    expect(debugfs('cat /boot/grub/grub.cfg')).toContain(`root=UUID=${r.rootFsUuid} ro console=ttyS0`);
    expect(debugfs('cat /etc/repart.d/50-shoal-root.conf')).toContain('Type=root');
    expect(debugfs('stat /etc/motd')).toMatch(/Mode:\s+0600/);
    expect(debugfs('ls -l /boot')).toContain('efi');

    // The ESP: FAT with GRUB's EFI image where firmware looks on removable media.
    const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
    const esp = `${r.raw.path}@@${r.layout.esp.startSector * SECTOR}`;
    expect(execFileSync('mdir', ['-i', esp, '-b', '::/EFI/BOOT'], { encoding: 'utf8', env })).toContain('BOOTX64.EFI');
    const efi = execFileSync('mtype', ['-i', esp, '::/EFI/BOOT/BOOTX64.EFI'], { env });
    expect(efi.subarray(0, 2).toString()).toBe('MZ');

    // BIOS: boot.img in the MBR points at core.img in the BIOS boot partition, whose blocklist follows it.
    const disk = readFileSync(r.raw.path);
    expect(disk.readUInt16LE(510)).toBe(0xaa55);
    expect(disk.readBigUInt64LE(0x5c)).toBe(BigInt(r.layout.bios.startSector));
    expect(disk.readBigUInt64LE(r.layout.bios.startSector * SECTOR + 500)).toBe(BigInt(r.layout.bios.startSector + 1));
    expect(disk.subarray(0x1be + 4, 0x1be + 5)[0]).toBe(0xee); // the protective MBR entry survived

    expect(execFileSync('find', [tree, '-printf', '%p %s %m\n'], { encoding: 'utf8' })).toBe(before);
  });

  it('puts an empty GRUB environment block on the ESP at the reported offset, where a deploy’s block becomes the file GRUB loads', { timeout: 120_000 }, async () => {
    const initrd = join(dir, 'initrd-env');
    writeFileSync(initrd, 'not an initrd');
    const lines: string[] = [];
    const r = await buildDiskImage({ tree: tinyTree(), release: '1.2.3-test', initrdPath: initrd, outDir: join(dir, 'out-env'), cmdline: '', title: 'tiny@1', seed: 'tiny-env', slackBytes: 0, progress: (l) => lines.push(l) });
    const espStart = r.layout.esp.startSector * SECTOR;
    expect(r.bootEnv.size).toBe(1024);
    expect(r.bootEnv.offset % SECTOR).toBe(0);
    expect(r.bootEnv.offset).toBeGreaterThan(espStart);
    expect(r.bootEnv.offset + r.bootEnv.size).toBeLessThanOrEqual(espStart + r.layout.esp.sectors * SECTOR);
    expect(lines.some((l) => l.endsWith(` and shoal/grubenv at byte ${r.bootEnv.offset}`))).toBe(true);

    // The bytes at the offset are the empty block, and they are the ESP file's, as mtools and GRUB's own FAT driver find it.
    const readAt = () => {
      const fd = openSync(r.raw.path, 'r');
      try {
        const b = Buffer.alloc(r.bootEnv.size);
        readSync(fd, b, 0, b.length, r.bootEnv.offset);
        return b;
      } finally {
        closeSync(fd);
      }
    };
    expect(readAt().toString()).toBe('# GRUB Environment Block\n' + '#'.repeat(1024 - 25));
    const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
    const mtype = () => execFileSync('mtype', ['-i', `${r.raw.path}@@${espStart}`, `::${BOOT_ENV_PATH}`], { env });
    expect(mtype().equals(readAt())).toBe(true);
    expect(execFileSync('grub-fstest', [r.raw.path, 'blocklist', `(loop0,gpt2)${BOOT_ENV_PATH}`], { encoding: 'utf8' }).trim()).toBe(`${(r.bootEnv.offset - espStart) / SECTOR}+2`);

    // grub.cfg finds this ESP by its volume id and loads shoal_args from the file.
    const cfg = execFileSync('debugfs', ['-R', 'cat /boot/grub/grub.cfg', `${r.raw.path}?offset=${r.layout.root.startSector * SECTOR}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    expect(cfg).toContain(`--set=esp ${fatUuid(r.espVolumeId)}; then\n    load_env --file ($esp)/shoal/grubenv shoal_args\n`);

    // A deploy's write at the offset is what the ESP file then holds.
    const deployed = grubEnvBlock({ shoal_args: 'shoal.node=n1' });
    const fd = openSync(r.raw.path, 'r+');
    writeSync(fd, deployed, 0, deployed.length, r.bootEnv.offset);
    closeSync(fd);
    expect(mtype().equals(deployed)).toBe(true);
    expect(execFileSync('grub-fstest', [r.raw.path, 'cat', `(loop0,gpt2)${BOOT_ENV_PATH}`]).equals(deployed)).toBe(true);
    const file = join(dir, 'grubenv-read-back');
    writeFileSync(file, mtype());
    expect(execFileSync('grub-editenv', [file, 'list'], { encoding: 'utf8' })).toBe('shoal_args=shoal.node=n1\n');
  });

  it('fails naming the missing kernel before writing anything', async () => {
    const out = join(dir, 'none');
    await expect(buildDiskImage({ tree: join(dir, 'tree'), release: '9.9.9', initrdPath: '/nonexistent', outDir: out, cmdline: '', title: 't' })).rejects.toThrow(
      'the tree has no kernel /boot/vmlinuz-9.9.9',
    );
    expect(existsSync(out)).toBe(false);
  });
});
