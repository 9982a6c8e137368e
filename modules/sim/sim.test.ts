// The simulated rack's hardware outlives the appliance (persist): a node that finished booting while
// the appliance's last observations were not yet committed is still up after a restart, and says so
// as a real node's agent would, by its next heartbeat. Its BMC faults (no answer, a reply that does
// not fit) fail the step as a real client's would, and the engine recovers; faults can be injected
// through the API, for a rack in another process.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { simSpecs, startTestAppliance, until, type TestAppliance } from '../../test/support/appliance.js';

const LATENCIES = { probeMs: 10, powerMs: 50, armMs: 10, bootStageMs: 50, kexecMs: 10, drainMs: 10, lostAfterMs: 500, bmcTimeoutMs: 200 };

describe('sim module across an appliance restart', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'shoal-sim-'));
  let t: TestAppliance | undefined;
  afterAll(async () => {
    await t?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('reports a node that is up, though the log last saw it booting, ready again', async () => {
    t = await startTestAppliance({ dataDir, sim: { persist: true, latencies: LATENCIES } });
    const [node] = await t.appliance.state.addNodes([{ spec: simSpecs(1)[0]! }], 'test');
    const id = node!.id;
    await t.appliance.state.setDesired(id, { power: 'on', image: 'compute@1' }, 'test');
    await until(t.appliance, () => t!.appliance.engine.executor.status(id).phase === 'converged', 10_000, 'converged');
    // The log loses the hello (a crash before the group commit): it last saw the node booting.
    t.appliance.state.observe(id, 'run', 'booting', 'test');
    t.appliance.engine.executor.stop();
    await t.close();

    t = await startTestAppliance({ dataDir, sim: { persist: true, latencies: LATENCIES } });
    expect(t.appliance.state.observed(id).run?.value).toBe('booting');
    // Well inside run.boot's 300 s timeout: the node's own heartbeat, not a recovery.
    await until(t.appliance, () => t!.appliance.state.observed(id).run?.value === 'ready', 5_000, 'ready again');
    expect(t.appliance.state.observed(id).image?.value).toBe('compute@1');
    expect(t.sim.truth(id)).toMatchObject({ power: 'on', booting: null, running: 'compute@1' });
  });
});

describe('sim BMC faults', () => {
  let t: TestAppliance | undefined;
  afterAll(() => t?.close());

  it('fails a BMC command that gets no answer after the timeout, or a reply that does not fit, and the node converges after', async () => {
    t = await startTestAppliance({ sim: { latencies: LATENCIES }, engine: { backoffBaseMs: 10, backoffMaxMs: 20 } });
    const [node] = await t.appliance.state.addNodes([{ spec: simSpecs(1)[0]! }], 'test');
    const id = node!.id;
    t.sim.inject(id, { kind: 'bmc-timeout', times: 1 });
    t.sim.inject(id, { kind: 'bmc-wrong-reply', times: 1 });
    const errors: string[] = [];
    t.appliance.state.on('events', (events) => {
      for (const e of events) if (e.nodeId === id && e.new === 'error' && e.detail) errors.push(e.detail);
    });
    const started = Date.now();
    await t.appliance.state.setDesired(id, { power: 'on', image: 'compute@1' }, 'test');
    await until(t.appliance, () => t!.appliance.engine.executor.status(id).phase === 'converged', 10_000, 'converged');
    expect(errors).toEqual([expect.stringMatching(/BMC did not answer within 200 ms/), expect.stringMatching(/BMC reply did not match the request/)]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
  });

  it('takes faults through POST /api/v1/sim/nodes/{id}/faults, refusing a bad one and changing nothing', async () => {
    t ??= await startTestAppliance({ sim: { latencies: LATENCIES } });
    const [node] = await t.appliance.state.addNodes([{ spec: { ...simSpecs(1, 'api')[0]!, macs: ['52:54:00:aa:00:01'] } }], 'test');
    const id = node!.id;
    const bad = await t.api('POST', `/api/v1/sim/nodes/${id}/faults`, { kind: 'power-on-fails', times: -1.5 });
    expect(bad.status).toBe(400);
    expect(bad.body.detail).toMatch(/times/);
    expect((await t.api('POST', `/api/v1/sim/nodes/${id}/faults`, { kind: 'melts' })).status).toBe(400);
    expect(t.sim.truth(id)).toMatchObject({ powerOnFailures: 0, bootHangs: 0, bmcTimeouts: 0, bmcWrongReplies: 0 });
    expect((await t.api('POST', '/api/v1/sim/nodes/no-such-node/faults', { kind: 'dies' })).status).toBe(404);
    const ok = await t.api('POST', `/api/v1/sim/nodes/${id}/faults`, { kind: 'bmc-timeout', times: 2 });
    expect(ok).toMatchObject({ status: 200, body: { node: id, fault: { kind: 'bmc-timeout', times: 2 } } });
    expect(t.sim.truth(id).bmcTimeouts).toBe(2);
  });
});

describe('sim kexec', () => {
  let t: TestAppliance | undefined;
  afterAll(() => t?.close());

  it('kexecs a running node into its new image without a power step, falls back to a power cycle when the kexec\'d kernel panics, and stops kexecing after two', async () => {
    t = await startTestAppliance({ sim: { latencies: LATENCIES }, engine: { timeouts: { 'run.kexec': 500, 'run.boot': 500 } } });
    const { state, engine } = t.appliance;
    const [node] = await state.addNodes([{ spec: simSpecs(1, 'kx')[0]! }], 'test');
    const id = node!.id;
    const converged = (image: string) => until(t!.appliance, () => engine.executor.status(id).phase === 'converged' && state.observed(id).image?.value === image, 10_000, `converged on ${image}`);
    const powerOffs = async () => {
      await state.flush();
      return (await state.events({ nodeId: id, limit: 10_000 })).filter((e) => e.facet === 'power' && e.kind === 'observed' && e.new === 'off').length;
    };
    await state.setDesired(id, { power: 'on', image: 'compute@1' }, 'test');
    await converged('compute@1');
    expect(state.observed(id).kexec?.value).toBe('available');
    const offs = await powerOffs();

    await state.setDesired(id, { image: 'compute@2' }, 'test');
    await converged('compute@2');
    expect(state.observed(id).boot).toMatchObject({ value: 'kexec', detail: 'compute@2' });
    expect(await powerOffs()).toBe(offs);

    // Two kexecs into a kernel that panics: each falls back to the power cycle and converges; then the node reboots instead.
    t.sim.inject(id, { kind: 'kexec-hangs', times: 2 });
    for (const [i, image] of ['compute@1', 'compute@2'].entries()) {
      await state.setDesired(id, { image }, 'test');
      await converged(image);
      expect(state.observed(id).boot?.value).toBe('kernel');
      expect(await powerOffs()).toBe(offs + i + 1);
    }
    expect(state.observed(id).kexec).toMatchObject({ value: 'unavailable', detail: 'kexec failed 2 times (simulated)' });
    await state.setDesired(id, { image: 'compute@1' }, 'test');
    expect(engine.executor.planFor(id).steps.map((s) => s.step)).toEqual(['boot.arm', 'run.drain', 'run.reboot', 'run.boot']);
    await converged('compute@1');
    expect(await powerOffs()).toBe(offs + 2);
  });
});
