// `shoal serve`: runs the appliance until SIGINT/SIGTERM. With --demo N on an empty store it enrolls
// N simulated nodes, asks them for an image, and prints progress until they converge.
import { loadConfig } from '../config.js';
import { Appliance } from '../appliance.js';
import type { NodeSpec } from '../domain/node.js';

export async function serve(values: { config?: string | undefined; data?: string | undefined; listen?: string | undefined; port?: string | undefined; demo?: string | undefined }): Promise<number> {
  const overrides: Record<string, unknown> = {};
  if (values.data) overrides.dataDir = values.data;
  const config = loadConfig(values.config ?? process.env.SHOAL_CONFIG, overrides);
  if (values.listen) config.api.listen = values.listen;
  if (values.port) {
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port ${values.port} is not a TCP port`);
    config.api.port = port;
  }
  const appliance = await Appliance.start(config);
  const stop = async (signal: string) => {
    appliance.log.info({ signal }, 'stopping');
    const problems = await appliance.stop();
    process.exit(problems.length === 0 ? 0 : 1);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));

  const { certificate } = appliance;
  if (certificate) {
    const origin = { made: 'made now', kept: 'made at first start', operator: 'given' }[certificate.origin];
    console.log(`shoal: API certificate ${certificate.certPath} (${origin}), SHA-256 fingerprint ${certificate.fingerprint}; the CLI trusts it with --fingerprint or --ca`);
  }
  if (appliance.bootServer) console.log(`shoal: node routes (iPXE, kernels, images, agents) at ${appliance.bootUrl}, plain HTTP`);
  console.log(`shoal: appliance at ${appliance.url} — data in ${config.dataDir}, token in ${config.dataDir}/api-token`);
  if (values.demo) await demo(appliance, Number(values.demo));
  return new Promise(() => {
    // runs until a signal stops it
  });
}

async function demo(appliance: Appliance, count: number): Promise<void> {
  if (!Number.isInteger(count) || count < 1 || count > 10_000) throw new Error('--demo takes a node count from 1 to 10000');
  const { state, engine } = appliance;
  if (state.size === 0) {
    const specs: NodeSpec[] = Array.from({ length: count }, (_, i) => {
      const n = String(i + 1).padStart(3, '0');
      const mac = `52:54:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
      return { name: `sim${n}`, macs: [mac], bmc: { scheme: 'sim', host: `bmc-${n}` }, arch: 'x86_64', firmware: 'auto', labels: { rack: `r${Math.floor(i / 8) + 1}` } };
    });
    const nodes = await state.addNodes(specs.map((spec) => ({ spec })), 'operator:demo');
    for (const node of nodes) await state.setDesired(node.id, { power: 'on', image: 'compute@1' }, 'operator:demo');
    console.log(`shoal: enrolled ${count} simulated nodes and asked for power=on image=compute@1`);
  }
  console.log(`shoal: open ${appliance.url}/ (token in ${appliance.config.dataDir}/api-token), or run \`node bin/shoal.js watch\` in another terminal; Ctrl-C stops the appliance`);
  const started = Date.now();
  let last = '';
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const counts = engine.executor.phaseCounts();
      const steps = new Map<string, number>();
      for (const node of state.list()) {
        const step = engine.executor.status(node.id).step?.name;
        if (step) steps.set(step, (steps.get(step) ?? 0) + 1);
      }
      const line = `${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s  ${Object.entries(counts)
        .filter(([, n]) => n > 0)
        .map(([p, n]) => `${p} ${n}`)
        .join('  ')}${steps.size ? `  | ${[...steps].map(([s, n]) => `${s} ${n}`).join('  ')}` : ''}`;
      if (line.slice(9) !== last) console.log(line);
      last = line.slice(9);
      if (counts.converging === 0) {
        clearInterval(timer);
        console.log(`shoal: ${counts.converged} converged, ${counts.failed} failed, ${counts.blocked} blocked; the appliance keeps them there`);
        resolve();
      }
    }, 1000);
  });
}
