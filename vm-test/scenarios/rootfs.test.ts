// A root filesystem, end to end: one BIOS VM behind ipmi_sim network-boots compute@3, whose
// initramfs fetches rootfs.tar.gz from the appliance's image store, checks its sha256,
// switch_roots into it and runs the agent from there. The same VM then boots compute@2 (no root
// filesystem) from off the same way, so the cost of the root filesystem is measured in one run.
// A direct kernel boot with a wrong sha256 shows the check refuses the archive and retries; through
// the PXE path, a damaged root filesystem in the store shows as the boot's detail within a minute
// or two, not as a run.boot timeout minutes later.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CACHE_DIR, ensureImages, type BuiltImage } from '../../images/catalog.js';
import { skipUnless } from '../../test/support/environment.js';
import { IpmiBmc, Lab, LabAppliance, labRequirements, type NodeView, type Vm } from '../harness/index.js';

const skip = skipUnless('vm-test/scenarios/rootfs', labRequirements());

const MINUTE = 60_000;
const timings: Array<[string, number]> = [];
const ready = (image: BuiltImage) => (n: NodeView) => n.observed.run?.value === 'ready' && n.observed.image?.detail === image.manifest.digest;

describe.skipIf(skip)('a root filesystem the initramfs fetches and switches into', () => {
  let lab: Lab;
  let appliance: LabAppliance;
  let withRootfs: BuiltImage;
  let withoutRootfs: BuiltImage;
  let vm: Vm;

  beforeAll(async () => {
    [withoutRootfs, withRootfs] = (await ensureImages(['compute@2', 'compute@3'], DEFAULT_CACHE_DIR)) as [BuiltImage, BuiltImage];
    lab = Lab.create();
    appliance = await LabAppliance.start(lab, { images: [withoutRootfs, withRootfs] });
    // Three boots and two power-offs on a shared 2-core machine: the firmware watchdog is not for this.
    vm = lab.addVm({ name: 'r1', firmware: 'bios', maxRunMs: 30 * MINUTE });
    await appliance.enroll(vm, await IpmiBmc.start(lab, vm));
  }, 10 * MINUTE);

  afterAll(async () => {
    try {
      await appliance?.stop();
    } finally {
      lab?.close();
    }
    console.log(`rootfs timings:\n${timings.map(([step, ms]) => `  ${(ms / 1000).toFixed(1).padStart(7)} s  ${step}`).join('\n')}`);
  });

  type Ev = { rev: number; at: number; kind: string; facet: string; new: string | null };
  const events = async (afterRev: number) =>
    (await appliance.api.request<{ events: Ev[] }>('GET', `/events?node=r1&after=${afterRev}&limit=1000`)).events.filter((e) => e.kind === 'observed');
  const lastRev = async () => (await appliance.api.request<{ events: Ev[] }>('GET', '/events?node=r1&limit=1000')).events.at(-1)?.rev ?? 0;

  /** Powers r1 on with `image` from off; records desired → ready and, from the event log, kernel fetched → ready. */
  async function bootFromOff(image: BuiltImage, label: string): Promise<string> {
    const mark = vm.consoleMark();
    const rev = await lastRev();
    const started = performance.now();
    await appliance.setDesired('r1', { power: 'on', image: image.ref });
    await appliance.waitFor('r1', `ready on ${image.ref}`, ready(image), 8 * MINUTE);
    timings.push([`${label}: desired power=on → ready with ${image.ref}'s digest`, Math.round(performance.now() - started)]);
    const observed = await events(rev);
    const kernel = observed.findLast((e) => e.facet === 'boot' && e.new === 'kernel');
    const readyAt = observed.find((e) => e.facet === 'run' && e.new === 'ready');
    expect(kernel, 'boot=kernel observed').toBeDefined();
    expect(readyAt, 'run=ready observed').toBeDefined();
    timings.push([`${label}: kernel fetched → ready (appliance event log)`, readyAt!.at - kernel!.at]);
    // The agent prints that its hello was accepted after the appliance accepted it: the console can lag.
    await vm.waitForConsole(/shoal-agent: hello accepted/, { since: mark, timeoutMs: 60_000 });
    return vm.consoleSince(mark);
  }

  it('boots compute@3: fetched and checked, switched into, and the agent there reports compute@3\'s digest', async () => {
    expect(withRootfs.manifest.rootfs).toBeDefined();
    const console_ = await bootFromOff(withRootfs, 'with rootfs (compute@3, first boot of r1)');
    const url = `${appliance.advertiseUrl}/boot/${vm.mac}/rootfs`;
    const lines = [
      `shoal-init: image compute@3`,
      `shoal-init: fetching root filesystem ${url}`,
      `shoal-init: fetched ${withRootfs.manifest.rootfs!.size} bytes in`,
      'shoal-init: root filesystem sha256 verified',
      'shoal-init: switching root to /newroot',
      'shoal-init: switched root: running from the root filesystem of compute@3',
      'image compute@3 (built as compute@3)', // the agent's first line
      'shoal-agent: hello accepted',
    ];
    // Each in this order: the agent started only once, from the root filesystem.
    let from = 0;
    for (const line of lines) {
      const at = console_.indexOf(line, from);
      expect(at, `"${line}" after offset ${from} of the console:\n${console_.slice(-3000)}`).toBeGreaterThanOrEqual(from);
      from = at + line.length;
    }
    expect(console_.match(/shoal-agent: node /g)).toHaveLength(1);
    const fetched = /shoal-init: fetched (\d+) bytes in ([\d.]+)s/.exec(console_);
    console.log(`[rootfs] ${fetched![1]} bytes fetched by busybox wget in ${fetched![2]} s of guest time`);
    const node = await appliance.node('r1');
    expect(node.observed.image?.detail).toBe(withRootfs.manifest.digest);
    expect(withRootfs.manifest.digest).not.toBe(withoutRootfs.manifest.digest);
  }, 10 * MINUTE);

  it('powers off from the root filesystem: the power button (acpid started again there) shuts it down', async () => {
    const mark = vm.consoleMark();
    await appliance.setDesired('r1', { power: 'off' });
    await appliance.waitFor('r1', 'off', (n) => n.observed.power?.value === 'off' && n.phase === 'converged', 4 * MINUTE);
    await vm.waitUntilOff(30_000);
    expect(vm.consoleSince(mark)).toMatch(/power button pressed; powering off/);
  }, 6 * MINUTE);

  it('the baseline: the same VM from off to ready on compute@2, which has no root filesystem', async () => {
    expect(withoutRootfs.manifest.rootfs).toBeUndefined();
    const console_ = await bootFromOff(withoutRootfs, 'without rootfs (compute@2)');
    expect(console_).toMatch(/shoal-init: image compute@2/);
    expect(console_).not.toMatch(/root filesystem|switch/);
    expect(console_).toMatch(/shoal-agent: hello accepted/);
    // No cloud-init in a busybox image: the agent named the node from its NoCloud meta-data, and
    // reported the configuration digest it read there, which the appliance finds current.
    expect(console_).toMatch(/shoal-agent: hostname r1 \(the node's configuration: r1\)/);
    expect((await appliance.node('r1')).observed.config?.value).toBe('current');
  }, 10 * MINUTE);

  it('a root filesystem whose sha256 does not match is refused, fetched again with a longer wait, and never switched into', async () => {
    // Off first: two VMs at once would only slow each other down.
    await appliance.setDesired('r1', { power: 'off' });
    await appliance.waitFor('r1', 'off', (n) => n.observed.power?.value === 'off' && n.phase === 'converged', 4 * MINUTE);
    const bad = lab.addVm({ name: 'r2', firmware: 'bios', noReboot: true, maxRunMs: 10 * MINUTE });
    const wrong = '0'.repeat(64);
    await bad.start({
      kernel: withRootfs.kernelPath,
      initrd: withRootfs.initrdPath,
      append: `${withRootfs.manifest.cmdline} shoal.url=${appliance.advertiseUrl} shoal.node=r2 shoal.token=none shoal.rootfs=${appliance.advertiseUrl}/images/compute/3/rootfs.tar.gz shoal.rootfs_sha256=${wrong}`,
    });
    await bad.waitForConsole(new RegExp(`root filesystem has sha256 ${withRootfs.manifest.rootfs!.sha256}, expected ${wrong}`), { timeoutMs: 5 * MINUTE });
    await bad.waitForConsole(/trying the root filesystem again in 2s/, { timeoutMs: 30_000 });
    await bad.waitForConsole(/trying the root filesystem again in 4s/, { timeoutMs: 60_000 });
    expect(bad.console()).not.toMatch(/switching root|shoal-agent/);
    bad.kill();
  }, 8 * MINUTE);

  it('a root filesystem that never arrives through the PXE path shows as the boot\'s detail, with the reason the initramfs gave', async () => {
    // The store's copy of compute@3's archive, one byte flipped: served as it is, refused by the initramfs.
    const blob = join(appliance.dataDir, 'modules', 'images', 'blobs', 'sha256', withRootfs.manifest.rootfs!.sha256);
    const original = readFileSync(blob);
    const damaged = Buffer.from(original);
    damaged[damaged.length >> 1]! ^= 0xff;
    writeFileSync(blob, damaged);
    try {
      const mark = vm.consoleMark();
      const started = performance.now();
      await appliance.setDesired('r1', { power: 'on', image: withRootfs.ref });
      await appliance.waitFor('r1', 'the boot detail naming the failed root filesystem', (n) => /root filesystem not there yet: attempt 2, the last one failed \(sha256-mismatch\)/.test(n.observed.boot?.detail ?? ''), 4 * MINUTE);
      const ms = Math.round(performance.now() - started);
      timings.push(['damaged root filesystem: desired power=on → boot detail says why (run.boot waits up to 300 s)', ms]);
      expect(ms).toBeLessThan(300_000);
      expect((await appliance.node('r1')).observed.run?.value).not.toBe('ready');
      await vm.waitForConsole(/root filesystem has sha256 [0-9a-f]{64}, expected/, { since: mark, timeoutMs: MINUTE });
    } finally {
      writeFileSync(blob, original);
    }
    await appliance.setDesired('r1', { power: 'off' });
    await appliance.waitFor('r1', 'off', (n) => n.observed.power?.value === 'off', 4 * MINUTE);
  }, 10 * MINUTE);
});
