// Install to disk, end to end, through the real PXE path: a BIOS VM with two blank virtio disks
// behind ipmi_sim, its root-device hint naming the system disk by serial, is set power=on boot=disk
// image=debian@12. The engine network-boots the deploy environment (deploy@1: the Shoal busybox
// initramfs with zstd), whose agent reports its disks, streams debian@12's disk.raw.zst from the
// image store onto the hinted disk, reads it back and checks its sha256, and writes the node's boot
// arguments into the disk's GRUB environment block; the engine then makes the next boot go to disk
// and reboots the node, which goes through PXE again (iPXE hands over to the disk), GRUB and the
// installed Debian, whose agent says hello with the bootstrap the write handed it and debian@12's
// digest; reset by nobody's plan, it says hello again with the bootstrap it was given for its next
// boot from disk. Then disk=erased boots the deploy environment again and wipes the disk: the host reads
// the VM's disk file back and finds no partition table. Timed from the desired change.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, openSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CACHE_DIR, ensureImages, type BuiltImage } from '../../images/catalog.js';
import { buildRecipeDisk } from '../../images/disk-recipe.js';
import { addDiskToImageDir } from '../../images/image-disk.js';
import { requirements, skipUnless } from '../../test/support/environment.js';
import { IpmiBmc, Lab, LabAppliance, labRequirements, type Vm } from '../harness/index.js';

const MINUTE = 60_000;
const lab_ = labRequirements();
const tools = requirements({ commands: ['mmdebstrap', 'zstd', 'sfdisk', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'grub-mkimage'] });
const skip = skipUnless('vm-test/scenarios/disk-install', lab_.ok ? tools : lab_);

const timings: Array<[string, number]> = [];

/** The first `bytes` of a VM's disk file, as the host sees it. */
function head(path: string, bytes: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(bytes);
    readSync(fd, buffer, 0, bytes, 0);
    return buffer;
  } finally {
    closeSync(fd);
  }
}

describe.skipIf(skip)('install to disk: deploy environment → verified write → boot from disk → erase', () => {
  let lab: Lab;
  let appliance: LabAppliance;
  let debian: BuiltImage;
  let vm: Vm;

  beforeAll(async () => {
    const [built, deploy] = (await ensureImages(['debian@12', 'deploy@1'], DEFAULT_CACHE_DIR)) as [BuiltImage, BuiltImage];
    lab = Lab.create();
    // The image as an operator would build it (build-disk --image), in the lab's copy of the cached image.
    const disk = await buildRecipeDisk('debian@12', { cacheDir: DEFAULT_CACHE_DIR, outDir: join(lab.dir, 'disk'), progress: (l) => console.log(`[disk-install] ${l}`) });
    const dir = join(lab.dir, 'debian@12');
    mkdirSync(dir);
    cpSync(built.dir, dir, { recursive: true });
    const manifest = await addDiskToImageDir(dir, { raw: disk.raw, stored: disk.zst, format: 'zstd', treeKey: disk.treeKey, bootEnv: disk.bootEnv });
    expect(manifest.disk?.bootEnv, 'the disk has a boot environment block for the node\'s boot arguments').toBeDefined();
    debian = { ...built, dir, manifest };
    appliance = await LabAppliance.start(lab, {
      images: [debian, deploy],
      engine: { timeouts: { 'run.boot': 20 * MINUTE, 'disk.write': 30 * MINUTE } },
    });
  }, 60 * MINUTE);

  afterAll(async () => {
    try {
      await appliance?.stop();
    } finally {
      lab?.close();
    }
    console.log(`disk-install timings:\n${timings.map(([step, ms]) => `  ${(ms / 1000).toFixed(1).padStart(7)} s  ${step}`).join('\n')}`);
  });

  it('writes debian@12 to the disk the hint picks, checks it, boots it, and its agent says hello with the digest', async () => {
    // Network first, then the disks, as a server installed to disk is set (a reboot of its OS must
    // reach the deploy environment when the appliance arms one); SeaBIOS then tries the first disk
    // only, so the system disk is vda, and the hint must still tell it from vdb.
    vm = lab.addVm({ name: 'i1', firmware: 'bios', memoryMb: 1024, maxRunMs: 40 * MINUTE, networkFirst: true, disks: [{ sizeMb: 3072, serial: 'SYS1' }, { sizeMb: 3072, serial: 'DATA1' }] });
    await appliance.enroll(vm, await IpmiBmc.start(lab, vm));
    // Two disks: without the hint the deploy would refuse to guess.
    await appliance.api.request('PUT', '/nodes/i1/config', { rootDevice: { serial: 'SYS1' } });
    const started = performance.now();
    await appliance.setDesired('i1', { power: 'on', boot: 'disk', image: debian.ref });
    const written = await appliance.waitFor('i1', 'disk=written', (n) => n.observed.disk?.value === 'written' || n.phase === 'failed', 30 * MINUTE);
    expect(written.observed.disk?.value, `${written.reason ?? ''} ${written.observed.disk?.detail ?? ''}`).toBe('written');
    timings.push(['desired boot=disk image=debian@12 → disk=written (deploy boot, stream, read-back)', Math.round(performance.now() - started)]);
    expect(written.observed.disk?.detail).toBe(`debian@12 sha256:${debian.manifest.disk!.rawSha256} on vda`);

    const installed = await appliance.waitFor('i1', 'ready on debian@12 from its disk', (n) => (n.observed.run?.value === 'ready' && n.observed.image?.detail === debian.manifest.digest) || n.phase === 'failed', 20 * MINUTE);
    expect(installed.phase, installed.reason).toBe('converged');
    timings.push(['desired boot=disk image=debian@12 → the installed OS says hello', Math.round(performance.now() - started)]);
    expect(installed.observed.boot?.value).toBe('disk');

    const events = (await appliance.api.request<{ events: Array<{ facet: string; kind: string; new: string }> }>('GET', '/events?node=i1&limit=10000')).events;
    const observed = (facet: string) => events.filter((e) => e.facet === facet && e.kind === 'observed').map((e) => e.new);
    expect(observed('disk')).toContain('writing');
    expect(observed('disk').at(-1)).toBe('written');
    const boots = observed('boot');
    expect(boots.indexOf('deployed')).toBeGreaterThan(boots.indexOf('deploy'));
    expect(boots.at(-1)).toBe('disk');
    const console_ = vm.consoleSince(0);
    expect(console_).toMatch(/shoal-agent: writing http:\/\/\S+ \(zstd, \d+ bytes\) to \S*vda/);
    expect(console_).toMatch(/Welcome to .*Debian GNU\/Linux 12/);
    // A reset nobody armed (as a power cut): the installed OS boots from its disk again and says
    // hello with the bootstrap its last boot was given for it, not the spent one of the write.
    await vm.waitForConsole(/shoal-agent: the next boot from disk has its bootstrap/, { timeoutMs: 5 * MINUTE });
    const mark = vm.consoleMark();
    const qmp = await vm.qmp();
    try {
      await qmp.execute('system_reset');
    } finally {
      qmp.close();
    }
    const resetAt = performance.now();
    await vm.waitForConsole(/shoal-agent: hello accepted/, { since: mark, timeoutMs: 10 * MINUTE });
    timings.push(['reset of the installed OS → its hello with the next bootstrap', Math.round(performance.now() - resetAt)]);
    expect(vm.consoleSince(mark)).not.toMatch(/rejected the bootstrap token/);
    await appliance.waitFor('i1', 'ready again on debian@12', (n) => n.observed.run?.value === 'ready' && n.observed.image?.detail === debian.manifest.digest, 5 * MINUTE);

    // The system disk holds a GPT now; the data disk is untouched.
    expect(head(vm.disks[0]!.path, 1024).subarray(512, 520).toString('latin1')).toBe('EFI PART');
    expect(head(vm.disks[1]!.path, 1024 * 1024).every((b) => b === 0)).toBe(true);
  }, 60 * MINUTE);

  it('disk=erased boots the deploy environment again and wipes the disk\'s partition tables', async () => {
    const started = performance.now();
    await appliance.setDesired('i1', { boot: null, image: null, disk: 'erased' });
    const erased = await appliance.waitFor('i1', 'disk=erased', (n) => n.observed.disk?.value === 'erased' || n.phase === 'failed', 20 * MINUTE);
    expect(erased.observed.disk?.value, `${erased.reason ?? ''} ${erased.observed.disk?.detail ?? ''}`).toBe('erased');
    timings.push(['desired disk=erased → disk=erased (drain, reboot, deploy boot, erase)', Math.round(performance.now() - started)]);
    expect(erased.observed.disk?.detail).toBe('vda (quick)');
    expect(head(vm.disks[0]!.path, 1024 * 1024).every((b) => b === 0), 'no MBR or GPT header left').toBe(true);
    // blkid finds no partition table on the host's view of the disk file either.
    const probe = (() => {
      try {
        return execFileSync('blkid', ['-p', vm.disks[0]!.path], { encoding: 'utf8' });
      } catch (error) {
        return `exit ${(error as { status?: number }).status}`;
      }
    })();
    expect(probe).toBe('exit 2');
  }, 30 * MINUTE);
});
