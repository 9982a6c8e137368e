// The IPMI module inside a running appliance, against real ipmi_sim BMCs: the engine powers nodes
// on and off through our client, notices power changed behind its back, and holds a node whose BMC
// refuses our password as failed with a reason an operator can read. ipmitool checks the results.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requirements, skipUnless } from '../../test/support/environment.js';
import { until } from '../../test/support/appliance.js';
import { Appliance } from '../../src/appliance.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { parseBmcUrl, type NodeSpec } from '../../src/domain/node.js';
import { startIpmiSim, type SimulatedBmc } from '../../test/support/ipmi-sim.js';
import { createModule } from './module.js';

const run = promisify(execFile);
const skip = skipUnless('IPMI module against ipmi_sim', requirements({ commands: ['ipmi_sim', 'ipmitool'] }));

async function ipmitool(bmc: SimulatedBmc, ...args: string[]): Promise<string> {
  const { stdout } = await run('ipmitool', ['-I', 'lanplus', '-C', '3', '-H', bmc.host, '-p', String(bmc.port), '-U', 'admin', '-P', 'secret', ...args], { timeout: 20_000 });
  return stdout;
}

describe.skipIf(skip)('IPMI module in the appliance', { timeout: 60_000 }, () => {
  let appliance: Appliance;
  let dataDir: string;
  const bmcs: SimulatedBmc[] = [];

  beforeAll(async () => {
    bmcs.push(await startIpmiSim(), await startIpmiSim());
    dataDir = mkdtempSync(join(tmpdir(), 'shoal-ipmi-module-'));
    const config = loadConfig(undefined, { dataDir, api: { listen: '127.0.0.1', port: 0 }, engine: { retryBudget: 1, backoffBaseMs: 50, timeouts: {}, limits: {}, backoffMaxMs: 1000 } });
    const ipmi = createModule({ bindAddress: '127.0.0.1', timeoutMs: 500, retries: 1, cipherSuite: 3, pollMs: 500, fastPollMs: 200, gracefulOffMs: 1000 });
    appliance = await Appliance.start(config, { modules: [ipmi], log: createLogger('silent') });
  });

  afterAll(async () => {
    await appliance?.stop();
    await Promise.all(bmcs.map((b) => b.stop()));
    rmSync(dataDir, { recursive: true, force: true });
  });

  const enroll = async (name: string, bmc: SimulatedBmc, password: string) => {
    const spec: NodeSpec = { name, macs: [`52:54:00:cc:00:0${bmcs.indexOf(bmc)}${name.length}`.slice(0, 17)], bmc: parseBmcUrl(`ipmi://admin@127.0.0.1:${bmc.port}`).address, arch: 'x86_64', firmware: 'bios', labels: {} };
    const [node] = await appliance.state.addNodes([{ spec, bmcPassword: password }], 'test');
    return node!;
  };

  it('powers a node on and off through the BMC, confirmed by polling', async () => {
    const bmc = bmcs[0]!;
    const node = await enroll('ipmi-a', bmc, 'secret');
    await appliance.state.setDesired(node.id, { power: 'on' }, 'test');
    await until(appliance, () => appliance.engine.executor.status(node.id).phase === 'converged' && appliance.state.observed(node.id).power?.value === 'on', 30_000, 'power on');
    expect((await bmc.state()).power).toBe('on');
    expect(await ipmitool(bmc, 'power', 'status')).toContain('Chassis Power is on');

    await appliance.state.setDesired(node.id, { power: 'off' }, 'test');
    await until(appliance, () => appliance.state.observed(node.id).power?.value === 'off' && appliance.engine.executor.status(node.id).phase === 'converged', 30_000, 'power off');
    expect(await ipmitool(bmc, 'power', 'status')).toContain('Chassis Power is off');
  });

  it('powers a node on again after someone turned it off behind the appliance\'s back', async () => {
    const bmc = bmcs[0]!;
    const node = appliance.state.resolve('ipmi-a');
    await appliance.state.setDesired(node.id, { power: 'on' }, 'test');
    await until(appliance, () => appliance.state.observed(node.id).power?.value === 'on', 30_000, 'power on');
    await appliance.state.flush();
    const rev = appliance.state.revision;
    await ipmitool(bmc, 'power', 'off');
    await until(appliance, () => appliance.state.observed(node.id).power?.value === 'off', 30_000, 'the poll sees it off');
    await until(appliance, () => appliance.state.observed(node.id).power?.value === 'on', 30_000, 'on again');
    await appliance.state.flush();
    const powers = (await appliance.state.events({ nodeId: node.id, afterRev: rev })).filter((e) => e.facet === 'power' && e.kind === 'observed').map((e) => e.new);
    expect(powers).toEqual(['off', 'on']);
    expect(await ipmitool(bmc, 'power', 'status')).toContain('Chassis Power is on');
  });

  it('holds a node whose BMC refuses the password as failed, with the reason', async () => {
    const bmc = bmcs[1]!;
    const node = await enroll('ipmi-b', bmc, 'wrong-password');
    await appliance.state.setDesired(node.id, { power: 'on' }, 'test');
    await until(appliance, () => appliance.engine.executor.status(node.id).phase === 'failed', 30_000, 'held as failed');
    const status = appliance.engine.executor.status(node.id);
    expect(status.reason).toMatch(/power\.(probe|on) failed 2 times; last: .*(auth|password|credential)/i);
    expect((await bmc.state()).power).toBe('off');
    // the other node is unaffected
    expect(appliance.engine.executor.status(appliance.state.resolve('ipmi-a').id).phase).toBe('converged');
  });
});
