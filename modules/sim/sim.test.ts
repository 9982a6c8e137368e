// The simulated rack's hardware outlives the appliance (persist): a node that finished booting while
// the appliance's last observations were not yet committed is still up after a restart, and says so
// as a real node's agent would, by its next heartbeat.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { simSpecs, startTestAppliance, until, type TestAppliance } from '../../test/support/appliance.js';

const LATENCIES = { probeMs: 10, powerMs: 50, armMs: 10, bootStageMs: 50, drainMs: 10, lostAfterMs: 500 };

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
