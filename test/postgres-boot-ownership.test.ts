// Boot requests follow ownership (issue 16): of two appliances on one PostgreSQL database, only a
// node's owner answers its iPXE script and boot files and sees its boot's progress; the other
// answers 503 and changes nothing. When the standby takes the other's nodes over, a node whose boot
// the old owner had armed (and this one has no plan for) is seen idle, so the planner arms it again
// here, and its script is then this appliance's.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../src/appliance.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import type { NodeRecord } from '../src/domain/node.js';
import { createModule as createPxe } from '../modules/pxe/index.js';
import { skipUnless } from './support/environment.js';
import { postgresRequirement, startPostgres, type TestPostgres } from './support/postgres.js';
import { useCleanups, waitFor } from './support/cleanups.js';
import { COMPUTE_IMAGE, pxeServiceStandIns } from './support/pxe-stand-ins.js';

const skip = skipUnless('boot requests following ownership on PostgreSQL', postgresRequirement());
const TTL_MS = 2_000;
const MAC = '52:54:00:ab:cd:41';

let server: TestPostgres | undefined;
beforeAll(async () => {
  if (!skip) server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
});
const { cleanups, tempDir } = useCleanups('shoal-boot-own-');

/** An appliance with the pxe module (HTTP boot routes only) whose steps the test takes itself. */
async function start(url: string, keyFile: string, name: string, advertiseUrl: string, extra: { standbyFor?: string; networks: string[] }): Promise<Appliance> {
  const config = loadConfig(undefined, {
    dataDir: tempDir(),
    api: { listen: '127.0.0.1', port: 0 },
    state: { backend: 'postgres', url },
    secrets: { keyFile },
    appliance: { name, leaseTtlMs: TTL_MS, ...extra },
  });
  const appliance = await Appliance.start(config, { modules: [pxeServiceStandIns(new Map([[COMPUTE_IMAGE.ref, COMPUTE_IMAGE]])), createPxe({ advertiseUrl })], log: createLogger('silent') });
  appliance.engine.executor.stop();
  // A second stop (after the test's own) finds everything closed and says so in what it returns.
  cleanups.push(() => appliance.stop());
  return appliance;
}

function arm(appliance: Appliance, node: NodeRecord): Promise<void> {
  return appliance.engine.driverFor(node, 'boot')!.steps['boot.arm']!({ step: 'boot.arm', node, desired: { image: COMPUTE_IMAGE.ref }, bmcPassword: undefined, signal: new AbortController().signal });
}

describe.skipIf(skip)('boot requests on two appliances, B standing by for A', () => {
  it("answers a node's boot requests only on its owner, and arms again the booting nodes it takes over", async () => {
    const url = await server!.createDatabase();
    const keyFile = join(tempDir(), 'secret.key');
    const b = await start(url, keyFile, 'b', 'http://10.2.0.1:8080', { standbyFor: 'a', networks: ['10.2.0.0/24'] });
    const a = await start(url, keyFile, 'a', 'http://10.1.0.1:8080', { networks: ['10.1.0.0/24'] });
    const [node] = (await a.state.addNodes([{ spec: { name: 'p01', macs: [MAC], bmc: { scheme: 'ipmi', host: '127.0.0.1' }, arch: 'x86_64', firmware: 'bios', labels: {}, ipv4: '10.1.0.10' } }], 'test')) as [NodeRecord];
    await waitFor(() => a.ownership.owns(node.id) && b.state.node(node.id) !== undefined && !b.ownership.owns(node.id), "the node A's, in both");
    await arm(a, node);
    await waitFor(() => b.state.observed(node.id).boot?.value === 'armed', "A's arming in B's memory");

    // B does not own it: 503 for its script and its kernel, and no progress seen.
    const fromB = await fetch(`${b.url}/boot/${MAC}.ipxe`);
    expect(fromB.status).toBe(503);
    expect(await fromB.text()).toMatch(/^p01 is served by another appliance \(this is b\)/);
    expect((await fetch(`${b.url}/boot/${MAC}/vmlinuz`, { redirect: 'manual' })).status).toBe(503);
    expect(b.state.observed(node.id).boot?.value).toBe('armed');
    // A serves it, and sees the loader stage.
    const fromA = await fetch(`${a.url}/boot/${MAC}.ipxe`);
    expect(fromA.status).toBe(200);
    expect(await fromA.text()).toContain('shoal.url=http://10.1.0.1:8080');
    await waitFor(() => b.state.observed(node.id).boot?.value === 'loader', 'the loader stage, committed');

    // A stops, releasing its lease: B takes its nodes, and arms again the boot A had under way.
    await a.stop();
    await waitFor(() => b.ownership.owns(node.id), "B to take over A's node", TTL_MS * 5);
    await waitFor(() => b.state.observed(node.id).boot?.value === 'idle', 'the taken-over boot seen idle');
    expect(b.state.observed(node.id).boot?.detail).toBe('armed (loader) by another appliance that no longer owns it; armed again here');
    await arm(b, node);
    const again = await fetch(`${b.url}/boot/${MAC}.ipxe`);
    expect(again.status).toBe(200);
    expect(await again.text()).toContain(`shoal.url=http://10.2.0.1:8080 shoal.node=${node.id}`);
  });
});
