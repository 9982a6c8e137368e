// The disk image for real: debian@12's disk.raw (images/disk-image.ts), copied onto a 3 GiB disk,
// boots under QEMU on SeaBIOS (boot.img → core.img in the BIOS boot partition) and on OVMF
// (EFI/BOOT/BOOTX64.EFI), each through GRUB into the Debian initramfs and the image's systemd; on
// both, systemd-repart grows the root partition and systemd-growfs the filesystem to the end of
// the disk. A test-only unit added to the root prints the firmware and the sizes on the console and
// powers off. No network (-nic none), -snapshot, QEMU killed by its PID in teardown.
// Needs root, mmdebstrap (or a cached debian@12 tree), the disk tools and qemu-system-x86_64 with OVMF;
// SHOAL_IMAGE_TESTS=0 skips it.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requirements, skipUnless } from '../test/support/environment.js';
import { DEFAULT_CACHE_DIR } from './catalog.js';
import { buildRecipeDisk } from './disk-recipe.js';

const CACHE_DIR = process.env.SHOAL_IMAGE_CACHE ?? DEFAULT_CACHE_DIR;
const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const GROWN_DISK_BYTES = 3 * 1024 ** 3;
// Under TCG on a loaded 2-core machine: each boot reported in about 110 s when idle.
const BOOT_DEADLINE_MS = 10 * 60_000;
const MINUTE = 60_000;

function diskToolsRequirement() {
  const r = requirements({ root: true, commands: ['qemu-system-x86_64', 'sfdisk', 'mkfs.ext4', 'mkfs.vfat', 'mmd', 'mcopy', 'grub-mkimage', 'zstd', 'unshare', 'mmdebstrap'] });
  const missing = [OVMF_CODE, OVMF_VARS, '/usr/lib/grub/i386-pc/boot.img', '/usr/lib/grub/x86_64-efi/kernel.img'].filter((f) => !existsSync(f));
  if (missing.length === 0) return r;
  return { ok: false, reason: `${r.ok ? '' : `${r.reason}; `}missing ${missing.join(', ')} (apt-get install ovmf grub-pc-bin grub-efi-amd64-bin)` };
}

const skip =
  process.env.SHOAL_IMAGE_TESTS === '0'
    ? skipUnless('disk image boot', { ok: false, reason: 'SHOAL_IMAGE_TESTS=0' })
    : skipUnless('disk image boot', diskToolsRequirement());

// Runs as a oneshot after the root has grown: what booted, and the sizes, in one console line.
const REPORT_SCRIPT = `#!/bin/sh
root=$(findmnt -no SOURCE /)
fw=bios; [ -d /sys/firmware/efi ] && fw=uefi
echo "SHOAL-DISK-REPORT firmware=$fw root=$root rootfs=$(findmnt -bno SIZE /) partition=$(lsblk -bdno SIZE "$root") disk=$(lsblk -bdno SIZE "/dev/$(lsblk -no PKNAME "$root")")" > /dev/console
`;
const REPORT_UNIT = `[Unit]
Description=Shoal disk test: report the grown root on the console, then power off
After=systemd-growfs@-.service systemd-repart.service local-fs.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/shoal-disk-report
ExecStartPost=/bin/systemctl --no-block poweroff
[Install]
WantedBy=multi-user.target
`;

interface Boot {
  console: string;
  report: Record<string, string> | undefined;
  seconds: number;
}

/** Boots `disk` and waits (until `deadline` ms) for the report line; QEMU is killed by its PID whatever happens. */
async function boot(firmware: 'bios' | 'uefi', disk: string, dir: string): Promise<Boot> {
  const serial = join(dir, `${firmware}-console.log`);
  const args = ['-nographic', '-serial', `file:${serial}`, '-monitor', 'none', '-m', '1024', '-nic', 'none', '-snapshot', '-accel', 'tcg'];
  args.push('-drive', `file=${disk},format=raw,if=virtio`);
  if (firmware === 'uefi') {
    const vars = join(dir, 'OVMF_VARS_4M.fd');
    copyFileSync(OVMF_VARS, vars);
    args.push('-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`, '-drive', `if=pflash,format=raw,unit=1,file=${vars}`);
  }
  // TCG, as the lab's VMs (vm-test/harness/vm.ts): with this machine's /dev/kvm both guests hung
  // after GRUB loaded Linux, for the whole deadline, on both firmwares.
  const started = performance.now();
  const qemu: ChildProcess = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  qemu.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited = false;
  qemu.on('exit', () => (exited = true));
  const read = () => (existsSync(serial) ? readFileSync(serial, 'latin1') : '');
  try {
    let report: Record<string, string> | undefined;
    while (performance.now() - started < BOOT_DEADLINE_MS) {
      const line = /SHOAL-DISK-REPORT (.*)/.exec(read());
      if (line) {
        report = Object.fromEntries(line[1]!.trim().split(/\s+/).map((kv) => kv.split('=', 2) as [string, string]));
        break;
      }
      if (exited) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    const seconds = (performance.now() - started) / 1000;
    // The unit powers the VM off after its report: give it a few seconds, then it is killed below.
    for (let i = 0; i < 20 && report && !exited; i++) await new Promise((r) => setTimeout(r, 500));
    if (!report) console.log(`[disk-boot] ${firmware}: no report in ${seconds.toFixed(0)} s; QEMU ${exited ? `exited: ${stderr.trim()}` : 'still running'}; console tail:\n${read().slice(-3000)}`);
    return { console: read(), report, seconds };
  } finally {
    if (!exited && qemu.pid !== undefined) {
      process.kill(qemu.pid, 'SIGKILL');
      await new Promise((r) => qemu.once('exit', r));
    }
  }
}

describe.skipIf(skip)('debian@12 disk image boots from disk and grows its root', () => {
  let dir: string;
  let disk: Awaited<ReturnType<typeof buildRecipeDisk>>;
  let grown: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-disk-boot-'));
    const started = performance.now();
    disk = await buildRecipeDisk('debian@12', {
      cacheDir: CACHE_DIR,
      outDir: join(dir, 'out'),
      extraFiles: [
        { path: '/usr/local/sbin/shoal-disk-report', content: REPORT_SCRIPT, mode: 0o755 },
        { path: '/etc/systemd/system/shoal-disk-report.service', content: REPORT_UNIT },
        { path: '/etc/systemd/system/multi-user.target.wants/shoal-disk-report.service', symlink: '../shoal-disk-report.service' },
      ],
      progress: (l) => console.log(`[disk-boot] ${l}`),
    });
    console.log(`[disk-boot] disk.raw ${disk.raw.size} bytes (zst ${disk.zst.size}) built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    // The image as a node's bigger disk would hold it: the same bytes, then empty space.
    grown = join(dir, 'grown.raw');
    copyFileSync(disk.raw.path, grown);
    truncateSync(grown, GROWN_DISK_BYTES);
  }, 15 * MINUTE);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is small: its root partition is the tree plus slack, and the zstd copy is smaller still', () => {
    expect(disk.raw.size).toBe(disk.layout.diskBytes);
    expect(disk.raw.size).toBeLessThan(disk.contentBytes + 512 * 1024 * 1024);
    expect(disk.zst.size).toBeLessThan(disk.raw.size / 2);
    expect(disk.raw.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  // Both at once: each is a single-vCPU guest, and the suite stays well under five minutes.
  it.concurrent.each(['bios', 'uefi'] as const)('boots on %s through GRUB into systemd, and the root grows to the end of the disk', { timeout: 12 * MINUTE }, async (firmware) => {
    const b = await boot(firmware, grown, dir);
    console.log(`[disk-boot] ${firmware}: ${b.report ? `reported after ${b.seconds.toFixed(0)} s: ${JSON.stringify(b.report)}` : 'no report'}`);
    expect(b.console).toMatch(/Welcome to .*Debian GNU\/Linux 12/);
    expect(b.console).toContain(`Loading Linux ${disk.release}`);
    expect(b.report).toBeDefined();
    const r = b.report!;
    expect(r.firmware).toBe(firmware);
    // The root is the disk's third partition, found by the initramfs by filesystem UUID.
    expect(r.root).toBe('/dev/vda3');
    const original = disk.layout.root.sectors * 512;
    const grownPartition = GROWN_DISK_BYTES - disk.layout.root.startSector * 512 - 1024 * 1024; // less the backup GPT's MiB at most
    expect(Number(r.disk)).toBe(GROWN_DISK_BYTES);
    expect(Number(r.partition)).toBeGreaterThanOrEqual(grownPartition);
    expect(Number(r.partition)).toBeGreaterThan(original * 2);
    // The filesystem followed its partition (less its own metadata).
    expect(Number(r.rootfs)).toBeGreaterThan(Number(r.partition) * 0.9);
    expect(Number(r.rootfs)).toBeGreaterThan(original);
  });
});
