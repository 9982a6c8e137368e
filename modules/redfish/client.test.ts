// The client against the Redfish BMC emulator (in-memory machine) on 127.0.0.1, one
// emulator configuration per behaviour real BMCs differ on.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { requirements, skipUnless } from '../../test/support/environment.js';
import { startRedfishBmc, type RedfishBmc, type RedfishBmcOptions } from '../../vm-test/redfish-bmc/emulator.js';
import { FakeMachine } from '../../vm-test/redfish-bmc/fake-machine.js';
import {
  RedfishActionNotSupportedError,
  RedfishAuthError,
  RedfishClient,
  RedfishConfigError,
  RedfishHttpError,
  RedfishMalformedReplyError,
  RedfishNotFoundError,
  RedfishTaskError,
  RedfishTimeoutError,
  RedfishTlsError,
  RedfishUnreachableError,
  RedfishUsageError,
  type PowerIntent,
  type RedfishEndpointConfig,
} from './client.js';

const username = 'admin';
const password = 'secret';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function bmcWith(
  overrides: Partial<RedfishBmcOptions> = {},
  machine = new FakeMachine(),
): Promise<{ bmc: RedfishBmc; machine: FakeMachine }> {
  const bmc = await startRedfishBmc({ username, password, systems: [{ id: '1', machine }], ...overrides });
  cleanups.push(() => bmc.close());
  return { bmc, machine };
}

function configFor(bmc: RedfishBmc, extra: Partial<RedfishEndpointConfig> = {}): RedfishEndpointConfig {
  return { url: `redfish+http://${username}@127.0.0.1:${bmc.port}`, password, taskPollIntervalMs: 0, ...extra };
}

async function connect(config: RedfishEndpointConfig): Promise<RedfishClient> {
  const client = await RedfishClient.connect(config);
  cleanups.push(() => client.close());
  return client;
}

/** A bare HTTP server answering from a fixed table, for replies no well-behaved BMC would send. */
async function cannedServer(routes: Record<string, string>): Promise<Server> {
  const server = createServer((req, res) => {
    const body = routes[req.url ?? ''];
    if (body === undefined) res.writeHead(404).end();
    else res.writeHead(200, { 'Content-Type': 'application/json' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return server;
}

const portOf = (server: Server) => (server.address() as AddressInfo).port;

describe('discovery and authentication', () => {
  it('finds the only system and logs in with a session, which close() deletes', async () => {
    const { bmc } = await bmcWith();
    const client = await RedfishClient.connect(configFor(bmc));
    expect(client.systemPath).toBe('/redfish/v1/Systems/1');
    expect(client.authMethod).toBe('session');
    expect(bmc.sessionCount()).toBe(1);
    expect(bmc.requests.filter((r) => r.auth === 'basic')).toEqual([]);

    await client.close();
    expect(bmc.sessionCount()).toBe(0);
    expect(bmc.requests.at(-1)).toMatchObject({ method: 'DELETE', path: '/redfish/v1/SessionService/Sessions/1', auth: 'session' });
  });

  it('uses the system the BMC URL names, with or without the /redfish/v1 prefix', async () => {
    const machineA = new FakeMachine();
    const machineB = new FakeMachine();
    const { bmc } = await bmcWith({
      systems: [
        { id: 'a', machine: machineA },
        { id: 'b', machine: machineB },
      ],
    });
    const short = await connect(configFor(bmc, { url: `redfish+http://${username}@127.0.0.1:${bmc.port}/Systems/b` }));
    const long = await connect(configFor(bmc, { url: `redfish+http://127.0.0.1:${bmc.port}/redfish/v1/Systems/b`, username }));
    expect(short.systemPath).toBe('/redfish/v1/Systems/b');
    expect(long.systemPath).toBe('/redfish/v1/Systems/b');

    await short.reset('on');
    expect(await machineB.powerState()).toBe('On');
    expect(await machineA.powerState()).toBe('Off');
  });

  it('refuses to guess among several systems, and reports a named system that does not exist', async () => {
    const { bmc } = await bmcWith({
      systems: [
        { id: 'a', machine: new FakeMachine() },
        { id: 'b', machine: new FakeMachine() },
      ],
    });
    await expect(RedfishClient.connect(configFor(bmc))).rejects.toThrow(RedfishConfigError);
    await expect(
      RedfishClient.connect(configFor(bmc, { url: `redfish+http://${username}@127.0.0.1:${bmc.port}/Systems/c` })),
    ).rejects.toThrow(RedfishNotFoundError);
    // Both failed discoveries logged their sessions out.
    expect(bmc.sessionCount()).toBe(0);
  });

  it('falls back to Basic auth when the BMC refuses sessions', async () => {
    const { bmc } = await bmcWith({ sessions: false });
    const client = await connect(configFor(bmc));
    expect(client.authMethod).toBe('basic');
    expect(await client.getPowerState()).toBe('Off');
    const authenticated = bmc.requests.filter((r) => r.path !== '/redfish/v1' && r.method !== 'POST');
    expect(authenticated.length).toBeGreaterThan(0);
    expect(authenticated.every((r) => r.auth === 'basic')).toBe(true);
  });

  it('reports a wrong password as an auth error, with sessions and with Basic auth', async () => {
    const { bmc: withSessions } = await bmcWith();
    await expect(RedfishClient.connect(configFor(withSessions, { password: 'wrong' }))).rejects.toThrow(RedfishAuthError);
    const { bmc: basicOnly } = await bmcWith({ sessions: false });
    await expect(RedfishClient.connect(configFor(basicOnly, { password: 'wrong' }))).rejects.toThrow(RedfishAuthError);
  });

  it('closes without error when the BMC has already expired the session (it answers 401)', async () => {
    const { bmc } = await bmcWith();
    const client = await RedfishClient.connect(configFor(bmc));
    bmc.dropSessions();
    await expect(client.close()).resolves.toBeUndefined();
    expect(bmc.requests.at(-1)).toMatchObject({ method: 'DELETE', path: '/redfish/v1/SessionService/Sessions/1' });
  });

  it('logs in again, once for concurrent calls, when the BMC has dropped the session', async () => {
    const { bmc, machine } = await bmcWith();
    const client = await connect(configFor(bmc));
    bmc.dropSessions();
    await machine.powerOn();
    expect(await Promise.all([client.getPowerState(), client.getPowerState(), client.getPowerState()])).toEqual(['On', 'On', 'On']);
    expect(bmc.requests.filter((r) => r.method === 'POST' && r.path === '/redfish/v1/SessionService/Sessions')).toHaveLength(2);
    expect(bmc.sessionCount()).toBe(1);
  });
});

describe('power', () => {
  it('reads the power state on every call, never from a cache', async () => {
    const { bmc, machine } = await bmcWith();
    const client = await connect(configFor(bmc));
    expect(await client.getPowerState()).toBe('Off');
    await machine.powerOn();
    expect(await client.getPowerState()).toBe('On');
    await machine.forceOff();
    expect(await client.getPowerState()).toBe('Off');
  });

  it('connects to a system without PowerState (optional in the schema), reads it as unknown and still sets its boot', async () => {
    for (const lacks of ['omit', 'null'] as const) {
      const machine = new FakeMachine();
      const { bmc } = await bmcWith({ systems: [{ id: '1', machine, lacks: { PowerState: lacks } }] }, machine);
      const client = await connect(configFor(bmc));
      expect(await client.getPowerState()).toBeUndefined();
      await client.setBootOverride({ target: 'Pxe', enabled: 'Once' });
      expect(machine.bootOverride).toMatchObject({ target: 'Pxe', enabled: 'Once' });
    }
  });

  it('maps each intent to its preferred ResetType when everything is allowed', async () => {
    const { bmc, machine } = await bmcWith();
    const client = await connect(configFor(bmc));
    expect(await client.reset('on')).toBe('On');
    expect(await client.reset('restart')).toBe('ForceRestart');
    expect(await client.reset('cycle')).toBe('PowerCycle');
    expect(await client.reset('graceful-off')).toBe('GracefulShutdown');
    expect(await client.getPowerState()).toBe('Off');
    await client.reset('on');
    expect(await client.reset('off')).toBe('ForceOff');
    expect(machine.commands).toEqual(['powerOn', 'reset', 'forceOff', 'powerOn', 'gracefulShutdown', 'powerOn', 'forceOff']);
  });

  it('falls back to the ResetType values the system allows, read inline or from ActionInfo', async () => {
    for (const resetTypesVia of ['inline', 'action-info'] as const) {
      const machine = new FakeMachine();
      const { bmc } = await bmcWith(
        { resetTypesVia, systems: [{ id: '1', machine, resetTypes: ['ForceOn', 'ForceOff', 'ForceRestart'] }] },
        machine,
      );
      const client = await connect(configFor(bmc));
      expect(await client.allowedResetTypes()).toEqual(['ForceOn', 'ForceOff', 'ForceRestart']);
      expect(await client.reset('on')).toBe('ForceOn');
      expect(await client.reset('cycle')).toBe('ForceRestart');
      expect(await client.reset('restart')).toBe('ForceRestart');
      expect(await client.reset('graceful-off')).toBe('ForceOff');
      expect(await machine.powerState()).toBe('Off');
    }
  });

  it('refuses an intent nothing allowed can do, without sending a reset', async () => {
    const machine = new FakeMachine();
    const { bmc } = await bmcWith({ systems: [{ id: '1', machine, resetTypes: ['On', 'GracefulShutdown'] }] }, machine);
    const client = await connect(configFor(bmc));
    await expect(client.reset('off')).rejects.toThrow(RedfishActionNotSupportedError);
    await expect(client.reset('cycle')).rejects.toThrow(RedfishActionNotSupportedError);
    expect(bmc.requests.filter((r) => r.path.endsWith('ComputerSystem.Reset'))).toEqual([]);
  });

  it('waits for a reset answered 202 until its task monitor reports completion', async () => {
    const { bmc, machine } = await bmcWith({ resetTask: { pollsBeforeDone: 2 } });
    const client = await connect(configFor(bmc));
    await client.reset('on');
    // The emulator powers on only when the monitor is polled the third time.
    expect(await machine.powerState()).toBe('On');
    expect(bmc.requests.filter((r) => r.path.startsWith('/redfish/v1/TaskService/TaskMonitors/'))).toHaveLength(3);
  });

  it('gives up on a task that never ends, at the task deadline', async () => {
    const { bmc, machine } = await bmcWith({ resetTask: { pollsBeforeDone: Number.POSITIVE_INFINITY } });
    const client = await connect(configFor(bmc, { taskTimeoutMs: 300, taskPollIntervalMs: 20 }));
    await expect(client.reset('on')).rejects.toThrow(RedfishTaskError);
    expect(await machine.powerState()).toBe('Off');
  });
});

describe('boot override', () => {
  it('patches without If-Match when the BMC has no ETags, and a Once override is used by the next boot', async () => {
    const { bmc, machine } = await bmcWith({ etag: 'none' });
    const client = await connect(configFor(bmc));
    await client.setBootOverride({ target: 'Pxe', enabled: 'Once', mode: 'UEFI' });
    const patches = bmc.requests.filter((r) => r.method === 'PATCH');
    expect(patches).toHaveLength(1);
    expect(patches[0]?.ifMatch).toBeUndefined();
    expect(await client.getBootOverride()).toEqual({ target: 'Pxe', enabled: 'Once', mode: 'UEFI' });

    await client.reset('on');
    expect(machine.boots).toEqual([{ target: 'Pxe', enabled: 'Once', mode: 'UEFI' }]);
    expect(await client.getBootOverride()).toEqual({ target: 'None', enabled: 'Disabled', mode: 'UEFI' });
  });

  it('returns what it set: the mode too where the system has BootSourceOverrideMode', async () => {
    const { bmc } = await bmcWith();
    const client = await connect(configFor(bmc));
    expect(await client.setBootOverride({ target: 'Pxe', enabled: 'Once', mode: 'UEFI' })).toEqual({ target: 'Pxe', enabled: 'Once', mode: 'UEFI' });
  });

  it('sets target and enabled alone on a system without BootSourceOverrideMode (absent or null), and returns that it left the mode out', async () => {
    for (const lacks of ['omit', 'null'] as const) {
      const machine = new FakeMachine();
      const { bmc } = await bmcWith({ systems: [{ id: '1', machine, lacks: { BootSourceOverrideMode: lacks } }] }, machine);
      const client = await connect(configFor(bmc));
      expect(await client.setBootOverride({ target: 'Pxe', enabled: 'Once', mode: 'UEFI' })).toEqual({ target: 'Pxe', enabled: 'Once' });
      expect(machine.bootOverride).toMatchObject({ target: 'Pxe', enabled: 'Once' });
      expect(await client.getBootOverride()).toEqual({ target: 'Pxe', enabled: 'Once', mode: undefined });
    }
  });

  it('sends If-Match with the ETag it read when the BMC requires it', async () => {
    const { bmc, machine } = await bmcWith({ etag: 'required' });
    const client = await connect(configFor(bmc));
    await client.setBootOverride({ target: 'Hdd', enabled: 'Continuous' });
    const patch = bmc.requests.find((r) => r.method === 'PATCH');
    expect(patch?.ifMatch).toMatch(/^".+"$/);
    expect(machine.bootOverride).toMatchObject({ target: 'Hdd', enabled: 'Continuous' });
  });

  it('re-reads the ETag and retries once on 412', async () => {
    let patchesSeen = 0;
    const machine = new FakeMachine();
    const bmc: RedfishBmc = await startRedfishBmc({
      username,
      password,
      etag: 'required',
      systems: [{ id: '1', machine }],
      // Someone else changes the system between our read and our first PATCH only.
      beforeSystemPatch: (systemId) => {
        if (patchesSeen++ === 0) bmc.touchSystem(systemId);
      },
    });
    cleanups.push(() => bmc.close());
    const client = await connect(configFor(bmc));
    await client.setBootOverride({ target: 'Pxe', enabled: 'Once' });
    const patches = bmc.requests.filter((r) => r.method === 'PATCH');
    expect(patches).toHaveLength(2);
    expect(patches[0]?.ifMatch).not.toBe(patches[1]?.ifMatch);
    expect(machine.bootOverride).toMatchObject({ target: 'Pxe', enabled: 'Once' });
  });

  it('gives up with the 412 when the ETag is stale again on the retry', async () => {
    const machine = new FakeMachine();
    const bmc: RedfishBmc = await startRedfishBmc({
      username,
      password,
      systems: [{ id: '1', machine }],
      beforeSystemPatch: (systemId) => bmc.touchSystem(systemId),
    });
    cleanups.push(() => bmc.close());
    const client = await connect(configFor(bmc));
    const failure = client.setBootOverride({ target: 'Pxe', enabled: 'Once' });
    await expect(failure).rejects.toThrow(RedfishHttpError);
    await expect(failure).rejects.toMatchObject({ status: 412 });
    expect(bmc.requests.filter((r) => r.method === 'PATCH')).toHaveLength(2);
    expect(machine.bootOverride.target).toBe('None');
  });
});

describe('failures at the edge', () => {
  it('reports a closed port as unreachable', async () => {
    const server = await cannedServer({});
    const port = portOf(server);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await expect(
      RedfishClient.connect({ url: `redfish+http://${username}@127.0.0.1:${port}`, password }),
    ).rejects.toThrow(RedfishUnreachableError);
  });

  it('reports a BMC that accepts but never answers as a timeout, at the request deadline', async () => {
    const silent = createServer(() => {
      // Never answers.
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          silent.close(() => resolve());
          silent.closeAllConnections();
        }),
    );
    await expect(
      RedfishClient.connect({ url: `redfish+http://${username}@127.0.0.1:${portOf(silent)}`, password, requestTimeoutMs: 200 }),
    ).rejects.toThrow(RedfishTimeoutError);
  });

  it('reports a reply that is not JSON, or not a Redfish resource, as malformed', async () => {
    const notJson = await cannedServer({ '/redfish/v1/': '<html>login</html>' });
    await expect(
      RedfishClient.connect({ url: `redfish+http://${username}@127.0.0.1:${portOf(notJson)}`, password }),
    ).rejects.toThrow(RedfishMalformedReplyError);

    const badPowerState = await cannedServer({
      '/redfish/v1/': JSON.stringify({ Systems: { '@odata.id': '/redfish/v1/Systems' } }),
      '/redfish/v1/Systems': JSON.stringify({ Members: [{ '@odata.id': '/redfish/v1/Systems/1' }] }),
      '/redfish/v1/Systems/1': JSON.stringify({ PowerState: 'Sideways' }),
    });
    await expect(
      RedfishClient.connect({ url: `redfish+http://${username}@127.0.0.1:${portOf(badPowerState)}`, password }),
    ).rejects.toThrow(RedfishMalformedReplyError);
  });

  it('refuses a URI the BMC hands back that points at another host', async () => {
    const elsewhere = await cannedServer({
      '/redfish/v1/': JSON.stringify({
        Systems: { '@odata.id': 'http://192.0.2.1/redfish/v1/Systems' },
      }),
    });
    await expect(
      RedfishClient.connect({ url: `redfish+http://${username}@127.0.0.1:${portOf(elsewhere)}`, password }),
    ).rejects.toThrow(RedfishMalformedReplyError);
  });

  it('rejects an unknown intent or boot override before any traffic', async () => {
    const { bmc } = await bmcWith();
    const client = await connect(configFor(bmc));
    const before = bmc.requests.length;
    await expect(client.reset('reboot' as PowerIntent)).rejects.toThrow(RedfishUsageError);
    await expect(client.setBootOverride({ target: 'Cd' as 'Pxe', enabled: 'Once' })).rejects.toThrow(RedfishUsageError);
    expect(bmc.requests).toHaveLength(before);
  });

  it('rejects unusable endpoint configs before any traffic', async () => {
    await expect(RedfishClient.connect({ url: 'redfish://admin:pw@127.0.0.1/Systems/1', password })).rejects.toThrow(
      RedfishConfigError,
    );
    await expect(RedfishClient.connect({ url: 'redfish://127.0.0.1/Systems/1', password })).rejects.toThrow(/no BMC user/);
    await expect(RedfishClient.connect({ url: 'redfish://admin@127.0.0.1/Chassis/1', password })).rejects.toThrow(
      RedfishConfigError,
    );
    await expect(RedfishClient.connect({ url: 'ftp://admin@127.0.0.1/', password })).rejects.toThrow(RedfishConfigError);
    await expect(
      RedfishClient.connect({ url: 'redfish://admin@127.0.0.1/', password, certificateSha256: 'abc' }),
    ).rejects.toThrow(RedfishConfigError);
  });
});

const tls = requirements({ commands: ['openssl'] });
describe.skipIf(skipUnless('Redfish client over TLS', tls))('TLS with a self-signed BMC certificate', () => {
  const httpsUrl = (bmc: RedfishBmc) => `redfish://${username}@127.0.0.1:${bmc.port}`;

  it('is refused by default, before any request is sent', async () => {
    const { bmc } = await bmcWith({ tls: true });
    await expect(RedfishClient.connect({ url: httpsUrl(bmc), password })).rejects.toThrow(RedfishTlsError);
    expect(bmc.requests).toEqual([]);
  });

  it('is accepted with insecure: true', async () => {
    const { bmc } = await bmcWith({ tls: true });
    const client = await connect({ url: httpsUrl(bmc), password, insecure: true });
    expect(await client.getPowerState()).toBe('Off');
  });

  it('is accepted when pinned by its SHA-256 fingerprint, in either notation', async () => {
    const { bmc } = await bmcWith({ tls: true });
    const fingerprint = bmc.certificateFingerprintSha256 ?? '';
    expect(fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    const client = await connect({ url: httpsUrl(bmc), password, certificateSha256: fingerprint });
    expect(await client.reset('on')).toBe('On');
    const bare = await connect({ url: httpsUrl(bmc), password, certificateSha256: fingerprint.replaceAll(':', '').toLowerCase() });
    expect(await bare.getPowerState()).toBe('On');
  });

  it('is refused when pinned to another fingerprint, before any request is sent', async () => {
    const { bmc } = await bmcWith({ tls: true });
    const other = 'AB:'.repeat(31) + 'AB';
    await expect(RedfishClient.connect({ url: httpsUrl(bmc), password, certificateSha256: other })).rejects.toThrow(
      RedfishTlsError,
    );
    expect(bmc.requests).toEqual([]);
  });
});
