// The whole appliance against a virtual rack: QEMU VMs behind ipmi_sim and the Redfish emulator,
// network-booting from the appliance's own DHCP, TFTP and HTTP servers in a private namespace.
// The scenarios run in order on one rack (each starts where the previous one left the nodes), and
// each checks both the appliance's observed state and the VMs' own evidence (serial console,
// BMC logs). Every scenario prints its measured time.
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CACHE_DIR, ensureImages, type BuiltImage } from '../../images/catalog.js';
import { skipUnless } from '../../test/support/environment.js';
import { IpmiBmc, Lab, LabAppliance, labRequirements, RedfishBmc, type NodeView, type Vm } from '../harness/index.js';
import type { HardwareView } from '../../src/api/views.js';

const skip = skipUnless('vm-test/scenarios', labRequirements());

const timings: Array<[string, number]> = [];
async function timed<T>(what: string, action: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await action();
  } finally {
    timings.push([what, Math.round(performance.now() - started)]);
  }
}

/** PIDs of every QEMU started for this VM (its PID file on the command line): more than one would mean a BMC raced itself. */
function qemusOf(vm: Vm): string {
  const pids = readdirSync('/proc').filter((entry) => {
    if (!/^\d+$/.test(entry)) return false;
    try {
      return readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(vm.pidFile);
    } catch {
      return false; // exited while we looked
    }
  });
  return pids.join(', ') || 'none';
}

const MINUTE = 60_000;
/** Ready on the image, as the agent reported it: the digest of what the node really booted. */
const ready = (image: BuiltImage) => (n: NodeView) => n.observed.run?.value === 'ready' && n.observed.image?.detail === image.manifest.digest;
/** The scenarios run for many minutes; the lab's firmware watchdog is for VMs stuck in a boot loop, not these. */
const RUN_FOR = 45 * MINUTE;

interface Rack {
  vm: Vm;
  bmc: IpmiBmc | RedfishBmc;
}

describe.skipIf(skip)('the appliance and a virtual rack', () => {
  let lab: Lab;
  let appliance: LabAppliance;
  let imageA: BuiltImage;
  let imageB: BuiltImage;
  const rack: Record<string, Rack> = {};

  beforeAll(async () => {
    [imageA, imageB] = (await timed('build images compute@1 and compute@2', () => ensureImages(['compute@1', 'compute@2'], DEFAULT_CACHE_DIR))) as [BuiltImage, BuiltImage];
    lab = Lab.create();
    // A boot here takes 10 to 30 s. Scenario 6 powers n3 on just before the kill, so its firmware
    // asks for DHCP while no appliance answers and then sits at "no bootable device": run.boot's
    // deadline is what brings it back, and two minutes (not the default five) is still four boots long.
    appliance = await timed('appliance start in the lab', () => LabAppliance.start(lab, { images: [imageA, imageB], engine: { timeouts: { 'run.boot': 2 * MINUTE } } }));
    const bios = lab.addVm({ name: 'n1', firmware: 'bios', maxRunMs: RUN_FOR, disks: [{ sizeMb: 2048, serial: 'n1-disk0' }] });
    // OVMF's own PXE (no iPXE ROM on the NIC): the firmware → snponly.efi → iPXE chain.
    const uefi = lab.addVm({ name: 'n2', firmware: 'uefi', nicRom: 'none', maxRunMs: RUN_FOR, disks: [{ sizeMb: 1024, serial: 'n2-disk0' }, { sizeMb: 512, serial: 'n2-disk1' }] });
    const redfish = lab.addVm({ name: 'n3', firmware: 'bios', maxRunMs: RUN_FOR });
    rack.n1 = { vm: bios, bmc: await IpmiBmc.start(lab, bios) };
    rack.n2 = { vm: uefi, bmc: await IpmiBmc.start(lab, uefi) };
    rack.n3 = { vm: redfish, bmc: await RedfishBmc.start(lab, redfish) };
    for (const { vm, bmc } of Object.values(rack)) await appliance.enroll(vm, bmc, { labels: { role: 'compute' } });
  }, 10 * MINUTE);

  afterAll(async () => {
    try {
      await appliance?.stop();
    } finally {
      lab?.close();
    }
    console.log(`scenario timings:\n${timings.map(([step, ms]) => `  ${(ms / 1000).toFixed(1).padStart(7)} s  ${step}`).join('\n')}`);
  });

  /** The boot facet's values for a node, in the order the log recorded them. */
  async function bootStages(name: string, afterRev = 0): Promise<string[]> {
    const { events } = await appliance.api.request<{ events: Array<{ kind: string; facet: string; new: string | null }> }>(
      'GET',
      `/events?node=${name}&after=${afterRev}&limit=1000`,
    );
    return events.filter((e) => e.kind === 'observed' && e.facet === 'boot').map((e) => e.new ?? '');
  }

  it('1: three nodes go from powered off to run=ready on image A, with only their desired state set', async () => {
    await timed('scenario 1: three nodes off → ready on image A', async () => {
      await Promise.all(
        Object.entries(rack).map(async ([name, { vm, bmc }]) => {
          const started = performance.now();
          await appliance.setDesired(name, { power: 'on', image: 'compute@1' });
          await appliance.waitFor(name, 'ready on compute@1', ready(imageA), 8 * MINUTE);
          const kind = `${vm.firmware.toUpperCase()}, ${bmc instanceof IpmiBmc ? 'IPMI' : 'Redfish'}`;
          timings.push([`scenario 1: ${name} (${kind}) desired power=on → agent hello accepted`, Math.round(performance.now() - started)]);
        }),
      );
    });
    for (const [name, { vm }] of Object.entries(rack)) {
      // The VM's own word: the initramfs and agent of image A ran on it.
      expect(vm.console(), name).toMatch(/shoal-init: image compute@1/);
      // Every stage of the network boot was seen, in order.
      const stages = await bootStages(name);
      expect(stages.join(' → '), name).toMatch(/armed → dhcp → loader → kernel/);
    }
    expect((rack.n1!.bmc as IpmiBmc).chassisCommands()).toContain('set boot pxe');
    expect((rack.n3!.bmc as RedfishBmc).starts()[0]).toContain('BOOT_TARGET=Pxe');
    // OVMF took the snponly.efi path over TFTP before iPXE fetched the script over HTTP.
    expect(rack.n2!.vm.console()).toMatch(/iPXE/);
    // Each agent reported the machine QEMU made: its memory (less what firmware keeps), one vCPU, its disks by serial.
    for (const [name, { vm }] of Object.entries(rack)) {
      const { hardware } = await appliance.api.request<HardwareView>('GET', `/nodes/${name}/hardware`);
      expect(hardware.system.vendor, name).toBe('QEMU');
      expect(hardware.firmware, name).toBe(vm.firmware);
      expect(hardware.cpu, name).toMatchObject({ sockets: 1, cores: 1, threads: 1 });
      expect(hardware.nics.map((n) => [n.mac, n.driver]), name).toEqual([[vm.mac, 'virtio_net']]);
      expect(hardware.memoryBytes / (vm.memoryMb * 1024 * 1024), name).toBeGreaterThan(0.7);
      expect(hardware.memoryBytes, name).toBeLessThanOrEqual(vm.memoryMb * 1024 * 1024);
      expect(hardware.disks.map((d) => [d.serial, d.sizeBytes]), name).toEqual(vm.disks.map((d) => [d.serial, d.sizeMb * 1024 * 1024]));
    }
  }, 10 * MINUTE);

  it('2: changing n1\'s desired image reprovisions it to image B; the digest it reports changes', async () => {
    const { vm } = rack.n1!;
    const mark = vm.consoleMark();
    const before = await appliance.node('n1');
    await timed('scenario 2: reprovision n1 A → B (drain, reboot, network boot, hello)', async () => {
      await appliance.setDesired('n1', { image: 'compute@2' });
      await appliance.waitFor('n1', 'ready on compute@2', ready(imageB), 6 * MINUTE);
    });
    expect(before.observed.image?.detail).toBe(imageA.manifest.digest);
    expect(imageB.manifest.digest).not.toBe(imageA.manifest.digest);
    await vm.waitForConsole(/shoal-init: image compute@2/, { since: mark, timeoutMs: 1_000 });
    // The old boot was drained before it went down.
    const { events } = await appliance.api.request<{ events: Array<{ kind: string; facet: string; new: string | null }> }>('GET', '/events?node=n1&limit=1000');
    const runs = events.filter((e) => e.kind === 'observed' && e.facet === 'run').map((e) => e.new);
    expect(runs.join(' ')).toMatch(/ready draining drained .*ready$/);
  }, 8 * MINUTE);

  it('3: desired power=off powers n3 off; desired boot=disk makes n2\'s next boot skip the network', async () => {
    await timed('scenario 3a: n3 power off', async () => {
      await appliance.setDesired('n3', { power: 'off' });
      await appliance.waitFor('n3', 'off', (n) => n.observed.power?.value === 'off' && n.phase === 'converged', 3 * MINUTE);
    });
    await rack.n3!.vm.waitUntilOff(10_000);
    // The BMC's soft off pressed the ACPI power button and the node shut itself down (no forced off).
    expect(rack.n3!.vm.console()).toMatch(/power button pressed; powering off/);

    const { vm, bmc } = rack.n2!;
    await timed('scenario 3b: n2 boot=disk, then power cycled', async () => {
      // Without an image: boot=disk with one installs it to the disk (disk-install.test.ts); without, it only makes the next boot local.
      await appliance.setDesired('n2', { boot: 'disk', image: null });
      await appliance.waitFor('n2', 'set to boot from disk', (n) => n.observed.boot?.value === 'disk' && n.phase === 'converged', 3 * MINUTE);
      await appliance.setDesired('n2', { power: 'off' });
      await appliance.waitFor('n2', 'off', (n) => n.observed.power?.value === 'off' && n.phase === 'converged', 3 * MINUTE);
    });
    const mark = vm.consoleMark();
    const commands = (bmc as IpmiBmc).chassisCommands().length;
    await appliance.setDesired('n2', { power: 'on' });
    await appliance.waitFor('n2', 'on', (n) => n.observed.power?.value === 'on' && n.phase === 'converged', 3 * MINUTE);
    // The BMC was told to boot from the disk, so the firmware no longer starts with the network.
    expect((bmc as IpmiBmc).chassisCommands().slice(commands)).toEqual(['set boot default', 'set power 1']);
    // This VM's disks are blank, so OVMF falls back to its network boot option; the appliance
    // then hands iPXE a script that exits, and neither the image nor any boot stage is served.
    await vm.waitForConsole(/booting from local disk/, { since: mark, timeoutMs: 3 * MINUTE });
    const node = await appliance.node('n2');
    expect(node.observed.boot?.value).toBe('disk');
    expect(vm.consoleSince(mark)).not.toMatch(/shoal-init/);
  }, 10 * MINUTE);

  it('4: n1 killed behind the appliance\'s back is seen gone and brought back; then hung (paused) is seen lost and recovered', async () => {
    const { vm } = rack.n1!;
    const events = async () => (await appliance.api.request<{ events: Array<{ kind: string; facet: string; new: string | null }> }>('GET', '/events?node=n1&limit=5000')).events;
    await timed('scenario 4a: n1 QEMU killed → seen off → back to ready', async () => {
      process.kill(vm.pid()!, 'SIGKILL');
      await appliance.waitFor('n1', 'seen powered off', (n) => n.observed.power?.value === 'off' || n.observed.run?.value === 'lost', 2 * MINUTE);
      await appliance.waitFor('n1', 'ready again on compute@2', ready(imageB), 5 * MINUTE);
    });
    const commandsBefore = (rack.n1!.bmc as IpmiBmc).chassisCommands().length;
    await timed('scenario 4b: n1 paused (hung, BMC still says on) → lost → power cycled → ready', async () => {
      const qmp = await vm.qmp();
      try {
        await qmp.execute('stop');
        // The QEMU that answers is the one the lab knows as n1, and it really stopped.
        expect((await qmp.queryStatus()).status).toBe('paused');
      } finally {
        qmp.close();
      }
      const paused = vm.pid();
      await appliance.waitFor('n1', `lost (QEMU ${paused} paused; QEMUs of n1 now: ${qemusOf(vm)})`, (n) => n.observed.run?.value === 'lost', 2 * MINUTE);
      await appliance.waitFor('n1', 'ready again on compute@2', ready(imageB), 5 * MINUTE);
    });
    const runs = (await events()).filter((e) => e.kind === 'observed' && e.facet === 'run').map((e) => e.new);
    expect(runs.join(' ')).toMatch(/lost .*ready$/);
    // A node that stopped answering is forced off: no power-button press it could not honour.
    expect((rack.n1!.bmc as IpmiBmc).chassisCommands().slice(commandsBefore)).toEqual(['set power 0', 'set boot pxe', 'set power 1']);
  }, 12 * MINUTE);

  it('5: a BMC with a wrong password: that node shows a clear error, the others stay converged', async () => {
    const vm = lab.addVm({ name: 'n4', firmware: 'bios', maxRunMs: RUN_FOR });
    const bmc = await IpmiBmc.start(lab, vm);
    rack.n4 = { vm, bmc };
    const node = await timed('scenario 5: wrong BMC password held failed with its reason', async () => {
      await appliance.enroll(vm, bmc, { password: 'not-the-password' });
      await appliance.setDesired('n4', { power: 'on', image: 'compute@1' });
      return appliance.waitFor('n4', 'held failed', (n) => n.phase === 'failed', 5 * MINUTE);
    });
    expect(node.reason).toMatch(/power\.probe failed \d+ times; last: .*(password|authenticat)/i);
    expect(vm.running).toBe(false);
    // The others are unaffected. (On a starved machine a node can miss heartbeats and be recovered
    // meanwhile, so they are waited for rather than sampled.)
    for (const name of ['n1', 'n2', 'n3']) await appliance.waitFor(name, 'converged', (n) => n.phase === 'converged', 3 * MINUTE);
    // Fixing the password and retrying releases it: the error was the password, nothing else.
    await appliance.api.request('PUT', '/nodes/n4', { name: 'n4', macs: [vm.mac], bmc: `ipmi://${bmc.user}@${bmc.host}:${bmc.port}`, bmcPassword: bmc.password, firmware: 'bios', ipv4: lab.ipv4(100 + lab.vms.indexOf(vm)) });
    await appliance.api.request('POST', '/nodes/n4/retry');
    await timed('scenario 5: n4 after the password is fixed → ready', () => appliance.waitFor('n4', 'ready on compute@1', ready(imageA), 5 * MINUTE));
  }, 12 * MINUTE);

  it('6: the appliance killed with SIGKILL mid-provision and started again: all nodes converge, nothing lost', async () => {
    type Ev = { rev: number; kind: string; facet: string; new: string | null; nodeId: string | null };
    await appliance.setDesired('n3', { power: 'on' });
    await appliance.setDesired('n1', { image: 'compute@1' });
    // Mid-provision: n3 powered on and booting, n1 draining or rebooting.
    await appliance.waitFor('n3', 'powered on and booting', (n) => n.observed.power?.value === 'on', 3 * MINUTE);
    const allEvents = async (): Promise<Ev[]> => {
      const events: Ev[] = [];
      for (;;) {
        const page = (await appliance.api.request<{ events: Ev[] }>('GET', `/events?after=${events.at(-1)?.rev ?? 0}&limit=10000`)).events;
        events.push(...page);
        if (page.length < 10000) return events;
      }
    };
    const before = await allEvents();
    appliance.kill();
    await timed('scenario 6: restart after SIGKILL → every node converged', async () => {
      await appliance.restart();
      for (const name of ['n1', 'n2', 'n3', 'n4']) await appliance.waitFor(name, 'converged', (n) => n.phase === 'converged', 6 * MINUTE);
    });
    const after = await allEvents();
    // Every event the API had served before the kill is still there, unchanged.
    expect(after.slice(0, before.length)).toEqual(before);
    expect((await appliance.node('n1')).observed.image?.detail).toBe(imageA.manifest.digest);
    expect((await appliance.node('n3')).observed.run?.value).toBe('ready');
  }, 12 * MINUTE);

  it('7: a VM whose MAC is not in the inventory PXE-boots and appears as a discovered node to enroll', async () => {
    const vm = lab.addVm({ name: 'n5', firmware: 'bios', maxRunMs: RUN_FOR });
    type Discovered = { mac: string; firmware?: string; ip?: string; requests: number };
    const discovered = await timed('scenario 7: unknown VM → discovered', async () => {
      await vm.start('pxe');
      await vm.waitForConsole(/is not enrolled; booting from local disk/, { timeoutMs: 3 * MINUTE });
      const { discovered: list } = await appliance.api.request<{ discovered: Discovered[] }>('GET', '/discovered');
      return list.find((m) => m.mac === vm.mac);
    });
    expect(discovered).toMatchObject({ mac: vm.mac, firmware: 'bios' });
    // Its address came from the dynamic pool (.200–.220 of the lab's /24), not a reservation.
    const host = Number(discovered!.ip?.split('.').at(-1));
    expect(discovered!.ip).toBe(lab.ipv4(host));
    expect(host).toBeGreaterThanOrEqual(200);
    expect(host).toBeLessThanOrEqual(220);
    vm.kill();
    // Enrolled with its BMC, it leaves the list and boots like any node.
    const bmc = await IpmiBmc.start(lab, vm);
    await appliance.enroll(vm, bmc);
    expect((await appliance.api.request<{ discovered: Discovered[] }>('GET', '/discovered')).discovered.map((m) => m.mac)).not.toContain(vm.mac);
    await appliance.setDesired('n5', { power: 'on', image: 'compute@2' });
    await timed('scenario 7: enrolled n5 → ready on image B', () => appliance.waitFor('n5', 'ready on compute@2', ready(imageB), 5 * MINUTE));
  }, 10 * MINUTE);

  it('the floor: the same VMs booted straight from -kernel/-initrd, timed to the agent\'s hello', async () => {
    for (const firmware of ['bios', 'uefi'] as const) {
      const vm = lab.addVm({ name: `floor-${firmware}`, firmware, noReboot: true });
      const started = performance.now();
      await vm.start({
        kernel: imageA.kernelPath,
        initrd: imageA.initrdPath,
        // The token is no real one: the floor ends where the agent sends its hello, not at its acceptance.
        append: `${imageA.manifest.cmdline} shoal.url=${appliance.advertiseUrl} shoal.node=floor-${firmware} shoal.token=floor`,
      });
      await vm.waitForConsole(/shoal-agent[^\n]*appliance http/, { timeoutMs: 3 * MINUTE });
      timings.push([`floor: ${firmware.toUpperCase()} VM, QEMU start → agent sends hello (direct kernel boot)`, Math.round(performance.now() - started)]);
      vm.kill();
    }
  }, 8 * MINUTE);
});
