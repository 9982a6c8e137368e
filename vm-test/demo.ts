// The demo behind `./scripts/up`: the appliance in a private network namespace with a small virtual
// rack (QEMU VMs behind ipmi_sim and the Redfish emulator), every node set to power=on on an image,
// progress printed per node as they network-boot, then the appliance left running (API and
// dashboard on 127.0.0.1) until Ctrl-C, which stops everything it started.
import { DEFAULT_CACHE_DIR, ensureImages } from '../images/catalog.js';
import { IpmiBmc, Lab, LabAppliance, labRequirements, RedfishBmc, type NodeView } from './harness/index.js';

const port = Number(process.env.SHOAL_DEMO_PORT ?? 8080);
const nodeCount = Number(process.env.SHOAL_DEMO_VMS ?? 3);

async function main(): Promise<number> {
  const requirement = labRequirements();
  if (!requirement.ok) {
    console.error(`shoal demo: cannot run the virtual rack here: ${requirement.reason}`);
    return 3;
  }
  if (!Number.isInteger(nodeCount) || nodeCount < 1 || nodeCount > 8) throw new Error('SHOAL_DEMO_VMS is a VM count from 1 to 8');

  console.log('shoal demo: building node images compute@1 and compute@2 from Debian packages (cached after the first run)');
  const images = await ensureImages(['compute@1', 'compute@2'], DEFAULT_CACHE_DIR);
  const lab = Lab.create();
  console.log(`shoal demo: private network ${lab.name} (${lab.ipv4Prefix}); logs and consoles in ${lab.dir}`);
  const appliance = await LabAppliance.start(lab, { images, forwardPort: port });
  console.log(`shoal demo: appliance on ${appliance.advertiseUrl} inside the lab, its API and dashboard forwarded to ${appliance.url}`);

  // Alternate firmware and BMC kinds so the rack shows every path: BIOS + iPXE ROM, UEFI + OVMF's PXE, Redfish.
  for (let i = 1; i <= nodeCount; i++) {
    const kind = (['bios-ipmi', 'uefi-ipmi', 'bios-redfish'] as const)[(i - 1) % 3]!;
    const vm = lab.addVm({ name: `node${i}`, firmware: kind.startsWith('uefi') ? 'uefi' : 'bios', ...(kind.startsWith('uefi') ? { nicRom: 'none' as const } : {}), maxRunMs: 24 * 3600_000 });
    const bmc = kind.endsWith('redfish') ? await RedfishBmc.start(lab, vm) : await IpmiBmc.start(lab, vm);
    await appliance.enroll(vm, bmc, { labels: { rack: 'demo', firmware: vm.firmware, bmc: kind.split('-')[1]! } });
    await appliance.setDesired(vm.name, { power: 'on', image: 'compute@1' });
    console.log(`shoal demo: enrolled ${vm.name} (${kind.replace('-', ', ')}, MAC ${vm.mac}) and asked for power=on image=compute@1`);
  }

  const started = Date.now();
  const last = new Map<string, string>();
  for (;;) {
    const { nodes } = await appliance.api.request<{ nodes: NodeView[] }>('GET', '/nodes');
    for (const node of nodes) {
      const line = describe(node);
      if (last.get(node.name) !== line) console.log(`${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s  ${node.name.padEnd(6)} ${line}`);
      last.set(node.name, line);
    }
    if (nodes.every((n) => n.phase !== 'converging')) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  console.log(`shoal demo: the rack converged in ${((Date.now() - started) / 1000).toFixed(1)} s. The appliance keeps it there; try:
  dashboard:  ${appliance.url}/   (token: ${appliance.token})
  CLI:        SHOAL_URL=${appliance.url} SHOAL_TOKEN=${appliance.token} node bin/shoal.js watch
  reprovision: SHOAL_URL=${appliance.url} SHOAL_TOKEN=${appliance.token} node bin/shoal.js node set node1 image=compute@2 --wait
Ctrl-C stops the appliance, the VMs and the lab.`);
  // The lab's own SIGINT/SIGTERM handler stops every process it started and removes the namespace.
  return new Promise<number>(() => undefined);
}

function describe(node: NodeView): string {
  const o = node.observed;
  const facts = ['power', 'boot', 'run'].map((f) => `${f}=${o[f]?.value ?? '?'}`).join(' ');
  const image = o.image?.value ? ` image=${o.image.value}` : '';
  const step = node.step ? `  → ${node.step.name}` : '';
  const reason = node.reason ? `  (${node.reason})` : '';
  return `${node.phase.padEnd(10)} ${facts}${image}${step}${reason}`;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`shoal demo: ${(error as Error).message}`);
    process.exit(1);
  },
);
