// Install to disk, end to end, through the real PXE path, on two BIOS VMs at once (i1, two blank
// virtio disks behind ipmi_sim, its root-device hint naming the system disk by serial; u1, one blank
// disk). (A UEFI VM set network-first is not here: OVMF, after iPXE's exit, went to its setup menu
// instead of the disk's boot entry; the UEFI disk boot itself is images/disk-boot.test.ts.) Desired power=on boot=disk image=X makes the engine network-boot the deploy
// environment (deploy@1: the Shoal busybox initramfs with zstd), whose agent reports its disks,
// streams X's disk from the image store onto the hinted disk, reads it back and checks its sha256,
// and writes the node's boot arguments into the disk's GRUB environment block; the engine then
// makes the next boot go to disk and reboots the node, which goes through PXE again (iPXE hands over
// to the disk), GRUB and the installed Debian, whose agent says hello with the bootstrap the write
// handed it and X's digest. Along the way:
// - i1 is reset in the middle of its write (a power cut): the disk is left unbootable and the
//   write is retried cleanly; later, reset by nobody's plan, its OS says hello again with the
//   bootstrap it was given for its next boot from disk;
// - u1 is first given an image whose stored file was corrupted after import: the write is
//   refused with the reason and the node is held; then it installs debian@12, and is reprovisioned
//   to golden@1, a qcow2 copy of that disk imported as a disk-only image;
// - disk=erased boots i1's deploy environment again and wipes the disk (the host finds no
//   partition table left);
// - with the appliance killed, u1 is reset and boots its OS from its disk again; the restarted
//   appliance hears its hello.
// Timed from each desired change.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, openSync, readSync, closeSync, writeSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CACHE_DIR, ensureImages, type BuiltImage } from '../../images/catalog.js';
import { grubEnvBlock } from '../../images/disk-image.js';
import { buildRecipeDisk } from '../../images/disk-recipe.js';
import { addDiskToImageDir } from '../../images/image-disk.js';
import { requirements, skipUnless } from '../../test/support/environment.js';
import { GPT_DISK_TOOLS, gptDisk } from '../../test/support/gpt-disk.js';
import { IpmiBmc, Lab, LabAppliance, labRequirements, type NodeView, type Vm } from '../harness/index.js';

const MINUTE = 60_000;
const MIB = 1024 * 1024;
const lab_ = labRequirements();
const tools = requirements({ commands: ['mmdebstrap', 'zstd', 'sfdisk', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'grub-mkimage', 'qemu-img', ...GPT_DISK_TOOLS] });
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

/** Flips the last byte of a file: for a zstd file, its content checksum. */
function flipLastByte(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    const at = fstatSync(fd).size - 1;
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, at);
    writeSync(fd, Buffer.from([byte[0]! ^ 0xff]), 0, 1, at);
  } finally {
    closeSync(fd);
  }
}

describe.skipIf(skip)('install to disk: deploy environment → verified write → boot from disk → reprovision, erase, boot without the appliance', () => {
  let lab: Lab;
  let appliance: LabAppliance;
  let debian: BuiltImage;
  let golden: string;
  let i1: Vm;
  let u1: Vm;

  const events = async (node: string) => (await appliance.api.request<{ events: Array<{ facet: string; kind: string; new: string; detail?: string }> }>('GET', `/events?node=${node}&limit=10000`)).events;
  const observed = async (node: string, facet: string) => (await events(node)).filter((e) => e.facet === facet && e.kind === 'observed').map((e) => e.new);
  /** Imports a file on the appliance host through the API's import job; returns the image's digest. */
  const importFile = async (source: string, name: string): Promise<string> => {
    const job = await appliance.api.request<{ id: string }>('POST', '/images/import', { source, name });
    let view: { state: string; error?: string; image?: { digest: string } } = { state: 'queued' };
    for (const started = performance.now(); view.state === 'queued' || view.state === 'running'; ) {
      if (performance.now() - started > 10 * MINUTE) throw new Error(`the import of ${source} did not finish in 10 min`);
      await new Promise((resolve) => setTimeout(resolve, 500));
      view = await appliance.api.request('GET', `/images/imports/${job.id}`);
    }
    expect(view.state, view.error).toBe('succeeded');
    return view.image!.digest;
  };
  const installed = (image: string, digest: string) => (n: NodeView) => (n.observed.run?.value === 'ready' && n.observed.image?.value === image && n.observed.image?.detail === digest) || n.phase === 'failed';

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
    // The same disk as a site's golden qcow2, to be imported as a disk-only image of its own.
    golden = join(lab.dir, 'golden.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', disk.raw.path, golden]);
    appliance = await LabAppliance.start(lab, {
      images: [debian, deploy],
      // Enough retries to see a clean one after a power cut, few enough that a corrupted image is held soon.
      engine: { retryBudget: 3, backoffBaseMs: 1000, timeouts: { 'run.boot': 20 * MINUTE, 'disk.write': 30 * MINUTE } },
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

  it('installs debian@12 on two VMs at once: a power cut mid-write is retried cleanly, a corrupted image is refused', async () => {
    // Network first, then the disks, as a server installed to disk is set (a reboot of its OS must
    // reach the deploy environment when the appliance arms one); SeaBIOS then tries the first disk
    // only, so the system disk is vda, and the hint must still tell it from vdb.
    i1 = lab.addVm({ name: 'i1', firmware: 'bios', memoryMb: 1024, maxRunMs: 60 * MINUTE, networkFirst: true, disks: [{ sizeMb: 3072, serial: 'SYS1' }, { sizeMb: 3072, serial: 'DATA1' }] });
    u1 = lab.addVm({ name: 'u1', firmware: 'bios', memoryMb: 1024, maxRunMs: 60 * MINUTE, networkFirst: true, disks: [{ sizeMb: 3072, serial: 'SYS2' }] });
    await appliance.enroll(i1, await IpmiBmc.start(lab, i1));
    await appliance.enroll(u1, await IpmiBmc.start(lab, u1));
    // Two disks: without the hint the deploy would refuse to guess.
    await appliance.api.request('PUT', '/nodes/i1/config', { rootDevice: { serial: 'SYS1' } });

    // A small disk-only image whose stored file is then damaged, as a disk fault in the store would.
    const small = gptDisk(join(lab.dir, 'corrupt.raw'), { esp: { 'shoal/grubenv': grubEnvBlock() }, root: randomBytes(4 * MIB) });
    await importFile(small, 'corrupt@1');
    const corrupt = await appliance.api.request<{ disk: { sha256: string } }>('GET', '/images/corrupt@1');
    flipLastByte(join(appliance.dataDir, 'modules', 'images', 'blobs', 'sha256', corrupt.disk.sha256));

    const first = (async () => {
      const started = performance.now();
      await appliance.setDesired('i1', { power: 'on', boot: 'disk', image: debian.ref });
      // The power cut: a reset once a few hundred MiB are on the disk.
      const writing = await appliance.waitFor('i1', '300 MiB written', (n) => (n.observed.disk?.value === 'writing' && Number(/^(\d+) of/.exec(n.observed.disk.detail ?? '')?.[1] ?? 0) >= 300) || n.phase === 'failed', 30 * MINUTE);
      expect(writing.observed.disk?.value, writing.reason).toBe('writing');
      const qmp = await i1.qmp();
      try {
        await qmp.execute('system_reset');
      } finally {
        qmp.close();
      }
      timings.push(['i1: desired → 300 MiB written, then reset (a power cut)', Math.round(performance.now() - started)]);
      const written = await appliance.waitFor('i1', 'disk=written', (n) => n.observed.disk?.value === 'written' || n.phase === 'failed', 30 * MINUTE);
      expect(written.observed.disk?.value, `${written.reason ?? ''} ${written.observed.disk?.detail ?? ''}`).toBe('written');
      expect(written.observed.disk?.detail).toBe(`debian@12 sha256:${debian.manifest.disk!.rawSha256} on vda`);
      timings.push(['i1: desired → disk=written after the retry', Math.round(performance.now() - started)]);
      const done = await appliance.waitFor('i1', 'ready on debian@12 from its disk', installed(debian.ref, debian.manifest.digest), 20 * MINUTE);
      expect(done.phase, done.reason).toBe('converged');
      timings.push(['i1: desired → the installed OS says hello', Math.round(performance.now() - started)]);
      const disk = await observed('i1', 'disk');
      // The cut write failed (the node went silent mid-write) and the retry wrote it whole.
      const retried = disk.slice(disk.lastIndexOf('failed'));
      expect(retried[0]).toBe('failed');
      expect(retried.at(-1)).toBe('written');
      expect(retried.slice(1, -1).length).toBeGreaterThan(0);
      expect(retried.slice(1, -1).every((value) => value === 'writing')).toBe(true);
    })();

    const second = (async () => {
      let started = performance.now();
      await appliance.setDesired('u1', { power: 'on', boot: 'disk', image: 'corrupt@1' });
      const refused = await appliance.waitFor('u1', 'the corrupted image held', (n) => n.phase === 'failed' || n.phase === 'converged', 30 * MINUTE);
      expect(refused.phase).toBe('failed');
      expect(refused.observed.disk?.value).toBe('failed');
      expect(refused.observed.disk?.detail).toMatch(/unpacking the zstd image failed|checksum mismatch/);
      timings.push(['u1: desired corrupt@1 → held, the write refused', Math.round(performance.now() - started)]);
      // Its first MiB stayed zero: nothing of it boots.
      expect(head(u1.disks[0]!.path, MIB).every((b) => b === 0)).toBe(true);
      started = performance.now();
      await appliance.setDesired('u1', { image: debian.ref });
      const done = await appliance.waitFor('u1', 'ready on debian@12 from its disk', installed(debian.ref, debian.manifest.digest), 30 * MINUTE);
      expect(done.phase, done.reason).toBe('converged');
      expect(done.observed.boot?.value).toBe('disk');
      timings.push(['u1: desired debian@12 → the installed OS says hello', Math.round(performance.now() - started)]);
    })();
    await Promise.all([first, second]);

    const boots = await observed('i1', 'boot');
    expect(boots.indexOf('deployed')).toBeGreaterThan(boots.indexOf('deploy'));
    expect(boots.at(-1)).toBe('disk');
    expect(i1.consoleSince(0)).toMatch(/shoal-agent: writing http:\/\/\S+ \(zstd, \d+ bytes\) to \S*vda/);
    for (const vm of [i1, u1]) expect(vm.consoleSince(0)).toMatch(/Welcome to .*Debian GNU\/Linux 12/);

    // A reset nobody armed: the installed OS boots from its disk again and says hello with the
    // bootstrap its last boot was given for it, not the spent one of the write.
    await i1.waitForConsole(/shoal-agent: the next boot from disk has its bootstrap/, { timeoutMs: 5 * MINUTE });
    const mark = i1.consoleMark();
    const qmp = await i1.qmp();
    try {
      await qmp.execute('system_reset');
    } finally {
      qmp.close();
    }
    const resetAt = performance.now();
    await i1.waitForConsole(/shoal-agent: hello accepted/, { since: mark, timeoutMs: 10 * MINUTE });
    timings.push(['i1: reset of the installed OS → its hello with the next bootstrap', Math.round(performance.now() - resetAt)]);
    expect(i1.consoleSince(mark)).not.toMatch(/rejected the bootstrap token/);
    await appliance.waitFor('i1', 'ready again on debian@12', (n) => n.observed.run?.value === 'ready' && n.observed.image?.detail === debian.manifest.digest, 5 * MINUTE);

    // The system disk holds a GPT now; the data disk is untouched.
    expect(head(i1.disks[0]!.path, 1024).subarray(512, 520).toString('latin1')).toBe('EFI PART');
    expect(head(i1.disks[1]!.path, MIB).every((b) => b === 0)).toBe(true);
  }, 90 * MINUTE);

  it('reprovisions u1 to golden@1, a qcow2 disk file imported as a disk-only image', async () => {
    const digest = await importFile(golden, 'golden@1');
    const started = performance.now();
    await appliance.setDesired('u1', { image: 'golden@1' });
    const done = await appliance.waitFor('u1', 'ready on golden@1 from its disk', installed('golden@1', digest), 30 * MINUTE);
    expect(done.phase, done.reason).toBe('converged');
    expect(done.observed.disk?.detail).toBe(`golden@1 sha256:${debian.manifest.disk!.rawSha256} on vda`);
    timings.push(['u1: desired golden@1 → its hello (deploy boot, write, disk boot)', Math.round(performance.now() - started)]);
    expect(await observed('u1', 'boot')).toContain('deployed');
  }, 40 * MINUTE);

  it('disk=erased boots the deploy environment again and wipes the disk\'s partition tables', async () => {
    const started = performance.now();
    await appliance.setDesired('i1', { boot: null, image: null, disk: 'erased' });
    const erased = await appliance.waitFor('i1', 'disk=erased', (n) => n.observed.disk?.value === 'erased' || n.phase === 'failed', 20 * MINUTE);
    expect(erased.observed.disk?.value, `${erased.reason ?? ''} ${erased.observed.disk?.detail ?? ''}`).toBe('erased');
    timings.push(['i1: desired disk=erased → disk=erased (drain, reboot, deploy boot, erase)', Math.round(performance.now() - started)]);
    expect(erased.observed.disk?.detail).toBe('vda (quick)');
    expect(head(i1.disks[0]!.path, MIB).every((b) => b === 0), 'no MBR or GPT header left').toBe(true);
    // blkid finds no partition table on the host's view of the disk file either.
    const probe = (() => {
      try {
        return execFileSync('blkid', ['-p', i1.disks[0]!.path], { encoding: 'utf8' });
      } catch (error) {
        return `exit ${(error as { status?: number }).status}`;
      }
    })();
    expect(probe).toBe('exit 2');
  }, 30 * MINUTE);

  it('boots u1 from its disk with the appliance gone, and the restarted appliance hears it', async () => {
    appliance.kill();
    const mark = u1.consoleMark();
    const qmp = await u1.qmp();
    try {
      await qmp.execute('system_reset');
    } finally {
      qmp.close();
    }
    const resetAt = performance.now();
    // No DHCP answers the firmware's network boot, so it falls to the disk, and systemd starts the
    // installed OS. (Its agent would wait for network-online.target, two minutes with no DHCP
    // server, before calling for the appliance: the appliance comes back as soon as systemd is up.)
    await u1.waitForConsole(/Welcome to .*Debian GNU\/Linux 12/, { since: mark, timeoutMs: 15 * MINUTE });
    timings.push(['u1: reset with no appliance → its OS up from disk (systemd\'s banner)', Math.round(performance.now() - resetAt)]);
    const sinceReset = u1.consoleSince(mark);
    const noNetworkBoot = sinceReset.indexOf('No more network devices');
    expect(noNetworkBoot, 'iPXE found no network boot').toBeGreaterThan(-1);
    expect(sinceReset.slice(noNetworkBoot)).toMatch(/Welcome to .*Debian GNU\/Linux 12/);
    await appliance.restart();
    await u1.waitForConsole(/shoal-agent: hello accepted/, { since: mark, timeoutMs: 10 * MINUTE });
    await appliance.waitFor('u1', 'ready on golden@1 again', (n) => n.observed.run?.value === 'ready' && n.observed.image?.value === 'golden@1', 5 * MINUTE);
  }, 30 * MINUTE);
});
