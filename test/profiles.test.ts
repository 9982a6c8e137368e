// Profiles over the API of a real appliance: save, list, reach, merge with a node's overrides,
// refuse what does not render (naming the profile, the file and the line) without changing
// anything, read access for operators only, and the records surviving a restart.
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestAppliance, type TestAppliance } from './support/appliance.js';

const node = (name: string, mac: string, labels: Record<string, string>, ipv4?: string) => ({ name, macs: [mac], bmc: `sim://rack/${name}`, labels, ...(ipv4 ? { ipv4 } : {}) });
const COMPUTE = {
  selector: 'role=compute',
  settings: {
    hostname: '{{ name }}.lab',
    sshAuthorizedKeys: ['ssh-ed25519 AAAAC3Nza ops@site'],
    files: [{ path: '/etc/shoal-test.conf', content: 'rack={{ labels.rack }}\n' }],
    network: { address: 'reservation', gateway: '10.0.0.1' },
  },
};

describe('profiles over the API', () => {
  let t: TestAppliance;
  beforeAll(async () => {
    t = await startTestAppliance();
    for (const body of [node('c01', '52:54:00:00:00:01', { role: 'compute', rack: 'r1' }, '10.0.0.11'), node('c02', '52:54:00:00:00:02', { role: 'compute', rack: 'r2' }, '10.0.0.12'), node('l01', '52:54:00:00:00:03', { role: 'login' })]) {
      expect((await t.api('POST', '/api/v1/nodes', body)).status).toBe(201);
    }
  });
  afterAll(() => t?.close());

  it('creates a profile (201), replaces it (200), and shows which nodes it reaches', async () => {
    expect((await t.api('PUT', '/api/v1/profiles/compute', COMPUTE)).status).toBe(201);
    const replaced = await t.api('PUT', '/api/v1/profiles/compute', { ...COMPUTE, priority: 10 });
    expect(replaced.status).toBe(200);
    expect(replaced.body).toMatchObject({ name: 'compute', priority: 10, selector: 'role=compute', reaches: ['c01', 'c02'], updatedBy: 'operator:admin' });
    const list = await t.api('GET', '/api/v1/profiles');
    expect(list.body.profiles.map((p: { name: string }) => p.name)).toEqual(['compute']);
  });

  it('answers a node\'s effective configuration with who set each value and its digest, and takes its overrides', async () => {
    const before = await t.api('GET', '/api/v1/nodes/c01/config');
    expect(before.status).toBe(200);
    expect(before.body).toMatchObject({ node: 'c01', profiles: ['compute'], sources: { hostname: 'profile:compute', 'network.address': 'profile:compute' }, overrides: {} });
    expect(before.body.digest).toMatch(/^[0-9a-f]{64}$/);
    const put = await t.api('PUT', '/api/v1/nodes/c01/config', { hostname: 'head-{{ name }}', kernelArgs: ['quiet'] });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ settings: { hostname: 'head-{{ name }}', kernelArgs: ['quiet'] }, sources: { hostname: 'node', 'kernelArgs:quiet': 'node', 'files:/etc/shoal-test.conf': 'profile:compute' } });
    expect(put.body.digest).not.toBe(before.body.digest);
    // The other node of the profile is untouched.
    expect((await t.api('GET', '/api/v1/nodes/c02/config')).body.sources.hostname).toBe('profile:compute');
  });

  it('refuses a template that does not render for a node it reaches: 400 naming the profile, the file, the line; nothing changes', async () => {
    const revision = t.appliance.state.revision;
    const res = await t.api('PUT', '/api/v1/profiles/compute', { ...COMPUTE, settings: { ...COMPUTE.settings, files: [{ path: '/etc/x', content: 'ok\n{{ labels.row }}\n' }] } });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ title: 'Template does not render', profile: 'compute', where: 'profile compute, file /etc/x', line: 2 });
    expect(res.body.detail).toContain('undefined variable: labels.row');
    const userData = await t.api('PUT', '/api/v1/profiles/compute', { ...COMPUTE, settings: { ...COMPUTE.settings, userData: '#cloud-config\npackages: [htop\n' } });
    expect(userData.status).toBe(400);
    expect(userData.body.where).toBe('profile compute, user-data');
    const header = await t.api('PUT', '/api/v1/profiles/compute', { ...COMPUTE, settings: { userData: 'packages: [htop]\n' } });
    expect(header.body.detail).toMatch(/must start with a "#cloud-config" line/);
    expect(t.appliance.state.revision).toBe(revision);
    expect((await t.api('GET', '/api/v1/profiles/compute')).body.settings.files[0].path).toBe('/etc/shoal-test.conf');
  });

  it('checks a profile that reaches no node against a sample node with the labels its selector asks for', async () => {
    expect((await t.api('PUT', '/api/v1/profiles/gpu', { selector: 'role=gpu', settings: { files: [{ path: '/etc/gpu', content: '{{ labels.role }} {{ name }}' }] } })).status).toBe(201);
    const res = await t.api('PUT', '/api/v1/profiles/gpu', { selector: 'role=gpu', settings: { files: [{ path: '/etc/gpu', content: '{{ labels.rack }}' }] } });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ profile: 'gpu', node: 'sample', line: 1 });
  });

  it('refuses a node change that would leave its configuration unrenderable', async () => {
    // Without a rack label, compute's file cannot render; without an ipv4, there is no reservation.
    const res = await t.api('PUT', '/api/v1/nodes/c02', node('c02', '52:54:00:00:00:02', { role: 'compute' }, '10.0.0.12'));
    expect(res.status).toBe(400);
    expect(res.body.detail).toContain('labels.rack');
    const enrol = await t.api('POST', '/api/v1/nodes', node('c03', '52:54:00:00:00:04', { role: 'compute', rack: 'r3' }));
    expect(enrol.status).toBe(400);
    expect(enrol.body.detail).toMatch(/no reserved address/);
    expect((await t.api('GET', '/api/v1/nodes/c03')).status).toBe(404);
  });

  it('answers 400 for a bad name or body and 404 for an unknown profile', async () => {
    expect((await t.api('PUT', '/api/v1/profiles/Bad_Name', {})).status).toBe(400);
    const bad = await t.api('PUT', '/api/v1/profiles/x', { settings: { files: [{ path: 'relative', content: '' }] } });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].path).toBe('settings.files.0.path');
    expect((await t.api('GET', '/api/v1/profiles/nope')).status).toBe(404);
    expect((await t.api('DELETE', '/api/v1/profiles/nope')).status).toBe(404);
  });

  it('lets a viewer read neither profiles nor node configuration (user-data may hold secrets)', async () => {
    const { body } = await t.api('POST', '/api/v1/users', { name: 'vera', role: 'viewer' });
    const as = (path: string) => t.api('GET', path, undefined, { authorization: `Bearer ${body.token}` });
    expect((await as('/api/v1/profiles')).status).toBe(403);
    expect((await as('/api/v1/nodes/c01/config')).status).toBe(403);
    expect((await as('/api/v1/nodes/c01')).status).toBe(200);
    // Nor through the event log, where a profile's record holds its settings.
    const profileEvents = (events: { kind: string; new: string | null }[]) => events.filter((e) => e.kind === 'profile');
    const asViewer = profileEvents((await as('/api/v1/events?limit=10000')).body.events);
    expect(asViewer.length).toBeGreaterThan(0);
    expect(asViewer.every((e) => e.new === null || e.new === '(set)')).toBe(true);
    expect(profileEvents((await t.api('GET', '/api/v1/events?limit=10000')).body.events).some((e) => e.new?.includes('shoal-test.conf'))).toBe(true);
    const stream = await fetch(`${t.appliance.url}/api/v1/events/stream`, { headers: { authorization: `Bearer ${body.token}` } });
    const reader = stream.body!.getReader();
    let text = '';
    while (!text.includes('event: profile')) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    expect(text).not.toContain('shoal-test.conf');
  });

  it('removes a profile: its nodes lose what it set', async () => {
    expect((await t.api('DELETE', '/api/v1/profiles/gpu')).status).toBe(204);
    expect((await t.api('GET', '/api/v1/profiles/gpu')).status).toBe(404);
  });
});

describe('profiles across a restart', () => {
  it('keeps profiles and node overrides, and drops the overrides of a removed node', async () => {
    const first = await startTestAppliance();
    const dataDir = first.dataDir;
    let second: TestAppliance | undefined;
    try {
      await first.api('POST', '/api/v1/nodes', node('c01', '52:54:00:00:00:01', { role: 'compute', rack: 'r1' }, '10.0.0.11'));
      await first.api('POST', '/api/v1/nodes', node('c02', '52:54:00:00:00:02', { role: 'compute', rack: 'r1' }, '10.0.0.12'));
      await first.api('PUT', '/api/v1/profiles/compute', COMPUTE);
      await first.api('PUT', '/api/v1/nodes/c01/config', { hostname: 'one' });
      await first.api('PUT', '/api/v1/nodes/c02/config', { hostname: 'two' });
      await first.api('DELETE', '/api/v1/nodes/c02');
      const digest = (await first.api('GET', '/api/v1/nodes/c01/config')).body.digest;
      await first.appliance.stop();
      second = await startTestAppliance({ dataDir });
      const config = await second.api('GET', '/api/v1/nodes/c01/config');
      expect(config.body).toMatchObject({ profiles: ['compute'], overrides: { hostname: 'one' }, digest });
      await second.api('POST', '/api/v1/nodes', node('c02', '52:54:00:00:00:02', { role: 'compute', rack: 'r1' }, '10.0.0.12'));
      expect((await second.api('GET', '/api/v1/nodes/c02/config')).body.overrides).toEqual({});
      const events = await second.api('GET', '/api/v1/events?limit=10000');
      expect(events.body.events.filter((e: { kind: string; facet: string }) => e.kind === 'profile' && e.facet === 'compute')).toHaveLength(1);
    } finally {
      await second?.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('profiles in the inventory file', () => {
  let t: TestAppliance;
  beforeAll(async () => {
    t = await startTestAppliance();
  });
  afterAll(() => t?.close());

  const RACK = `profiles:
  - name: compute
    selector: role=compute
    settings:
      hostname: "{{ name }}.lab"
      files:
        - path: /etc/rack
          content: "{{ labels.rack }}"
nodes:
  - name: c01
    macs: [52:54:00:00:10:01]
    bmc: sim://c01
    ipv4: 10.0.0.21
    labels: {role: compute, rack: r1}
    config:
      network: {address: reservation, gateway: 10.0.0.1}
  - name: c02
    macs: [52:54:00:00:10:02]
    bmc: sim://c02
    labels: {role: compute, rack: r2}
`;

  it('refuses the whole file when a template does not render for one node, with the line; nothing is written', async () => {
    const broken = RACK.replace('labels: {role: compute, rack: r2}', 'labels: {role: compute}');
    const res = await t.api('POST', '/api/v1/inventory', broken);
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([{ line: 17, message: expect.stringContaining('profile compute, file /etc/rack, line 1: undefined variable: labels.rack (rendering for node c02)') }]);
    expect((await t.api('GET', '/api/v1/nodes')).body.nodes).toEqual([]);
    expect((await t.api('GET', '/api/v1/profiles')).body.profiles).toEqual([]);
    const badProfile = await t.api('POST', '/api/v1/inventory', RACK.replace('selector: role=compute', 'selector: role'));
    expect(badProfile.body.errors).toEqual([{ line: 2, message: expect.stringContaining('selector') }]);
  });

  it('imports profiles and node overrides with the nodes, and exports them back (to operators only)', async () => {
    expect((await t.api('POST', '/api/v1/inventory', RACK)).status).toBe(201);
    expect((await t.api('GET', '/api/v1/nodes/c01/config')).body).toMatchObject({ profiles: ['compute'], sources: { 'network.address': 'node', 'files:/etc/rack': 'profile:compute' } });
    const exported = await t.api('GET', '/api/v1/inventory');
    const { parse } = await import('yaml');
    const doc = parse(exported.body as string);
    expect(doc.profiles).toEqual([{ name: 'compute', priority: 0, selector: 'role=compute', nodes: [], settings: { hostname: '{{ name }}.lab', files: [{ path: '/etc/rack', content: '{{ labels.rack }}', mode: '0644', owner: 'root:root' }] } }]);
    expect(doc.nodes[0].config).toEqual({ network: { address: 'reservation', gateway: '10.0.0.1' } });
    // The export imports again into an empty appliance as the same configuration.
    const other = await startTestAppliance();
    try {
      expect((await other.api('POST', '/api/v1/inventory', exported.body)).status).toBe(201);
      expect((await other.api('GET', '/api/v1/nodes/c01/config')).body.settings).toEqual((await t.api('GET', '/api/v1/nodes/c01/config')).body.settings);
    } finally {
      await other.close();
    }
    const { body } = await t.api('POST', '/api/v1/users', { name: 'vic', role: 'viewer' });
    const asViewer = parse((await t.api('GET', '/api/v1/inventory', undefined, { authorization: `Bearer ${body.token}` })).body as string);
    expect(asViewer.profiles).toBeUndefined();
    expect(asViewer.nodes[0].config).toBeUndefined();
  });

  it('refuses a profile that exists already', async () => {
    const res = await t.api('POST', '/api/v1/inventory', 'profiles:\n  - name: compute\nnodes: []\n');
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([{ line: 2, message: 'a profile named compute already exists' }]);
  });
});
