// The wire types of src/api/views.ts against the replies of a running appliance: every route the
// CLI and the dashboard read answers with exactly the shape they are typed with (strict schemas:
// a field missing, mistyped or not declared fails here, not in an operator's terminal).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import * as views from '../src/api/views.js';
import { createModule as createPxeModule } from '../modules/pxe/index.js';
import { createModule as createImagesModule } from '../modules/images/index.js';
import { createModule as createAgentModule } from '../modules/agent/index.js';
import { writeFakeImage } from './support/fake-image.js';
import { startTestAppliance, until, type TestAppliance } from './support/appliance.js';

let t: TestAppliance;
let work: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'shoal-views-'));
  const image = writeFakeImage(join(work, 'compute@7'), { name: 'compute', version: '7', kernel: Buffer.from('kernel'), initrd: Buffer.from('initrd') });
  t = await startTestAppliance({
    sim: { latencies: { probeMs: 5, powerMs: 20, armMs: 5, bootStageMs: 10, drainMs: 5, lostAfterMs: 100 } },
    modules: [createPxeModule({ advertiseUrl: 'http://127.0.0.1:1' }), createImagesModule({ import: [image.dir] }), createAgentModule({ intervalSeconds: 5, lostAfterMs: 20_000 })],
  });
  for (const name of ['v01', 'v02']) {
    await t.api('POST', '/api/v1/nodes', { name, macs: [`52:54:00:77:00:0${name.at(-1)}`], bmc: `sim://${name}`, labels: { role: 'views' } });
  }
  await t.api('PATCH', '/api/v1/nodes/v01/desired', { power: 'on', image: 'compute@1' });
  await until(t.appliance, () => t.appliance.engine.executor.status(t.appliance.state.resolve('v01').id).phase === 'converged', 20_000, 'v01 converged');
  await t.api('PATCH', '/api/v1/nodes/v02/desired', { image: 'compute@7' });
  await fetch(`${t.appliance.url}/boot/52:54:00:77:00:99.ipxe`);
});
afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

async function reply<S extends z.ZodType>(schema: S, method: string, path: string, body?: unknown): Promise<z.infer<S>> {
  const res = await t.api(method, `/api/v1${path}`, body);
  expect(res.status, `${method} ${path}: ${JSON.stringify(res.body)}`).toBeLessThan(300);
  const parsed = schema.safeParse(res.body);
  expect(parsed.error?.issues ?? [], `${method} ${path}`).toEqual([]);
  return parsed.data as z.infer<S>;
}

describe('the API replies as src/api/views.ts types them', { timeout: 60_000 }, () => {
  it('nodes, one node, its plan, freeze and thaw', async () => {
    const list = await reply(views.NodeListSchema, 'GET', '/nodes');
    expect(list.nodes.map((n) => n.name)).toEqual(['v01', 'v02']);
    const v01 = list.nodes[0]!;
    expect(v01.observed.power?.value).toBe('on');
    expect(v01.desired).toEqual({ power: 'on', image: 'compute@1' });
    await reply(views.NodeViewSchema, 'GET', '/nodes/v02');
    await reply(views.NodeViewSchema, 'POST', '/nodes/v02/freeze');
    expect((await reply(views.NodeViewSchema, 'POST', '/nodes/v02/thaw')).frozen).toBe(false);
    expect(await reply(views.FrozenViewSchema, 'POST', '/thaw')).toEqual({ frozen: false });
    const plan = await reply(views.PlanViewSchema, 'GET', '/nodes/v01/plan');
    expect(plan).toMatchObject({ node: 'v01', phase: 'converged', reachable: true, steps: [] });
    const planned = await reply(views.PlanViewSchema, 'GET', '/nodes/v02/plan');
    expect(Object.keys(planned.target)).toContain('image');
  });

  it('the facets an operator can desire', async () => {
    const { facets } = await reply(views.DesirableFacetListSchema, 'GET', '/desired-facets');
    expect(facets.map((f) => f.facet)).toEqual(['power', 'boot', 'run', 'image', 'disk', 'config']);
    expect(facets[0]).toEqual({ facet: 'power', values: ['on', 'off'] });
    expect(facets[3]).toMatchObject({ facet: 'image', describe: 'an image is name@version, e.g. compute@2' });
  });

  it('the event log', async () => {
    const { events } = await reply(views.EventListSchema, 'GET', '/events');
    expect(['node', 'desired', 'observed'].filter((kind) => !events.some((e) => e.kind === kind))).toEqual([]);
  });

  it('rollouts', async () => {
    const started = await reply(views.RolloutViewSchema, 'POST', '/rollouts', { selector: 'role=views', desired: { power: 'off' }, maxUnavailable: '50%' });
    expect(started.counts.total).toBe(2);
    await reply(views.RolloutViewSchema, 'GET', `/rollouts/${started.id}`);
    expect((await reply(views.RolloutListSchema, 'GET', '/rollouts')).rollouts.map((r) => r.id)).toContain(started.id);
    await reply(views.RolloutViewSchema, 'POST', `/rollouts/${started.id}/cancel`);
  });

  it('images, discovered machines and agents, the modules\' routes', async () => {
    const { images } = await reply(views.ImageListSchema, 'GET', '/images');
    expect(images.find((i) => i.ref === 'compute@7')?.nodes).toEqual(['v02']);
    await reply(views.ImageViewSchema, 'GET', '/images/compute@7');
    const { discovered } = await reply(views.DiscoveredListSchema, 'GET', '/discovered');
    expect(discovered.map((m) => m.mac)).toEqual(['52:54:00:77:00:99']);
    await reply(views.AgentListSchema, 'GET', '/agents');
  });

  it('profiles and a node\'s effective configuration', async () => {
    const settings = { hostname: '{{ name }}.lab', files: [{ path: '/etc/motd', content: '{{ labels.role }}' }] };
    expect((await reply(views.ProfileViewSchema, 'PUT', '/profiles/views', { selector: 'role=views', settings })).reaches).toEqual(['v01', 'v02']);
    await reply(views.ProfileViewSchema, 'GET', '/profiles/views');
    await reply(views.ProfileListSchema, 'GET', '/profiles');
    await reply(views.NodeConfigViewSchema, 'PUT', '/nodes/v01/config', { kernelArgs: ['quiet'] });
    expect((await reply(views.NodeConfigViewSchema, 'GET', '/nodes/v01/config')).sources).toMatchObject({ hostname: 'profile:views', 'kernelArgs:quiet': 'node' });
  });

  it('users: the list, and a new user with its token', async () => {
    const created = await reply(views.UserCreatedSchema, 'POST', '/users', { name: 'views', role: 'viewer' });
    expect(created.token).not.toBe('');
    const { users } = await reply(views.UserListSchema, 'GET', '/users');
    expect(users.map((u) => u.name)).toEqual(['admin', 'views']);
  });

  it('appliances: on SQLite the one appliance, owning every node, with no lease', async () => {
    const list = await reply(views.ApplianceListSchema, 'GET', '/appliances');
    expect(list.appliances).toEqual([{ name: list.self, networks: ['0.0.0.0/0', '::/0'], standbyFor: null, lease: null, nodes: 2 }]);
  });
});
