// The operator API: auth, validation at the edge, problem+json, inventory, plans, events and SSE.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestAppliance, until, type TestAppliance } from './support/appliance.js';

let t: TestAppliance;
beforeAll(async () => {
  t = await startTestAppliance({ sim: { latencies: { probeMs: 1, powerMs: 2, armMs: 1, bootStageMs: 2, drainMs: 2, lostAfterMs: 10 } } });
});
afterAll(async () => t.close());

let macs = 0;
const node = (name: string, extra: Record<string, unknown> = {}) => ({ name, macs: [`52:54:00:aa:00:${(++macs).toString(16).padStart(2, '0')}`], bmc: `sim://bmc-${name}`, ...extra });

describe('auth', () => {
  it('refuses a call without a token, and one with a wrong token, as problem+json', async () => {
    for (const headers of [{ authorization: '' }, { authorization: 'Bearer nope' }, { authorization: `Bearer ${t.appliance.token}x` }]) {
      const res = await t.api('GET', '/api/v1/nodes', undefined, headers);
      expect(res.status).toBe(401);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(res.headers.get('www-authenticate')).toContain('Bearer');
      expect(res.body.detail).toMatch(/token/);
    }
    expect((await t.api('GET', '/metrics', undefined, { authorization: '' })).status).toBe(401);
  });
});

describe('nodes', () => {
  it('enrolls a node, keeps its BMC password out of every read, and refuses duplicates', async () => {
    const res = await t.api('POST', '/api/v1/nodes', node('a01', { bmc: 'sim://admin:hunter2@bmc-a01', labels: { rack: 'r1' } }));
    expect(res.status).toBe(201);
    expect(res.body.bmc).toBe('sim://admin@bmc-a01');
    const all = JSON.stringify((await t.api('GET', '/api/v1/nodes')).body) + JSON.stringify((await t.api('GET', '/api/v1/inventory')).body);
    expect(all).not.toContain('hunter2');
    expect(t.appliance.state.bmcPassword(res.body.id)).toBe('hunter2');
    const events = JSON.stringify((await t.api('GET', '/api/v1/events')).body);
    expect(events).not.toContain('hunter2');
    const dup = await t.api('POST', '/api/v1/nodes', node('a01'));
    expect(dup.status).toBe(409);
    const dupMac = await t.api('POST', '/api/v1/nodes', { ...node('a02'), macs: ['52:54:00:aa:00:01'] });
    expect(dupMac.status).toBe(409);
    expect(dupMac.body.detail).toContain('already belongs to a01');
  });

  it('answers bad bodies with 400 and the field at fault, changing nothing', async () => {
    const before = t.appliance.state.revision;
    const cases: [unknown, RegExp][] = [
      [{ ...node('b01'), macs: ['zz'] }, /macs\.0: a MAC is six hex pairs/],
      [{ ...node('b02'), bmc: 'telnet://x' }, /BMC scheme "telnet" is not supported/],
      [{ ...node('B03') }, /name: a name is/],
      [{ ...node('b04'), colour: 'red' }, /colour|Unrecognized key/],
      [{ name: 'b05', bmc: 'sim://x' }, /macs/],
    ];
    for (const [body, detail] of cases) {
      const res = await t.api('POST', '/api/v1/nodes', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.detail).toMatch(detail);
    }
    const broken = await fetch(`${t.appliance.url}/api/v1/nodes`, { method: 'POST', headers: { authorization: `Bearer ${t.appliance.token}`, 'content-type': 'application/json' }, body: '{"name":' });
    expect(broken.status).toBe(400);
    expect(((await broken.json()) as { title: string }).title).toBe('Invalid JSON');
    await t.appliance.state.flush();
    expect(t.appliance.state.revision).toBe(before);
  });

  it('validates desired-state patches, and 404s an unknown node', async () => {
    await t.api('POST', '/api/v1/nodes', node('c01'));
    for (const body of [{ power: 'maybe' }, { image: 'no-version' }, { power: 'off', run: 'ready' }, {}, { colour: 'x' }]) {
      const res = await t.api('PATCH', '/api/v1/nodes/c01/desired', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    expect((await t.api('PATCH', '/api/v1/nodes/zz99/desired', { power: 'on' })).status).toBe(404);
    const ok = await t.api('PATCH', '/api/v1/nodes/c01/desired', { power: 'on', image: 'compute@1' });
    expect(ok.status).toBe(200);
    expect(ok.body.desired).toEqual({ power: 'on', image: 'compute@1' });
    const cleared = await t.api('PATCH', '/api/v1/nodes/c01/desired', { power: null });
    expect(cleared.body.desired).toEqual({ image: 'compute@1' });
  });

  it('explains the plan of a node', async () => {
    await t.api('POST', '/api/v1/nodes', node('d01'));
    await t.appliance.state.setFrozen(t.appliance.state.resolve('d01').id, true, 'test');
    await t.api('PATCH', '/api/v1/nodes/d01/desired', { image: 'compute@1' });
    const plan = await t.api('GET', '/api/v1/nodes/d01/plan');
    expect(plan.body.phase).toBe('frozen');
    expect(plan.body.steps.map((s: { step: string }) => s.step)).toEqual(['power.probe', 'boot.arm', 'power.on', 'run.boot']);
    expect(plan.body.steps[0].explain).toMatch(/BMC/);
  });
});

describe('inventory', () => {
  it('reports a bad row with its line and imports nothing', async () => {
    const before = (await t.api('GET', '/api/v1/nodes')).body.nodes.length;
    const yaml = ['nodes:', '  - name: e01', '    macs: ["52:54:00:ee:00:01"]', '    bmc: sim://e01', '  - name: e02', '    macs: ["not-a-mac"]', '    bmc: sim://e02', ''].join('\n');
    const res = await t.api('POST', '/api/v1/inventory', yaml);
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([{ line: 5, message: expect.stringContaining('MAC') }]);
    expect((await t.api('GET', '/api/v1/nodes')).body.nodes.length).toBe(before);
  });

  it('imports a rack with desired state and exports it back', async () => {
    const yaml = [
      'nodes:',
      ...Array.from({ length: 5 }, (_, i) => [`  - name: f0${i}`, `    macs: ["52:54:00:ff:00:0${i}"]`, `    bmc: sim://f0${i}`, '    labels: { rack: rf }', '    desired: { power: "on" }']).flat(),
      '',
    ].join('\n');
    const res = await t.api('POST', '/api/v1/inventory', yaml);
    expect(res.status).toBe(201);
    expect(res.body.imported).toBe(5);
    const listed = await t.api('GET', '/api/v1/nodes?selector=rack=rf');
    expect(listed.body.nodes.map((n: { name: string }) => n.name).sort()).toEqual(['f00', 'f01', 'f02', 'f03', 'f04']);
    expect(listed.body.nodes[0].desired).toEqual({ power: 'on' });
    const exported = await t.api('GET', '/api/v1/inventory');
    expect(exported.body).toContain('name: f03');
    expect(exported.body).toContain('bmc: sim://f03');

    // The hardware two of them reported selects them; a term the parser cannot read is a 400 that says why.
    const { state } = t.appliance;
    const report = (memoryGib: number) =>
      JSON.stringify({ firmware: 'uefi', system: { vendor: 'QEMU', product: '', serial: '', uuid: '' }, cpu: { model: '', sockets: 1, cores: 4, threads: 8 }, memoryBytes: memoryGib * 1024 ** 3, disks: [], nics: [] });
    state.observe(state.resolve('f01').id, 'hardware', 'sha256:01', 'agent', report(128));
    state.observe(state.resolve('f02').id, 'hardware', 'sha256:02', 'agent', report(16));
    const large = await t.api('GET', `/api/v1/nodes?selector=${encodeURIComponent('rack=rf,hw.memory>=64Gi')}`);
    expect(large.body.nodes.map((n: { name: string }) => n.name)).toEqual(['f01']);
    const bad = await t.api('GET', `/api/v1/nodes?selector=${encodeURIComponent('hw.memory>=lots')}`);
    expect(bad.status).toBe(400);
    expect(bad.body.detail).toMatch(/hw\.memory takes a size in bytes or with Ki, Mi, Gi or Ti/);
  });
});

describe('events', () => {
  it('replays the log from a revision and streams live events, resumable with Last-Event-ID', async () => {
    const first = (await t.api('GET', '/api/v1/events?after=0&limit=3')).body.events;
    expect(first).toHaveLength(3);
    expect(first[0].rev).toBeLessThan(first[1].rev);
    const from = first[2].rev;
    const controller = new AbortController();
    const res = await fetch(`${t.appliance.url}/api/v1/events/stream`, { headers: { authorization: `Bearer ${t.appliance.token}`, 'last-event-id': String(from) }, signal: controller.signal });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const seen: number[] = [];
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    await t.api('POST', '/api/v1/nodes', node('g01'));
    const target = t.appliance.state.revision;
    while (!seen.includes(target)) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value);
      for (const m of buffer.matchAll(/^id: (\d+)$/gm)) if (!seen.includes(Number(m[1]))) seen.push(Number(m[1]));
    }
    controller.abort();
    expect(seen[0]).toBe(from + 1);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toContain(target);
  });

  it('rejects a malformed Last-Event-ID', async () => {
    const res = await t.api('GET', '/api/v1/events/stream', undefined, { 'last-event-id': 'yesterday' });
    expect(res.status).toBe(400);
  });
});

describe('documents', () => {
  it('serves an OpenAPI document, the facet graph and Prometheus metrics', async () => {
    const doc = await t.api('GET', '/api/v1/openapi.json');
    expect(doc.body.openapi).toBe('3.1.0');
    expect(doc.body.paths['/nodes/{ref}/desired'].patch).toBeDefined();
    expect(doc.body.components.schemas.NodeInput.properties.macs).toBeDefined();
    const graph = await t.api('GET', '/api/v1/graph');
    expect(graph.body.lint).toEqual([]);
    expect(graph.body.steps.map((s: { name: string }) => s.name)).toContain('power.on');
    await until(t.appliance, () => t.appliance.engine.executor.phaseCounts().converged > 0, 10_000, 'a converged node');
    const metrics = await t.api('GET', '/metrics');
    expect(metrics.body).toMatch(/shoal_steps_total\{step="power.on",outcome="confirmed"\} \d+/);
    expect(metrics.body).toMatch(/shoal_nodes\{phase="converged"\} [1-9]/);
  });
});
