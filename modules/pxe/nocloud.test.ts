// cloud-init's NoCloud data over HTTP from a real appliance: the seed URL the iPXE script puts on
// the kernel command line, the four files rendered from the node's profiles, and the binding of a
// seed to one node's armed boot (a stale seed is 404, another node's is 403 from that node's address).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { ImageInfo, ServiceRegistry } from '../../src/contracts/services.js';
import type { NodeRecord } from '../../src/domain/node.js';
import type { ShoalModule } from '../../src/engine/module.js';
import { startTestAppliance, type TestAppliance } from '../../test/support/appliance.js';
import { createModule } from './index.js';

const file = { sha256: 'k', size: 1, path: '/images/debian/1/vmlinuz' };
const IMAGE: ImageInfo = { ref: 'debian@1', name: 'debian', version: '1', arch: 'x86_64', digest: 'sha256:abc', kernel: file, initrd: file, cmdline: 'console=ttyS0' };
/** The appliance's service registry, as the stand-in module saw it (the agent module's view of configReports). */
let registry: ServiceRegistry;
/** An image whose own arguments leave too little room for the appliance's and a network-config. */
const VERBOSE: ImageInfo = { ...IMAGE, ref: 'verbose@1', name: 'verbose', cmdline: Array.from({ length: 100 }, (_, i) => `verbose.arg${i}=yes`).join(' ') };
const services: ShoalModule = {
  name: 'stand-in',
  start(host) {
    registry = host.services;
    const images = [IMAGE, VERBOSE];
    host.services.provide('images', { get: (ref) => images.find((i) => i.ref === ref), byDigest: () => undefined, list: () => images });
    host.services.provide('bootTokens', { issue: () => 'bootstrap' });
  },
};
const ADVERTISE = 'http://10.213.0.1:8080';
const spec = (name: string, mac: string, ipv4?: string) => ({ name, macs: [mac], bmc: 'ipmi://127.0.0.1', labels: { role: 'compute', rack: 'r7' }, ...(ipv4 ? { ipv4 } : {}) });

describe('NoCloud seed over HTTP', () => {
  let t: TestAppliance;
  let a: NodeRecord;
  let b: NodeRecord;

  beforeAll(async () => {
    t = await startTestAppliance({ modules: [services, createModule({ advertiseUrl: ADVERTISE })] });
    t.appliance.engine.executor.stop(); // the test arms boots itself
    expect((await t.api('POST', '/api/v1/nodes', spec('c01', '52:54:00:0c:00:01', '10.0.0.21'))).status).toBe(201);
    expect((await t.api('POST', '/api/v1/nodes', spec('c02', '52:54:00:0c:00:02'))).status).toBe(201);
    a = t.appliance.state.resolve('c01');
    b = t.appliance.state.resolve('c02');
    const profile = await t.api('PUT', '/api/v1/profiles/compute', {
      selector: 'role=compute',
      settings: {
        image: 'debian@1',
        hostname: '{{ name }}.lab',
        kernelArgs: ['net.ifnames=0'],
        sshAuthorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey ops@site'],
        userData: '#cloud-config\npackages: [htop]\n',
        files: [{ path: '/etc/shoal-test.conf', content: 'node={{ name }} rack={{ labels.rack }}\n', mode: '0640' }],
        network: { gateway: '10.0.0.1', dns: ['10.0.0.2'] },
      },
    });
    expect(profile.status).toBe(201);
    expect((await t.api('PUT', '/api/v1/nodes/c01/config', { network: { address: 'reservation', mtu: 9000 } })).status).toBe(200);
  });
  afterAll(() => t?.close());

  const arm = (node: NodeRecord) => t.appliance.engine.driverFor(node, 'boot')!.steps['boot.arm']!({ step: 'boot.arm', node, desired: {}, bmcPassword: undefined, signal: new AbortController().signal });
  const script = async (node: NodeRecord) => (await fetch(`${t.appliance.url}/boot/${node.macs[0]}.ipxe`)).text();
  const seedOf = async (node: NodeRecord) => /ds=nocloud-net;s=http:\/\/10\.213\.0\.1:8080\/nocloud\/([A-Za-z0-9_-]{32})\//.exec(await script(node))?.[1];
  const get = (seed: string, name: string) => fetch(`${t.appliance.url}/nocloud/${seed}/${name}`);

  it('arms a boot with the profile\'s image and kernel arguments, a seed URL and the network-config on the kernel command line', async () => {
    await arm(a);
    const text = await script(a);
    expect(text).toMatch(/shoal\.image=debian@1 ds=nocloud-net;s=http:\/\/10\.213\.0\.1:8080\/nocloud\/[A-Za-z0-9_-]{32}\/ network-config=[A-Za-z0-9+/]+=* net\.ifnames=0\n/);
  });

  it('refuses to arm a boot whose kernel command line would not fit, and keeps the boot armed before', async () => {
    const before = await script(a);
    await expect(t.appliance.engine.driverFor(a, 'boot')!.steps['boot.arm']!({ step: 'boot.arm', node: a, desired: { image: VERBOSE.ref }, bmcPassword: undefined, signal: new AbortController().signal })).rejects.toThrow(
      /^the kernel command line of c01's boot of verbose@1 would take \d+ bytes, over the 2047 the kernel keeps/,
    );
    expect(await script(a)).toBe(before);
  });

  it('serves the node its meta-data, user-data, vendor-data and network-config', async () => {
    const seed = (await seedOf(a))!;
    const meta = await get(seed, 'meta-data');
    expect(meta.status).toBe(200);
    expect(meta.headers.get('cache-control')).toBe('no-store');
    const digest = (await t.api('GET', '/api/v1/nodes/c01/config')).body.digest as string;
    expect(parse(await meta.text())).toEqual({ 'instance-id': `shoal-${a.id}-${digest}`, 'local-hostname': 'c01.lab', 'public-keys': ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey ops@site'] });
    const userData = await (await get(seed, 'user-data')).text();
    expect(userData.split('\n')[0]).toBe('#cloud-config');
    expect(parse(userData)).toEqual({
      packages: ['htop'],
      hostname: 'c01',
      fqdn: 'c01.lab',
      prefer_fqdn_over_hostname: true,
      ssh_authorized_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey ops@site'],
      write_files: [{ path: '/etc/shoal-test.conf', content: 'node=c01 rack=r7\n', permissions: '0640', owner: 'root:root' }],
    });
    expect((await get(seed, 'vendor-data')).status).toBe(200);
    const networkConfig = await (await get(seed, 'network-config')).text();
    expect(parse(networkConfig)).toEqual({
      version: 2,
      ethernets: { boot0: { match: { macaddress: '52:54:00:0c:00:01' }, addresses: ['10.0.0.21/24'], routes: [{ to: '0.0.0.0/0', via: '10.0.0.1' }], nameservers: { addresses: ['10.0.0.2'] }, mtu: 9000 } },
    });
    // The kernel command line carries the same document, as cloud-init decodes it: base64, gunzip'd if gzip.
    const blob = Buffer.from(/ network-config=(\S+)/.exec(await script(a))![1]!, 'base64');
    expect((blob[0] === 0x1f && blob[1] === 0x8b ? gunzipSync(blob) : blob).toString()).toBe(networkConfig);
    expect((await get(seed, 'passwd')).status).toBe(404);
  });

  it('serves the configuration as it is now: a changed profile changes the instance-id', async () => {
    const seed = (await seedOf(a))!;
    const before = await (await get(seed, 'meta-data')).text();
    const profile = (await t.api('GET', '/api/v1/profiles/compute')).body;
    await t.api('PUT', '/api/v1/profiles/compute', { selector: profile.selector, settings: { ...profile.settings, files: [{ path: '/etc/shoal-test.conf', content: 'v2\n' }] } });
    const after = await (await get(seed, 'meta-data')).text();
    expect(after).not.toBe(before);
    expect(await (await get(seed, 'user-data')).text()).toContain('content: |\n      v2\n');
  });

  it('takes the digest the node\'s agent reports as what it booted with: config current or stale against the profiles now', async () => {
    await arm(a);
    await fetch(`${t.appliance.url}/boot/${a.macs[0]}/vmlinuz`, { redirect: 'manual' });
    const now = (await t.api('GET', '/api/v1/nodes/c01/config')).body.digest as string;
    expect(t.appliance.state.observed(a.id).config).toMatchObject({ value: 'current', detail: now });
    const reports = registry.get('configReports')!;
    // The node says it got another configuration (a profile changed between the kernel fetch and its meta-data read).
    reports.booted(a.id, 'ab'.repeat(32));
    expect(t.appliance.state.observed(a.id).config).toMatchObject({ value: 'stale', detail: 'ab'.repeat(32) });
    reports.booted(a.id, now);
    expect(t.appliance.state.observed(a.id).config).toMatchObject({ value: 'current', detail: now });
  });

  it('refuses a seed of an earlier boot (404) once the node is armed again, and a made-up one', async () => {
    const first = (await seedOf(a))!;
    await arm(a);
    const second = (await seedOf(a))!;
    expect(second).not.toBe(first);
    expect((await get(first, 'user-data')).status).toBe(404);
    expect((await get(second, 'user-data')).status).toBe(200);
    expect((await get('A'.repeat(32), 'user-data')).status).toBe(404);
  });

  it('refuses (403) a node presenting another node\'s seed from its own address, and never sends that data', async () => {
    await arm(b);
    const seedA = (await seedOf(a))!;
    const seedB = (await seedOf(b))!;
    // From now on this test's address (loopback) is c02's reservation.
    expect((await t.api('PUT', '/api/v1/nodes/c02', spec('c02', '52:54:00:0c:00:02', '127.0.0.1'))).status).toBe(200);
    const refused = await get(seedA, 'user-data');
    expect(refused.status).toBe(403);
    expect(await refused.text()).not.toContain('c01');
    const own = await get(seedB, 'user-data');
    expect(own.status).toBe(200);
    expect(await own.text()).toContain('hostname: c02');
  });

  it('has no seed for a boot from disk', async () => {
    const seed = (await seedOf(b))!;
    await t.appliance.engine.driverFor(b, 'boot')!.steps['boot.disk']!({ step: 'boot.disk', node: b, desired: {}, bmcPassword: undefined, signal: new AbortController().signal });
    expect((await get(seed, 'meta-data')).status).toBe(404);
  });

  it('renders user-data that cloud-init itself accepts (cloud-init schema), where cloud-init is installed', async (ctx) => {
    if (spawnSync('sh', ['-c', 'command -v cloud-init']).status !== 0) {
      console.log('skipped: cloud-init is not installed on this host, so `cloud-init schema` cannot check the user-data');
      return ctx.skip();
    }
    const seed = (await seedOf(a))!;
    const dir = mkdtempSync(join(tmpdir(), 'shoal-nocloud-'));
    try {
      const path = join(dir, 'user-data');
      writeFileSync(path, await (await get(seed, 'user-data')).text());
      expect(() => execFileSync('cloud-init', ['schema', '--config-file', path], { stdio: 'pipe' })).not.toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the config facet', () => {
  let t: TestAppliance;
  let node: NodeRecord;
  beforeAll(async () => {
    t = await startTestAppliance({ modules: [services, createModule({ advertiseUrl: ADVERTISE })] });
    t.appliance.engine.executor.stop(); // the test arms boots and reads plans itself
    expect((await t.api('POST', '/api/v1/nodes', spec('k01', '52:54:00:0d:00:01', '10.0.0.31'))).status).toBe(201);
    node = t.appliance.state.resolve('k01');
    expect((await t.api('PUT', '/api/v1/profiles/compute', { selector: 'role=compute', settings: { image: 'debian@1', files: [{ path: '/etc/v', content: 'v1' }] } })).status).toBe(201);
  });
  afterAll(() => t?.close());

  const config = () => t.appliance.state.observed(node.id).config;
  const bootOnce = async () => {
    await t.appliance.engine.driverFor(node, 'boot')!.steps['boot.arm']!({ step: 'boot.arm', node, desired: {}, bmcPassword: undefined, signal: new AbortController().signal });
    expect((await fetch(`${t.appliance.url}/boot/${node.macs[0]}/vmlinuz`, { redirect: 'manual' })).status).toBe(302);
  };

  it('is current once the node fetched the kernel of a boot armed with its configuration', async () => {
    expect(config()).toBeUndefined();
    await bootOnce();
    const digest = (await t.api('GET', '/api/v1/nodes/k01/config')).body.digest;
    expect(config()).toMatchObject({ value: 'current', detail: digest });
  });

  it('goes stale when a profile changes what the node should run, and current again when changed back', async () => {
    const booted = config()!.detail;
    await t.api('PUT', '/api/v1/profiles/compute', { selector: 'role=compute', settings: { image: 'debian@1', files: [{ path: '/etc/v', content: 'v2' }] } });
    expect(config()).toMatchObject({ value: 'stale', detail: booted });
    await t.api('PUT', '/api/v1/profiles/compute', { selector: 'role=compute', settings: { image: 'debian@1', files: [{ path: '/etc/v', content: 'v1' }] } });
    expect(config()).toMatchObject({ value: 'current', detail: booted });
  });

  it('plans a stale node desired config=current as an image change: drain, reboot, boot again; the boot makes it current', async () => {
    await t.api('PUT', '/api/v1/profiles/compute', { selector: 'role=compute', settings: { image: 'debian@1', files: [{ path: '/etc/v', content: 'v3' }] } });
    expect(config()?.value).toBe('stale');
    t.appliance.state.observe(node.id, 'power', 'on', 'test');
    t.appliance.state.observe(node.id, 'run', 'ready', 'test');
    t.appliance.state.observe(node.id, 'boot', 'kernel', 'test');
    expect((await t.api('PATCH', '/api/v1/nodes/k01/desired', { config: 'current' })).status).toBe(200);
    const plan = await t.api('GET', '/api/v1/nodes/k01/plan');
    expect(plan.body.steps.map((s: { step: string }) => s.step)).toEqual(['boot.arm', 'run.drain', 'run.reboot', 'run.boot']);
    await bootOnce();
    expect(config()?.value).toBe('current');
  });
});
