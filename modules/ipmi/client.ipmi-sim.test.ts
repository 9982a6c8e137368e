// IpmiClient against real OpenIPMI ipmi_sim BMCs on loopback; every state our client reads
// or changes is cross-checked with ipmitool (-I lanplus -C 3) reading the same BMC, and with
// what the BMC's chassis control script recorded.
import { execFile } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requirements, skipUnless } from '../../test/support/environment.js';
import { IpmiClient, type IpmiClientOptions } from './client.js';
import {
  IpmiAuthenticationError,
  IpmiClosedError,
  IpmiMalformedReplyError,
  IpmiSessionError,
  IpmiTimeoutError,
} from './errors.js';
import { freeUdpPort, startIpmiSim, type SimulatedBmc } from '../../test/support/ipmi-sim.js';
import { IpmiTransport } from './transport.js';

const run = promisify(execFile);
const skip = skipUnless('IPMI client against ipmi_sim', requirements({ commands: ['ipmi_sim', 'ipmitool'] }));

async function ipmitool(bmc: SimulatedBmc, ...args: string[]): Promise<string> {
  const { stdout } = await run(
    'ipmitool',
    ['-I', 'lanplus', '-C', '3', '-H', bmc.host, '-p', String(bmc.port), '-U', bmc.username, '-P', bmc.password, ...args],
    { timeout: 20_000 },
  );
  return stdout;
}

function options(bmc: SimulatedBmc, extra: Partial<IpmiClientOptions> = {}): IpmiClientOptions {
  return { host: bmc.host, port: bmc.port, username: bmc.username, password: bmc.password, ...extra };
}

/** Polls until `probe` returns true; ipmi_sim powers on again one second after a cycle's power-off. */
async function eventually(probe: () => Promise<boolean>, deadlineMs = 15_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe.skipIf(skip)('IpmiClient against ipmi_sim, checked with ipmitool', () => {
  let bmc: SimulatedBmc;
  let client: IpmiClient;

  beforeAll(async () => {
    bmc = await startIpmiSim();
    client = new IpmiClient(options(bmc));
  });

  afterAll(async () => {
    await client?.close();
    await bmc?.stop();
  });

  it('gets an RMCP presence pong claiming IPMI support', async () => {
    await expect(client.ping()).resolves.toEqual({ ipmi: true });
  });

  it('reads the device ID that ipmitool mc info shows', async () => {
    const ours = await client.getDeviceId();
    const theirs = await ipmitool(bmc, 'mc', 'info');
    expect(theirs).toMatch(new RegExp(`Device ID\\s*: ${ours.deviceId}\\n`));
    expect(theirs).toMatch(new RegExp(`Firmware Revision\\s*: ${ours.firmwareRevision.replace('.', '\\.')}\\n`));
    expect(theirs).toMatch(new RegExp(`IPMI Version\\s*: ${ours.ipmiVersion.replace('.', '\\.')}\\n`));
    expect(theirs).toMatch(new RegExp(`Manufacturer ID\\s*: ${ours.manufacturerId}\\n`));
    expect(theirs).toMatch(new RegExp(`Product ID\\s*: ${ours.productId} `));
  });

  it('settles on cipher suite 3 because ipmi_sim rejects 17', async () => {
    await client.getChassisStatus();
    expect(client.cipherSuite).toBe(3);
    const only17 = new IpmiClient(options(bmc, { cipherSuite: 17 }));
    const error = await only17.getChassisStatus().catch((e: unknown) => e);
    await only17.close();
    expect(error).toBeInstanceOf(IpmiSessionError);
    expect((error as IpmiSessionError).status).toBe(0x04); // invalid authentication algorithm
  });

  it('powers on: our status, ipmitool and the chassis agree', async () => {
    await client.chassisControl('on');
    expect((await client.getChassisStatus()).power).toBe('on');
    expect(await ipmitool(bmc, 'power', 'status')).toMatch(/Chassis Power is on/);
    expect((await bmc.state()).power).toBe('on');
  });

  it('powers off: our status, ipmitool and the chassis agree', async () => {
    await client.chassisControl('off');
    expect((await client.getChassisStatus()).power).toBe('off');
    expect(await ipmitool(bmc, 'power', 'status')).toMatch(/Chassis Power is off/);
    expect((await bmc.state()).power).toBe('off');
  });

  it('reads a power state ipmitool set', async () => {
    await ipmitool(bmc, 'power', 'on');
    expect((await client.getChassisStatus()).power).toBe('on');
  });

  it('power cycles: off, then on again', async () => {
    const before = (await bmc.events()).length;
    await client.chassisControl('cycle');
    await eventually(async () => (await client.getChassisStatus()).power === 'on' && (await bmc.events()).length >= before + 2);
    expect((await bmc.events()).slice(before)).toEqual(['power 0', 'power 1']);
    expect(await ipmitool(bmc, 'power', 'status')).toMatch(/Chassis Power is on/);
  });

  it('hard-resets and soft-offs through the chassis', async () => {
    await client.chassisControl('hard-reset');
    await client.chassisControl('soft-off');
    expect((await bmc.events()).slice(-2)).toEqual(['reset 1', 'shutdown 1']);
  });

  it('sets PXE for the next boot, as ipmitool chassis bootparam get 5 shows', async () => {
    await client.setBootDevice({ device: 'pxe', persistent: false, efi: false });
    expect(await ipmitool(bmc, 'chassis', 'bootparam', 'get', '5')).toMatch(/Boot Device Selector : Force PXE/);
    expect((await client.getBootDevice()).device).toBe('pxe');
    expect((await bmc.state()).boot).toBe('pxe');
  });

  it('reads a boot device ipmitool set', async () => {
    await ipmitool(bmc, 'chassis', 'bootdev', 'disk');
    expect((await client.getBootDevice()).device).toBe('disk');
    await ipmitool(bmc, 'chassis', 'bootdev', 'pxe');
    expect((await client.getBootDevice()).device).toBe('pxe');
  });

  it('did all of the above on one reused session, and serializes concurrent calls on it', async () => {
    const results = await Promise.all([client.getChassisStatus(), client.getDeviceId(), client.getBootDevice(), client.getChassisStatus()]);
    expect(results).toHaveLength(4);
    expect(client.sessionsOpened).toBe(1);
  });

  it('replaces a session idle past sessionIdleMs', async () => {
    const eager = new IpmiClient(options(bmc, { sessionIdleMs: 0 }));
    await eager.getChassisStatus();
    await eager.getChassisStatus();
    expect(eager.sessionsOpened).toBe(2);
    await eager.close();
  });

  it('fails with an authentication error on a wrong password, as ipmitool does', async () => {
    const wrong = new IpmiClient(options(bmc, { password: 'not-the-password' }));
    const error = await wrong.getChassisStatus().catch((e: unknown) => e);
    await wrong.close();
    expect(error).toBeInstanceOf(IpmiAuthenticationError);
    expect((error as IpmiAuthenticationError).stage).toBe('rakp2');
    await expect(ipmitool({ ...bmc, password: 'not-the-password' }, 'power', 'status')).rejects.toThrow();
  });

  it('fails with an authentication error naming the BMC status for an unknown user', async () => {
    const stranger = new IpmiClient(options(bmc, { username: 'mallory' }));
    const error = await stranger.getChassisStatus().catch((e: unknown) => e);
    await stranger.close();
    expect(error).toBeInstanceOf(IpmiAuthenticationError);
    expect((error as IpmiAuthenticationError).status).toBe(0x0d);
    expect((error as IpmiAuthenticationError).message).toBe('IPMI authentication failed at rakp2: unauthorized name (RMCP+ status 0x0d)');
  });

  it('refuses calls after close()', async () => {
    const closing = new IpmiClient(options(bmc));
    await closing.getChassisStatus();
    await closing.close();
    await expect(closing.getChassisStatus()).rejects.toBeInstanceOf(IpmiClosedError);
  });
});

describe.skipIf(skip)('IpmiClient failure modes and a shared transport', () => {
  const bmcs: SimulatedBmc[] = [];
  let transport: IpmiTransport;
  let junk: Socket;
  let junkReplies = 0;

  beforeAll(async () => {
    bmcs.push(...(await Promise.all([startIpmiSim(), startIpmiSim(), startIpmiSim()])));
    transport = await IpmiTransport.open();
    junk = createSocket('udp4');
    junk.on('message', (_datagram, remote) => {
      junkReplies++;
      junk.send(Buffer.from('\x06\x00\xff\x07garbage, not an IPMI reply'), remote.port, remote.address);
    });
    await new Promise<void>((resolve) => junk.bind(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    junk?.close();
    await transport?.close();
    await Promise.all(bmcs.map((bmc) => bmc.stop()));
  });

  it('times out within its retry budget on a port nobody serves', async () => {
    const port = await freeUdpPort();
    const silent = new IpmiClient({ host: '127.0.0.1', port, username: 'admin', password: 'secret', timeoutMs: 100, retries: 2, transport });
    const started = Date.now();
    const error = await silent.getChassisStatus().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IpmiTimeoutError);
    expect((error as IpmiTimeoutError).attempts).toBe(3);
    // 100 + 200 + 400 ms of waiting; generous slack for a loaded machine.
    expect(Date.now() - started).toBeLessThan(3000);
    await silent.close();
  });

  it('times out a presence ping nobody answers', async () => {
    const port = await freeUdpPort();
    const silent = new IpmiClient({ host: '127.0.0.1', port, username: 'admin', password: 'secret', timeoutMs: 50, retries: 1, transport });
    await expect(silent.ping()).rejects.toBeInstanceOf(IpmiTimeoutError);
    await silent.close();
  });

  it('reports garbage replies as malformed, without crashing or retrying beyond its budget', async () => {
    const { port } = junk.address();
    const fooled = new IpmiClient({ host: '127.0.0.1', port, username: 'admin', password: 'secret', timeoutMs: 100, retries: 2, transport });
    await expect(fooled.getChassisStatus()).rejects.toBeInstanceOf(IpmiMalformedReplyError);
    expect(junkReplies).toBe(3);
    await fooled.close();
    // The shared transport is unharmed: a real BMC still answers through it.
    const real = new IpmiClient({ ...options(bmcs[0]!), transport });
    await expect(real.getChassisStatus()).resolves.toMatchObject({ power: expect.stringMatching(/on|off/) });
    await real.close();
  });

  it('reads several BMCs at once over one socket, each as ipmitool reads it', async () => {
    await ipmitool(bmcs[1]!, 'power', 'on');
    const clients = bmcs.map((bmc) => new IpmiClient({ ...options(bmc), transport }));
    const ours = await Promise.all(clients.map((c) => c.getChassisStatus()));
    const theirs = await Promise.all(bmcs.map((bmc) => ipmitool(bmc, 'power', 'status')));
    expect(ours.map((status) => status.power)).toEqual(['off', 'on', 'off']);
    expect(theirs.map((text) => /Chassis Power is (on|off)/.exec(text)?.[1])).toEqual(['off', 'on', 'off']);
    await Promise.all(clients.map((c) => c.close()));
    expect(transport.pendingExchanges).toBe(0);
  });
});
