// Secure Boot, enforced by the firmware: a q35 VM with OVMF's Secure Boot build and Microsoft's keys
// enrolled network-boots compute@2 (Debian's signed kernel, unmodified) through the appliance's
// Secure Boot path: native UEFI PXE → shimx64.efi (Microsoft-signed) → grubx64.efi (Debian's signed
// grubnetx64) → the node's grub.cfg over TFTP → the kernel and initrd over TFTP → run=ready; the
// kernel says Secure Boot is on. The same image through the iPXE UEFI path (native PXE →
// snponly.efi → iPXE → HTTP) on ordinary OVMF is timed beside it. Then a Secure Boot VM that is not
// set to secureBoot gets snponly.efi, which is not signed: the firmware refuses to start it, and
// the appliance shows the boot stopped at the loader when run.boot runs out.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CACHE_DIR, ensureImages, type BuiltImage } from '../../images/catalog.js';
import { skipUnless } from '../../test/support/environment.js';
import { firmwareFiles, IpmiBmc, Lab, LabAppliance, labRequirements, type NodeView, type Vm } from '../harness/index.js';

const SECURE_BOOT_FILES = [firmwareFiles.ovmfSecureBootCode, firmwareFiles.ovmfMicrosoftVars, '/usr/lib/shim/shimx64.efi.signed', '/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed'];
const missing = SECURE_BOOT_FILES.filter((f) => !existsSync(f));
const lab_ = labRequirements();
const skip = skipUnless('vm-test/scenarios/secure-boot', missing.length === 0 ? lab_ : { ok: false, reason: `missing ${missing.join(', ')} (apt-get install ovmf shim-signed grub-efi-amd64-signed)` });

const MINUTE = 60_000;
/**
 * How long a boot may take before run.boot gives up: also how long the refused boot takes to show
 * as failed. A boot through either path takes about 25 s here under TCG.
 */
const RUN_BOOT_MS = 2 * MINUTE;
// pr_info lines such as "secureboot: Secure boot enabled" reach the console despite the image's `quiet`.
const KERNEL_ARGS = ['loglevel=7'];
const timings: Array<[string, number]> = [];

describe.skipIf(skip)('Secure Boot: shim and signed GRUB to a signed kernel, OVMF enforcing', () => {
  let lab: Lab;
  let appliance: LabAppliance;
  let image: BuiltImage;

  beforeAll(async () => {
    [image] = (await ensureImages(['compute@2'], DEFAULT_CACHE_DIR)) as [BuiltImage];
    expect(image.manifest.kernelSigned, 'compute@2 boots Debian\'s signed kernel').toBe(true);
    lab = Lab.create();
    appliance = await LabAppliance.start(lab, { images: [image], engine: { timeouts: { 'run.boot': RUN_BOOT_MS } } });
  }, 10 * MINUTE);

  afterAll(async () => {
    try {
      await appliance?.stop();
    } finally {
      lab?.close();
    }
    console.log(`secure-boot timings:\n${timings.map(([step, ms]) => `  ${(ms / 1000).toFixed(1).padStart(7)} s  ${step}`).join('\n')}`);
  });

  type Ev = { rev: number; at: number; kind: string; facet: string; new: string | null; detail?: string | null };
  const events = async (node: string) => (await appliance.api.request<{ events: Ev[] }>('GET', `/events?node=${node}&limit=1000`)).events.filter((e) => e.kind === 'observed');

  async function addNode(name: string, vmOptions: { secureBoot: boolean }, config: Record<string, unknown>): Promise<Vm> {
    const vm = lab.addVm({ name, firmware: 'uefi', nicRom: 'none', secureBoot: vmOptions.secureBoot, maxRunMs: 12 * MINUTE });
    await appliance.enroll(vm, await IpmiBmc.start(lab, vm));
    await appliance.api.request('PUT', `/nodes/${name}/config`, config);
    return vm;
  }

  /** From off to run=ready on the image; records the wall time and when each boot stage was seen. */
  async function bootToReady(vm: Vm, label: string): Promise<void> {
    const started = Date.now();
    await appliance.setDesired(vm.name, { power: 'on', image: image.ref });
    await appliance.waitFor(vm.name, `ready on ${image.ref}`, (n: NodeView) => n.observed.run?.value === 'ready' && n.observed.image?.detail === image.manifest.digest, RUN_BOOT_MS + 2 * MINUTE);
    timings.push([`${label}: desired power=on → run=ready`, Date.now() - started]);
    const seen = await events(vm.name);
    const stages = ['dhcp', 'loader', 'kernel'].map((stage) => [stage, seen.find((e) => e.facet === 'boot' && e.new === stage && e.at >= started)] as const);
    for (const [stage, event] of stages) {
      expect(event, `boot=${stage} observed for ${vm.name}`).toBeDefined();
      timings.push([`${label}: … boot=${stage} seen`, event!.at - started]);
    }
  }

  async function powerOff(vm: Vm): Promise<void> {
    await appliance.setDesired(vm.name, { power: 'off' });
    await appliance.waitFor(vm.name, 'off', (n) => n.observed.power?.value === 'off' && n.phase === 'converged', 4 * MINUTE);
    await vm.waitUntilOff(60_000);
  }

  it('boots a secureBoot node through shim and GRUB to run=ready, and its kernel says Secure Boot is enabled', async () => {
    const vm = await addNode('sb1', { secureBoot: true }, { secureBoot: true, kernelArgs: KERNEL_ARGS });
    await bootToReady(vm, 'Secure Boot (shim → GRUB → TFTP)');
    const console_ = vm.console();
    expect(console_).toMatch(/secureboot: Secure boot enabled/);
    // GRUB's echo from the node's grub.cfg, and never iPXE.
    expect(console_).toMatch(/Shoal: booting compute@2/);
    expect(console_).not.toMatch(/iPXE/);
    await powerOff(vm);
  }, 12 * MINUTE);

  it('the baseline: the same image through the iPXE UEFI path on ordinary OVMF', async () => {
    const vm = await addNode('px1', { secureBoot: false }, { kernelArgs: KERNEL_ARGS });
    await bootToReady(vm, 'iPXE UEFI (snponly.efi → iPXE → HTTP)');
    expect(vm.console()).toMatch(/iPXE/);
    expect(vm.console()).toMatch(/secureboot: Secure boot disabled/);
    await powerOff(vm);
  }, 12 * MINUTE);

  it('an unsigned loader (iPXE\'s snponly.efi) is refused by the firmware, and the boot shows as failed at the loader', async () => {
    // Secure Boot firmware, but the node is not set to secureBoot: it is offered snponly.efi.
    const vm = await addNode('bad1', { secureBoot: true }, { kernelArgs: KERNEL_ARGS });
    const started = Date.now();
    await appliance.setDesired(vm.name, { power: 'on', image: image.ref });
    // OVMF's boot manager says why it did not start the program it fetched.
    await vm.waitForConsole(/Access Denied/, { timeoutMs: 4 * MINUTE });
    timings.push(['unsigned loader: desired power=on → the firmware refuses it', Date.now() - started]);
    const hung = await appliance.waitFor(vm.name, 'run.boot timed out', (n) => n.observed.run?.value === 'hung' || /run\.boot not confirmed/.test(n.lastError ?? ''), RUN_BOOT_MS + 2 * MINUTE);
    timings.push(['unsigned loader: desired power=on → run.boot fails (its deadline)', Date.now() - started]);
    expect(hung.lastError ?? hung.observed.run?.detail).toMatch(/run\.boot not confirmed within/);
    // The last boot stage before the failure: the loader was fetched, no kernel ever was.
    const seen = (await events(vm.name)).filter((e) => e.at >= started);
    const failedAt = seen.findIndex((e) => e.facet === 'run' && e.new === 'hung');
    expect(failedAt, 'run=hung observed').toBeGreaterThanOrEqual(0);
    const bootStages = seen.slice(0, failedAt).filter((e) => e.facet === 'boot').map((e) => e.new);
    expect(bootStages.at(-1)).toBe('loader');
    expect(bootStages).not.toContain('kernel');
    expect(vm.console()).not.toMatch(/Linux version/);
    await appliance.setDesired(vm.name, { power: 'off' });
    await appliance.waitFor(vm.name, 'off', (n) => n.observed.power?.value === 'off', 4 * MINUTE);
  }, 14 * MINUTE);
});
