// The Redfish module inside a running appliance, against the Redfish BMC emulator: power on and off
// through advertised reset types, the next boot set before power-on, a wrong password held as failed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../test/support/appliance.js';
import { Appliance } from '../../src/appliance.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { parseBmcUrl } from '../../src/domain/node.js';
import { startRedfishBmc, type RedfishBmc } from '../../vm-test/redfish-bmc/emulator.js';
import { FakeMachine } from '../../vm-test/redfish-bmc/fake-machine.js';
import type { NodeRecord } from '../../src/domain/node.js';
import type { EmulatedSystemConfig } from '../../vm-test/redfish-bmc/emulator.js';
import { createModule, RedfishConnector } from './module.js';

describe('Redfish sessions on BMCs that leave out optional ComputerSystem properties', () => {
  const closing: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const close of closing.splice(0).reverse()) await close();
  });

  /** A session to an emulated BMC whose system lacks `lacks`, and the JSON lines it logged. */
  const sessionTo = async (lacks: EmulatedSystemConfig['lacks']) => {
    const machine = new FakeMachine();
    const bmc = await startRedfishBmc({ username: 'admin', password: 'secret', systems: [{ id: '1', machine, lacks }] });
    closing.push(() => bmc.close());
    const node: NodeRecord = {
      id: 'n1',
      name: 'rf-lacking',
      macs: ['52:54:00:dd:01:01'],
      bmc: parseBmcUrl(`redfish+http://admin@127.0.0.1:${bmc.port}/redfish/v1/Systems/1`).address,
      arch: 'x86_64',
      firmware: 'uefi',
      labels: {},
    };
    const lines: string[] = [];
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => lines.push(...chunk.toString().trim().split('\n')));
    const session = await new RedfishConnector({ requestTimeoutMs: 2000 }).connect(node, 'secret', createLogger('info', stream));
    closing.push(() => session.close());
    return { session, machine, logged: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) };
  };

  it('reads a system without PowerState (absent or null) as unknown', async () => {
    for (const lacks of ['omit', 'null'] as const) {
      const { session } = await sessionTo({ PowerState: lacks });
      expect(await session.powerState()).toBe('unknown');
    }
  });

  it('sets the next boot of a UEFI node without a mode where the system has no BootSourceOverrideMode, and logs that', async () => {
    const { session, machine, logged } = await sessionTo({ BootSourceOverrideMode: 'omit' });
    await session.setNextBoot('pxe', 'uefi');
    expect(machine.bootOverride).toMatchObject({ target: 'Pxe', enabled: 'Once' });
    expect(logged()).toContainEqual(expect.objectContaining({ node: 'rf-lacking', mode: 'UEFI', msg: expect.stringMatching(/no BootSourceOverrideMode/) }));
  });
});

describe('Redfish module in the appliance', { timeout: 60_000 }, () => {
  let appliance: Appliance;
  let bmc: RedfishBmc;
  let dataDir: string;
  const machine = new FakeMachine({ ignoresGracefulShutdown: true });

  beforeAll(async () => {
    bmc = await startRedfishBmc({ username: 'admin', password: 'secret', systems: [{ id: '1', machine }], etag: 'required' });
    dataDir = mkdtempSync(join(tmpdir(), 'shoal-redfish-module-'));
    const config = loadConfig(undefined, { dataDir, api: { listen: '127.0.0.1', port: 0 }, engine: { retryBudget: 1, backoffBaseMs: 50, backoffMaxMs: 1000, timeouts: {}, limits: {} } });
    appliance = await Appliance.start(config, { modules: [createModule({ pollMs: 500, fastPollMs: 100, gracefulOffMs: 300, requestTimeoutMs: 2000 })], log: createLogger('silent') });
  });

  afterAll(async () => {
    await appliance?.stop();
    await bmc?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const enroll = async (name: string, mac: string, password: string) => {
    const [node] = await appliance.state.addNodes(
      [{ spec: { name, macs: [mac], bmc: parseBmcUrl(`redfish+http://admin@127.0.0.1:${bmc.port}/redfish/v1/Systems/1`).address, arch: 'x86_64', firmware: 'uefi', labels: {} }, bmcPassword: password }],
      'test',
    );
    return node!;
  };

  it('powers on, then off (forcing it when the OS ignores the graceful request)', async () => {
    const node = await enroll('rf-a', '52:54:00:dd:00:01', 'secret');
    await appliance.state.setDesired(node.id, { power: 'on' }, 'test');
    await until(appliance, () => appliance.state.observed(node.id).power?.value === 'on' && appliance.engine.executor.status(node.id).phase === 'converged', 20_000, 'on');
    expect(await machine.powerState()).toBe('On');
    await appliance.state.setDesired(node.id, { power: 'off' }, 'test');
    await until(appliance, () => appliance.state.observed(node.id).power?.value === 'off' && appliance.engine.executor.status(node.id).phase === 'converged', 20_000, 'off');
    expect(await machine.powerState()).toBe('Off');
    expect(machine.commands).toEqual(['powerOn', 'gracefulShutdown', 'forceOff']);
  });

  it('forces a node that stopped answering (run=lost) off at once, without the graceful request', async () => {
    const node = appliance.state.resolve('rf-a');
    await appliance.state.setDesired(node.id, { power: 'on' }, 'test');
    await until(appliance, () => appliance.state.observed(node.id).power?.value === 'on' && appliance.engine.executor.status(node.id).phase === 'converged', 20_000, 'on');
    machine.commands.length = 0;
    // The agent module's word for a silent node; here the test stands in for it.
    appliance.state.observe(node.id, 'run', 'lost', 'test');
    await appliance.state.setDesired(node.id, { power: 'off' }, 'test');
    await until(appliance, () => appliance.state.observed(node.id).power?.value === 'off', 20_000, 'off');
    expect(machine.commands).toEqual(['forceOff']);
    await appliance.state.setDesired(node.id, { power: null }, 'test');
  });

  it('sets a one-time PXE boot in UEFI mode before powering on a node armed for network boot', async () => {
    const node = appliance.state.resolve('rf-a');
    // The boot facet's owner (pxe) reports the arming; here the test stands in for it.
    appliance.state.observe(node.id, 'boot', 'armed', 'test', 'compute@1');
    await appliance.state.setDesired(node.id, { power: 'on' }, 'test');
    await until(appliance, () => appliance.state.observed(node.id).power?.value === 'on', 20_000, 'on');
    // The machine booted with the override the module set (the emulator clears a Once override after the boot).
    expect(machine.boots.at(-1)).toMatchObject({ target: 'Pxe', enabled: 'Once', mode: 'UEFI' });
    expect(bmc.requests.some((r) => r.method === 'PATCH' && r.ifMatch !== undefined)).toBe(true);
  });

  it('holds a node whose BMC refuses the password as failed, with the reason', async () => {
    const node = await enroll('rf-b', '52:54:00:dd:00:02', 'wrong');
    await appliance.state.setDesired(node.id, { power: 'on' }, 'test');
    await until(appliance, () => appliance.engine.executor.status(node.id).phase === 'failed', 20_000, 'failed');
    expect(appliance.engine.executor.status(node.id).reason).toMatch(/failed 2 times; last: .*(401|auth|credential|password)/i);
  });
});
