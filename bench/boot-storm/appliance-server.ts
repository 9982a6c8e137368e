// The appliance side of the boot-storm benchmark, run inside the server namespace: the appliance
// as `shoal serve` builds it from a configuration (images, agent and pxe modules, DHCP full mode
// with a reservation per node, TFTP, the node routes on the API port), with the storm's nodes
// enrolled and a network boot of the generated image armed for each. The engine's executor is
// stopped first (as the pxe module's tests do): the nodes have no BMC to power them, and the
// benchmark's clients play the power-on. Prints one JSON line `{ "ready": true }` once armed.
//
//   node --import tsx bench/boot-storm/appliance-server.ts SPEC.json
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { Appliance } from '../../src/appliance.js';
import { loadConfig } from '../../src/config.js';

export const ApplianceSpecSchema = z
  .object({
    dataDir: z.string(),
    imageDir: z.string(),
    image: z.string(),
    ipxeDir: z.string(),
    interface: z.string(),
    address: z.ipv4(),
    cidr: z.string(),
    httpPort: z.number().int(),
    nodes: z.array(z.object({ name: z.string(), mac: z.string(), ip: z.ipv4() }).strict()),
  })
  .strict();
export type ApplianceSpec = z.infer<typeof ApplianceSpecSchema>;

async function main(spec: ApplianceSpec): Promise<void> {
  const config = loadConfig(undefined, {
    dataDir: spec.dataDir,
    api: { listen: spec.address, port: spec.httpPort, tls: 'off' },
    log: { level: 'warn' },
    modules: [
      { name: 'images', options: { import: [spec.imageDir] } },
      { name: 'agent', options: {} },
      {
        name: 'pxe',
        options: {
          advertiseUrl: `http://${spec.address}:${spec.httpPort}`,
          dhcp: { mode: 'full', interface: { name: spec.interface, address: spec.address }, subnets: [{ cidr: spec.cidr }] },
          tftp: { address: spec.address, port: 69 },
          ipxeDir: spec.ipxeDir,
        },
      },
    ],
  } as never);
  const appliance = await Appliance.start(config);
  appliance.engine.executor.stop();
  const stop = () => void appliance.stop().then((problems) => process.exit(problems.length === 0 ? 0 : 1));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);

  const known = new Set(appliance.state.list().map((n) => n.name));
  const missing = spec.nodes.filter((n) => !known.has(n.name));
  await appliance.state.addNodes(
    missing.map((n) => ({ spec: { name: n.name, macs: [n.mac], ipv4: n.ip, bmc: { scheme: 'ipmi' as const, host: '192.0.2.1' }, arch: 'x86_64' as const, firmware: 'bios' as const, labels: {} } })),
    'operator:bench',
  );
  const signal = new AbortController().signal;
  for (const node of appliance.state.list()) {
    const boot = appliance.engine.driverFor(node, 'boot');
    if (!boot) throw new Error(`no driver for the boot facet of ${node.name}`);
    await boot.steps['boot.arm']!({ step: 'boot.arm', node, desired: { image: spec.image }, bmcPassword: undefined, signal });
  }
  process.stdout.write(`${JSON.stringify({ ready: true, nodes: appliance.state.size })}\n`);
}

main(ApplianceSpecSchema.parse(JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')))).catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
