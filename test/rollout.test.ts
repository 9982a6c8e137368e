// Rollouts against the simulated rack: a change over a label selector that never has more than
// maxUnavailable nodes of the group unavailable, stops on a failed node, pauses, resumes, refuses bad
// input without changing anything, and goes on after a restart.
import { afterEach, describe, expect, it } from 'vitest';
import type { NodeRecord } from '../src/domain/node.js';
import { simSpecs, startTestAppliance, until, type TestAppliance } from './support/appliance.js';

// Slow enough that several nodes are under way at once, fast enough for 30 nodes in a few seconds.
const LATENCIES = { probeMs: 5, powerMs: 40, armMs: 5, bootStageMs: 40, drainMs: 20, lostAfterMs: 200 };

let t: TestAppliance | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

/** Enrolls `count` nodes labelled `labels` and waits until they run `image`. */
async function enroll(t: TestAppliance, count: number, prefix: string, labels: Record<string, string>, image = 'compute@1'): Promise<NodeRecord[]> {
  const { state, engine } = t.appliance;
  // MACs told apart by the prefix, so that several groups can be enrolled.
  const specs = simSpecs(count, prefix).map((spec) => ({ ...spec, macs: spec.macs.map((m) => m.replace(/^52:54:00:00/, `52:54:00:${prefix.charCodeAt(0).toString(16)}`)), labels }));
  const nodes = await state.addNodes(specs.map((spec) => ({ spec })), 'test');
  for (const n of nodes) await state.setDesired(n.id, { power: 'on', image }, 'test');
  await until(t.appliance, () => nodes.every((n) => engine.executor.status(n.id).phase === 'converged'), 60_000, `${prefix} nodes on ${image}`);
  return nodes;
}

/**
 * Counts the group's nodes the engine does not call converged, on every change event (in memory,
 * as the change happens, and after each commit), and keeps the highest count seen.
 */
function sampleUnavailable(t: TestAppliance, nodes: NodeRecord[], ignore: (n: NodeRecord) => boolean = () => false) {
  const { state, engine } = t.appliance;
  const sampler = { max: 0, samples: 0, stop: () => {} };
  const sample = () => {
    let down = 0;
    for (const n of nodes) if (!ignore(n) && engine.executor.status(n.id).phase !== 'converged') down++;
    sampler.max = Math.max(sampler.max, down);
    sampler.samples++;
  };
  state.on('node', sample);
  state.on('events', sample);
  sampler.stop = () => {
    state.off('node', sample);
    state.off('events', sample);
  };
  return sampler;
}

const rolloutDone = (t: TestAppliance, id: string, status = 'done') =>
  until(t.appliance, () => t.appliance.engine.rollouts.get(id).status === status, 120_000, `rollout ${id} ${status}`);

describe('rollouts', () => {
  it('rolls a new image over 30 labelled nodes with at most 5 unavailable at a time, leaving the rest alone', { timeout: 180_000 }, async () => {
    t = await startTestAppliance({ sim: { latencies: LATENCIES } });
    const { state, engine } = t.appliance;
    const group = await enroll(t, 30, 'c', { role: 'compute', rack: 'r1' });
    const others = await enroll(t, 4, 'l', { role: 'login', rack: 'r1' });
    await state.flush();

    const sampler = sampleUnavailable(t, group);
    const res = await t.api('POST', '/api/v1/rollouts', { selector: 'role=compute,rack=r1', desired: { image: 'compute@2' }, maxUnavailable: 5 });
    expect(res.status).toBe(201);
    expect(res.headers.get('location')).toBe(`/api/v1/rollouts/${res.body.id}`);
    expect(res.body).toMatchObject({ status: 'running', selector: 'role=compute,rack=r1', desired: { image: 'compute@2' }, maxUnavailable: 5, limit: 5, counts: { total: 30, pending: 30 }, unavailable: 0 });
    expect(res.body.nodes.map((n: { name: string }) => n.name)).toEqual(group.map((n) => n.name));
    const id = res.body.id as string;

    await rolloutDone(t, id);
    sampler.stop();
    // The budget held on every change, and it was used: several nodes were under way at once.
    expect(sampler.max).toBeLessThanOrEqual(5);
    expect(sampler.max).toBeGreaterThanOrEqual(3);
    expect(sampler.samples).toBeGreaterThan(100);
    for (const n of group) {
      expect(state.desired(n.id)).toEqual({ power: 'on', image: 'compute@2' });
      expect(state.observed(n.id).image?.value).toBe('compute@2');
      expect(engine.executor.status(n.id).phase).toBe('converged');
    }
    for (const n of others) expect(state.desired(n.id).image).toBe('compute@1');

    const view = (await t.api('GET', `/api/v1/rollouts/${id}`)).body;
    expect(view).toMatchObject({ status: 'done', counts: { total: 30, done: 30, pending: 0, 'in-progress': 0, failed: 0 } });
    expect(view.nodes.every((n: { state: string; phase: string }) => n.state === 'done' && n.phase === 'converged')).toBe(true);
    expect((await t.api('GET', '/api/v1/rollouts')).body.rollouts.map((r: { id: string; status: string }) => [r.id, r.status])).toEqual([[id, 'done']]);

    // The log tells the story: every desired change written by the rollout, and from its own records,
    // never more than 5 nodes between in-progress and done.
    await state.flush();
    const events = await state.events({ limit: 10_000 });
    const changes = events.filter((e) => e.kind === 'desired' && e.facet === 'image' && e.new === 'compute@2');
    expect(changes).toHaveLength(30);
    expect(new Set(changes.map((e) => e.writer))).toEqual(new Set([`rollout:${id}`]));
    let underWay = 0;
    let peak = 0;
    for (const e of events.filter((e) => e.kind === 'rollout' && e.nodeId !== null)) {
      if (e.new === 'in-progress') underWay++;
      if (e.old === 'in-progress') underWay--;
      peak = Math.max(peak, underWay);
    }
    expect(peak).toBeLessThanOrEqual(5);
    expect(events.filter((e) => e.kind === 'rollout' && e.nodeId === null).map((e) => e.new)).toEqual(['running', 'done']);
  });

  it('rolls an image over 50 nodes through kexec with a fraction of the unavailability of reboots through the firmware', { timeout: 240_000 }, async () => {
    // Firmware pays its power-on self-test (scaled down: a real server's is 1 to 5 minutes); a kexec does not.
    const latencies = { ...LATENCIES, postMs: 400, kexecMs: 40 };
    const unavailableMs: Record<string, number> = {};
    for (const [path, kexec] of [['kexec', true], ['reboot', false]] as const) {
      t = await startTestAppliance({ sim: { latencies, kexec } });
      const { engine } = t.appliance;
      const group = await enroll(t, 50, 'k', { role: 'compute' });
      // Node-milliseconds not converged, from the executor's phase changes.
      const since = new Map<string, number>();
      let total = 0;
      const onPhase = (id: string, phase: string | undefined) => {
        if (phase !== 'converged' && !since.has(id)) since.set(id, Date.now());
        if (phase === 'converged' && since.has(id)) total += Date.now() - since.get(id)!, since.delete(id);
      };
      engine.executor.on('phase', onPhase);
      const sampler = sampleUnavailable(t, group);
      const id = (await t.api('POST', '/api/v1/rollouts', { selector: 'role=compute', desired: { image: 'compute@2' }, maxUnavailable: 5 })).body.id as string;
      await rolloutDone(t, id);
      engine.executor.off('phase', onPhase);
      sampler.stop();
      expect(sampler.max).toBeLessThanOrEqual(5);
      await t.appliance.state.flush();
      const events = await t.appliance.state.events({ limit: 1_000_000 });
      const powerChanges = events.filter((e) => e.facet === 'power' && e.kind === 'observed' && e.new === 'off').length;
      const kexecBoots = events.filter((e) => e.facet === 'boot' && e.kind === 'observed' && e.new === 'kexec').length;
      // Through kexec no node is powered off and every node's new boot is a kexec; through reboots, none is.
      expect([path, kexecBoots]).toEqual([path, kexec ? 50 : 0]);
      expect([path, powerChanges]).toEqual([path, 50]); // each node's first probe, before it was first powered on
      for (const n of group) expect(t.appliance.state.observed(n.id).image?.value).toBe('compute@2');
      unavailableMs[path] = total / group.length;
      await t.close();
      t = undefined;
    }
    console.log(`rollout over 50 simulated nodes, maxUnavailable 5: mean unavailability per node ${unavailableMs.kexec!.toFixed(0)} ms through kexec, ${unavailableMs.reboot!.toFixed(0)} ms through the firmware (ratio ${(unavailableMs.kexec! / unavailableMs.reboot!).toFixed(2)})`);
    expect(unavailableMs.kexec!).toBeLessThan(unavailableMs.reboot! / 2);
  });

  it('releases a group installed to disk: a rollout of disk=erased cleans each node, at most maxUnavailable at a time', { timeout: 180_000 }, async () => {
    t = await startTestAppliance({ sim: { latencies: LATENCIES } });
    const { state, engine } = t.appliance;
    const group = await enroll(t, 8, 'd', { tenant: 'a' });
    for (const n of group) await state.setDesired(n.id, { power: 'on', boot: 'disk', image: 'compute@1' }, 'test');
    await until(t.appliance, () => group.every((n) => state.observed(n.id).disk?.value === 'written' && engine.executor.status(n.id).phase === 'converged'), 60_000, 'the group installed to disk');
    const sampler = sampleUnavailable(t, group);
    const res = await t.api('POST', '/api/v1/rollouts', { selector: 'tenant=a', desired: { boot: null, image: null, disk: 'erased' }, maxUnavailable: 3 });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    await rolloutDone(t, res.body.id);
    sampler.stop();
    expect(sampler.max).toBeLessThanOrEqual(3);
    for (const n of group) {
      expect(state.observed(n.id).disk?.value).toBe('erased');
      expect(state.desired(n.id)).toEqual({ power: 'on', disk: 'erased' });
    }
  });

  it('counts nodes of the group that are down already against the budget, and changes them first', { timeout: 120_000 }, async () => {
    t = await startTestAppliance({ sim: { latencies: LATENCIES } });
    const { state, engine } = t.appliance;
    const group = await enroll(t, 8, 'd', { role: 'compute' });
    // Two nodes stuck converging (an operator asked for the new image, and their boot hangs): with a
    // budget of 3, one more node may be changed at a time. They come last by name, yet are taken first.
    const stuck = group.slice(-2);
    for (const n of stuck) {
      t.sim.inject(n.id, { kind: 'boot-hangs', times: 1 });
      await state.setDesired(n.id, { image: 'compute@2' }, 'test');
    }
    await until(t.appliance, () => stuck.every((n) => state.observed(n.id).run?.value === 'booting'), 30_000, 'two boots hung');
    const sampler = sampleUnavailable(t, group, (n) => stuck.includes(n));

    const res = await t.api('POST', '/api/v1/rollouts', { selector: 'role=compute', desired: { image: 'compute@2' }, maxUnavailable: 3 });
    expect(res.status).toBe(201);
    const id = res.body.id as string;
    const get = () => engine.rollouts.get(id);
    await until(t.appliance, () => get().counts.done === 6, 60_000, 'the six healthy nodes done');
    sampler.stop();
    expect(sampler.max).toBe(1);
    expect(get().nodes!.filter((n) => n.state === 'in-progress').map((n) => n.name)).toEqual(stuck.map((n) => n.name));
    expect(get()).toMatchObject({ status: 'running', unavailable: 2 });

    // Power cut behind the appliance's back: the recovery path boots them, this time to the end.
    for (const n of stuck) t.sim.inject(n.id, { kind: 'power-off' });
    await rolloutDone(t, id);
    for (const n of group) expect(state.observed(n.id).image?.value).toBe('compute@2');
  });

  it('changes only maxUnavailable nodes while the appliance is frozen, and goes on at the thaw', { timeout: 120_000 }, async () => {
    t = await startTestAppliance({ sim: { latencies: LATENCIES } });
    const { state, engine } = t.appliance;
    const group = await enroll(t, 6, 'z', { role: 'compute' });
    await state.setFrozen(null, true, 'test');
    // Frozen nodes with nothing to do are up: the rollout must not take them all for down ones.
    const id = (await t.api('POST', '/api/v1/rollouts', { selector: 'role=compute', desired: { image: 'compute@2' }, maxUnavailable: 2 })).body.id as string;
    await until(t.appliance, () => engine.rollouts.get(id).counts['in-progress'] === 2, 10_000, 'two nodes started');
    await new Promise((r) => setTimeout(r, 500));
    expect(engine.rollouts.get(id).counts).toMatchObject({ 'in-progress': 2, pending: 4 });
    expect(group.filter((n) => state.desired(n.id).image === 'compute@2').map((n) => n.name)).toEqual(group.slice(0, 2).map((n) => n.name));
    const sampler = sampleUnavailable(t, group);
    await state.setFrozen(null, false, 'test');
    await rolloutDone(t, id);
    sampler.stop();
    expect(sampler.max).toBeLessThanOrEqual(2);
    for (const n of group) expect(state.observed(n.id).image?.value).toBe('compute@2');
  });

  it('stops as failed when a node is held as failed, and goes on after a retry and a resume', { timeout: 120_000 }, async () => {
    // Boots through the firmware (no kexec): the reason names run.boot.
    t = await startTestAppliance({ sim: { latencies: LATENCIES, kexec: false }, engine: { retryBudget: 1, backoffBaseMs: 20, timeouts: { 'run.boot': 1_500 } } });
    const { state, engine } = t.appliance;
    // The bad node first: the other nodes go through the second slot until it has failed twice.
    const group = await enroll(t, 24, 'f', { role: 'compute' });
    const bad = group[0]!;
    t.sim.inject(bad.id, { kind: 'boot-hangs', times: 100 });

    const res = await t.api('POST', '/api/v1/rollouts', { selector: 'role=compute', desired: { image: 'compute@2' }, maxUnavailable: 2 });
    const id = res.body.id as string;
    await rolloutDone(t, id, 'failed');
    const failed = (await t.api('GET', `/api/v1/rollouts/${id}`)).body;
    const badView = failed.nodes.find((n: { name: string }) => n.name === bad.name);
    expect(badView).toMatchObject({ state: 'failed', phase: 'failed' });
    expect(badView.reason).toMatch(/^run\.boot failed 2 times; last: run\.boot not confirmed within 1\.5 s/);
    expect(failed.reason).toContain(`${bad.name}: run.boot failed 2 times`);

    // No new node starts once it failed; the one under way with the bad node finishes.
    await until(t.appliance, () => engine.rollouts.get(id).counts['in-progress'] === 0, 30_000, 'the other node under way finished');
    const pending = engine.rollouts.get(id).nodes!.filter((n) => n.state === 'pending');
    expect(pending.length).toBeGreaterThanOrEqual(2);
    await new Promise((r) => setTimeout(r, 500));
    expect(engine.rollouts.get(id).nodes!.filter((n) => n.state === 'pending').map((n) => n.name)).toEqual(pending.map((n) => n.name));
    for (const n of pending) expect(state.desired(n.id).image).toBe('compute@1');

    // Resuming while the node is still held is refused with what to do.
    const early = await t.api('POST', `/api/v1/rollouts/${id}/resume`);
    expect(early.status).toBe(409);
    expect(early.body.detail).toMatch(new RegExp(`${bad.name} is still held as failed .*retry`));

    t.sim.inject(bad.id, { kind: 'boot-hangs', times: -100 });
    expect((await t.api('POST', `/api/v1/nodes/${bad.name}/retry`)).status).toBe(200);
    const resumed = await t.api('POST', `/api/v1/rollouts/${id}/resume`);
    expect(resumed.status).toBe(200);
    expect(resumed.body.status).toBe('running');
    await rolloutDone(t, id);
    for (const n of group) expect(state.observed(n.id).image?.value).toBe('compute@2');
  });

  it('pauses (nodes under way finish, no new one starts), resumes, and cancels', { timeout: 120_000 }, async () => {
    t = await startTestAppliance({ sim: { latencies: LATENCIES } });
    const { state, engine } = t.appliance;
    const group = await enroll(t, 10, 'p', { role: 'compute' });
    const id = (await t.api('POST', '/api/v1/rollouts', { selector: 'role=compute', desired: { image: 'compute@2' }, maxUnavailable: '20%' })).body.id as string;
    expect(engine.rollouts.get(id).limit).toBe(2);
    await until(t.appliance, () => engine.rollouts.get(id).counts.done >= 1, 60_000, 'a first node done');
    const paused = await t.api('POST', `/api/v1/rollouts/${id}/pause`);
    expect(paused.body.status).toBe('paused');
    await until(t.appliance, () => engine.rollouts.get(id).counts['in-progress'] === 0, 30_000, 'nodes under way finished');
    const done = engine.rollouts.get(id).counts.done;
    expect(done).toBeLessThan(10);
    await new Promise((r) => setTimeout(r, 600));
    expect(engine.rollouts.get(id).counts).toMatchObject({ done, pending: 10 - done });
    expect(group.filter((n) => state.desired(n.id).image === 'compute@2')).toHaveLength(done);
    // Pausing twice is harmless; a paused rollout cannot be paused into anything else.
    expect((await t.api('POST', `/api/v1/rollouts/${id}/pause`)).status).toBe(200);

    expect((await t.api('POST', `/api/v1/rollouts/${id}/resume`)).body.status).toBe('running');
    await rolloutDone(t, id);
    expect((await t.api('POST', `/api/v1/rollouts/${id}/pause`)).status).toBe(409);
    expect((await t.api('POST', `/api/v1/rollouts/${id}/cancel`)).status).toBe(409);

    // A second rollout back to compute@1, cancelled: what was not started keeps its desired state,
    // and the nodes are free for another rollout.
    const back = (await t.api('POST', '/api/v1/rollouts', { selector: 'role=compute', desired: { image: 'compute@1' }, maxUnavailable: 1 })).body.id as string;
    await until(t.appliance, () => engine.rollouts.get(back).counts['in-progress'] === 1, 30_000, 'one node started');
    const cancelled = await t.api('POST', `/api/v1/rollouts/${back}/cancel`);
    expect(cancelled.body.status).toBe('cancelled');
    await new Promise((r) => setTimeout(r, 600));
    const after = engine.rollouts.get(back);
    expect(after.status).toBe('cancelled');
    expect(after.counts.pending).toBeGreaterThanOrEqual(8);
    expect(group.filter((n) => state.desired(n.id).image === 'compute@1').length).toBeLessThanOrEqual(2);
    expect((await t.api('POST', `/api/v1/rollouts/${back}/resume`)).status).toBe(409);
    expect((await t.api('POST', '/api/v1/rollouts', { selector: 'role=compute', desired: { power: 'on' }, maxUnavailable: 1 })).status).toBe(201);
  });

  it('refuses bad requests with problem+json and changes nothing', { timeout: 60_000 }, async () => {
    t = await startTestAppliance({ sim: { latencies: LATENCIES } });
    const { state, engine } = t.appliance;
    const group = await enroll(t, 4, 'b', { role: 'compute' });
    await state.setDesired(group[0]!.id, { run: 'ready' }, 'test');
    await state.flush();
    const revision = state.revision;
    const post = (body: unknown) => t!.api('POST', '/api/v1/rollouts', body);
    const good = { selector: 'role=compute', desired: { image: 'compute@2' }, maxUnavailable: 1 };

    const cases: [unknown, number, RegExp][] = [
      [{ ...good, selector: undefined }, 400, /selector/],
      [{ ...good, selector: ' ' }, 400, /needs a label selector/],
      [{ ...good, selector: 'role' }, 400, /not key=value/],
      [{ ...good, maxUnavailable: 0 }, 400, /maxUnavailable/],
      [{ ...good, maxUnavailable: 1.5 }, 400, /maxUnavailable/],
      [{ ...good, maxUnavailable: '0%' }, 400, /maxUnavailable/],
      [{ ...good, maxUnavailable: '5' }, 400, /maxUnavailable/],
      [{ ...good, maxUnavailable: undefined }, 400, /maxUnavailable/],
      [{ ...good, desired: { image: 'compute' } }, 400, /name@version/],
      [{ ...good, desired: {} }, 400, /sets no facet/],
      [{ ...good, desired: { power: 'sideways' } }, 400, /power/],
      [{ ...good, surge: 2 }, 400, /surge/],
      [{ ...good, selector: 'role=storage' }, 422, /matches no node/],
      [{ ...good, desired: { power: 'off' } }, 422, /power=off contradicts run=ready/],
    ];
    for (const [body, status, detail] of cases) {
      const res = await post(body);
      expect({ body, status: res.status }).toEqual({ body, status });
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(res.body.detail).toMatch(detail);
    }
    const notJson = await t.api('POST', '/api/v1/rollouts', '{', { 'content-type': 'application/json' });
    expect(notJson.status).toBe(400);
    expect((await t.api('GET', '/api/v1/rollouts/ro-42')).status).toBe(404);
    expect((await t.api('POST', '/api/v1/rollouts/ro-42/pause')).status).toBe(404);

    await state.flush();
    expect(engine.rollouts.list()).toEqual([]);
    expect(await state.events({ afterRev: revision })).toEqual([]);
    for (const n of group.slice(1)) expect(state.desired(n.id)).toEqual({ power: 'on', image: 'compute@1' });
    expect(state.desired(group[0]!.id)).toEqual({ power: 'on', image: 'compute@1', run: 'ready' });

    // Two rollouts under way may not share a node.
    const first = await post({ ...good, maxUnavailable: 1 });
    expect(first.status).toBe(201);
    await engine.rollouts.pause(first.body.id, 'test');
    await state.flush();
    const before = state.revision;
    const clash = await post({ selector: 'role=compute', desired: { image: 'compute@3' }, maxUnavailable: 2 });
    expect(clash.status).toBe(409);
    expect(clash.body.detail).toMatch(new RegExp(`4 of the 4 selected nodes .* are in rollout ${first.body.id}, which is paused`));
    await state.flush();
    expect(await state.events({ afterRev: before })).toEqual([]);
    expect(engine.rollouts.list()).toHaveLength(1);
  });

  it('is in the OpenAPI document, with the request schema the API validates with', { timeout: 60_000 }, async () => {
    t = await startTestAppliance({ sim: { latencies: LATENCIES } });
    const doc = (await t.api('GET', '/api/v1/openapi.json')).body;
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/rollouts'))).toEqual(['/rollouts', '/rollouts/{id}', '/rollouts/{id}/pause', '/rollouts/{id}/resume', '/rollouts/{id}/cancel']);
    expect(Object.keys(doc.paths['/rollouts'].post.responses)).toEqual(['201', '400', '401', '403', '409', '422']);
    const input = doc.components.schemas.RolloutInput;
    expect(input.required).toEqual(['selector', 'desired', 'maxUnavailable']);
    expect(input.additionalProperties).toBe(false);
    expect(JSON.stringify(input.properties.maxUnavailable)).toContain('%$');
    expect(input.properties.desired.properties.image).toBeDefined();
  });

  it('shows rollout progress on the event stream', { timeout: 60_000 }, async () => {
    t = await startTestAppliance({ sim: { latencies: LATENCIES } });
    await enroll(t, 3, 's', { role: 'compute' });
    await t.appliance.state.flush();
    const abort = new AbortController();
    const res = await fetch(`${t.appliance.url}/api/v1/events/stream`, { headers: { authorization: `Bearer ${t.appliance.token}`, 'last-event-id': String(t.appliance.state.revision) }, signal: abort.signal });
    const id = (await t.api('POST', '/api/v1/rollouts', { selector: 'role=compute', desired: { image: 'compute@2' }, maxUnavailable: 3 })).body.id as string;
    let text = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      text += decoder.decode(chunk, { stream: true });
      if (text.includes('"new":"done","detail":"{')) break;
    }
    abort.abort();
    const frames = text.split('\n\n').filter((f) => f.includes('event: rollout')).map((f) => JSON.parse(f.split('\ndata: ')[1]!));
    expect(frames[0]).toMatchObject({ kind: 'rollout', nodeId: null, facet: id, new: 'running' });
    expect(frames.filter((f) => f.nodeId !== null && f.new === 'done')).toHaveLength(3);
    expect(frames.at(-1)).toMatchObject({ nodeId: null, old: 'running', new: 'done', writer: `rollout:${id}` });
  });
});
