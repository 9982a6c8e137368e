// The executor against the simulated rack: convergence, drift, faults, limits, freeze.
import { afterEach, describe, expect, it } from 'vitest';
import { simSpecs, startTestAppliance, until, type TestAppliance } from './support/appliance.js';

const FAST = { probeMs: 1, powerMs: 5, armMs: 1, bootStageMs: 5, drainMs: 5, lostAfterMs: 20 };

let t: TestAppliance | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

const phases = (t: TestAppliance) => t.appliance.engine.executor.phaseCounts();
const engine = () => t!.appliance.engine.executor;

describe('executor with simulated hardware', () => {
  it('converges 100 nodes from unknown to ready on their image', async () => {
    t = await startTestAppliance({ sim: { latencies: FAST } });
    const { state } = t.appliance;
    const nodes = await state.addNodes(simSpecs(100).map((spec) => ({ spec })), 'test');
    for (const n of nodes) await state.setDesired(n.id, { power: 'on', image: 'compute@1' }, 'test');
    await until(t.appliance, () => phases(t!).converged === 100, 30_000, '100 nodes converged');
    for (const n of nodes) {
      const o = state.observed(n.id);
      expect([o.power?.value, o.run?.value, o.image?.value]).toEqual(['on', 'ready', 'compute@1']);
      expect(t.sim.truth(n.id).power).toBe('on');
    }
    // each node took the 4-step path; the log shows the boot stages in order
    const events = await state.events({ nodeId: nodes[0]!.id, limit: 100 });
    const boot = events.filter((e) => e.kind === 'observed' && e.facet === 'boot').map((e) => e.new);
    expect(boot).toEqual(['armed', 'dhcp', 'loader', 'kernel']);
  });

  it('reprovisions a node when its desired image changes', async () => {
    t = await startTestAppliance({ sim: { latencies: FAST } });
    const { state } = t.appliance;
    const [node] = await state.addNodes(simSpecs(1).map((spec) => ({ spec })), 'test');
    await state.setDesired(node!.id, { image: 'compute@1' }, 'test');
    await until(t.appliance, () => state.observed(node!.id).image?.value === 'compute@1' && phases(t!).converged === 1, 10_000, 'first image');
    const rev = state.revision;
    await state.setDesired(node!.id, { image: 'compute@2' }, 'test');
    await until(t.appliance, () => state.observed(node!.id).image?.value === 'compute@2' && phases(t!).converged === 1, 10_000, 'second image');
    await state.flush();
    const runs = (await state.events({ nodeId: node!.id, afterRev: rev })).filter((e) => e.kind === 'observed' && e.facet === 'run').map((e) => e.new);
    expect(runs).toEqual(['draining', 'drained', 'booting', 'ready']);
  });

  it('corrects drift: a node powered off behind its back is powered on and booted again', async () => {
    t = await startTestAppliance({ sim: { latencies: FAST } });
    const { state } = t.appliance;
    const [node] = await state.addNodes(simSpecs(1).map((spec) => ({ spec })), 'test');
    await state.setDesired(node!.id, { power: 'on', image: 'compute@1' }, 'test');
    await until(t.appliance, () => phases(t!).converged === 1, 10_000, 'converged');
    await state.flush();
    const rev = state.revision;
    t.sim.inject(node!.id, { kind: 'power-off' });
    await until(t.appliance, () => t!.sim.truth(node!.id).power === 'on' && state.observed(node!.id).run?.value === 'ready' && state.revision > rev + 3, 10_000, 'on and ready again');
    await state.flush();
    const seen = (await state.events({ nodeId: node!.id, afterRev: rev })).filter((e) => e.kind === 'observed' && (e.facet === 'power' || e.facet === 'run')).map((e) => `${e.facet}=${e.new}`);
    expect(seen).toEqual(['power=off', 'run=off', 'power=on', 'run=booting', 'run=ready']);
    expect(t.sim.truth(node!.id).power).toBe('on');
    await until(t.appliance, () => t!.appliance.engine.executor.status(node!.id).phase === 'converged', 5_000, 'converged');
  });

  it('recovers a hung boot by a power cycle', async () => {
    t = await startTestAppliance({ sim: { latencies: FAST }, engine: { timeouts: { 'run.boot': 300 }, backoffBaseMs: 10 } });
    const { state } = t.appliance;
    const [node] = await state.addNodes(simSpecs(1).map((spec) => ({ spec })), 'test');
    t.sim.inject(node!.id, { kind: 'boot-hangs', times: 1 });
    await state.setDesired(node!.id, { image: 'compute@1' }, 'test');
    await until(t.appliance, () => phases(t!).converged === 1, 15_000, 'converged after hang');
    const events = await state.events({ nodeId: node!.id, limit: 500 });
    const runs = events.filter((e) => e.facet === 'run' && e.kind === 'observed').map((e) => `${e.new}:${e.writer}`);
    expect(runs).toContain('hung:engine:timeout');
    const powers = events.filter((e) => e.facet === 'power' && e.kind === 'observed').map((e) => e.new);
    expect(powers).toEqual(['off', 'on', 'off', 'on']);
  });

  it('holds a node as failed with its reason once the retry budget is spent, and a new wish releases it', async () => {
    t = await startTestAppliance({ sim: { latencies: FAST }, engine: { retryBudget: 2, backoffBaseMs: 5 } });
    const { state, engine } = t.appliance;
    const [node, healthy] = await state.addNodes(simSpecs(2).map((spec) => ({ spec })), 'test');
    t.sim.inject(node!.id, { kind: 'power-on-fails', times: 100 });
    await state.setDesired(node!.id, { power: 'on' }, 'test');
    await state.setDesired(healthy!.id, { power: 'on' }, 'test');
    await until(t.appliance, () => engine.executor.status(node!.id).phase === 'failed', 10_000, 'held as failed');
    const status = engine.executor.status(node!.id);
    expect(status.reason).toMatch(/^power\.on failed 3 times; last: BMC refused/);
    await until(t.appliance, () => engine.executor.status(healthy!.id).phase === 'converged', 10_000, 'the healthy node converged');
    // held: no further attempts
    const before = (await state.events({ nodeId: node!.id })).length;
    await new Promise((r) => setTimeout(r, 100));
    expect((await state.events({ nodeId: node!.id })).length).toBe(before);
    // the reason is on record in the log and survives in the node view
    const res = await t.api('GET', `/api/v1/nodes/${node!.name}`);
    expect(res.body.phase).toBe('failed');
    expect(res.body.reason).toContain('BMC refused');
    // a fixed BMC and a retry converge it
    t.sim.truth(node!.id);
    t.sim.inject(node!.id, { kind: 'power-on-fails', times: -100 });
    engine.executor.retry(node!.id);
    await until(t.appliance, () => engine.executor.status(node!.id).phase === 'converged', 10_000, 'converged after retry');
  });

  it('sees a dead node lost and brings it back', async () => {
    t = await startTestAppliance({ sim: { latencies: FAST } });
    const { state } = t.appliance;
    const [node] = await state.addNodes(simSpecs(1).map((spec) => ({ spec })), 'test');
    await state.setDesired(node!.id, { image: 'compute@1' }, 'test');
    await until(t.appliance, () => phases(t!).converged === 1, 10_000, 'converged');
    await state.flush();
    const rev = state.revision;
    t.sim.inject(node!.id, { kind: 'dies' });
    await until(t.appliance, () => state.observed(node!.id).run?.value === 'ready' && state.revision > rev + 3 && engine().status(node!.id).phase === 'converged', 10_000, 'back');
    await state.flush();
    const after = (await state.events({ nodeId: node!.id, afterRev: rev })).filter((e) => e.kind === 'observed' && (e.facet === 'power' || e.facet === 'run')).map((e) => `${e.facet}=${e.new}`);
    expect(after).toEqual(['run=lost', 'power=off', 'run=off', 'power=on', 'run=booting', 'run=ready']);
  });

  it('keeps at most N power-ons in flight and one action per BMC', async () => {
    t = await startTestAppliance({ sim: { latencies: { ...FAST, powerMs: 30 } }, engine: { limits: { 'power.on': 3 } } });
    const { state, engine } = t.appliance;
    const nodes = await state.addNodes(simSpecs(12).map((spec) => ({ spec })), 'test');
    let peak = 0;
    const sample = setInterval(async () => {
      const metric = await engine.metrics.actionsInFlight.get();
      const powerOn = metric.values.find((v) => v.labels.step === 'power.on')?.value ?? 0;
      peak = Math.max(peak, powerOn);
    }, 5);
    for (const n of nodes) await state.setDesired(n.id, { power: 'on' }, 'test');
    await until(t.appliance, () => phases(t!).converged === 12, 10_000, 'all on');
    clearInterval(sample);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(3);
  });

  it('takes no new step while frozen, and resumes on thaw', async () => {
    t = await startTestAppliance({ sim: { latencies: FAST } });
    const { state } = t.appliance;
    const [node] = await state.addNodes(simSpecs(1).map((spec) => ({ spec })), 'test');
    await state.setFrozen(null, true, 'test');
    await state.setDesired(node!.id, { power: 'on' }, 'test');
    await new Promise((r) => setTimeout(r, 100));
    expect(state.observed(node!.id).power).toBeUndefined();
    expect(phases(t).frozen).toBe(1);
    await state.setFrozen(null, false, 'test');
    await until(t.appliance, () => phases(t!).converged === 1, 5_000, 'converged after thaw');
  });
});
