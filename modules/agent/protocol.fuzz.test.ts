// Seeded fuzzing of agent bodies through the module's routes (test/fuzz/targets/agent.ts): each
// request is answered 200 or refused with a 4xx and a reason, never a 500.
import { describe, expect, it } from 'vitest';
import { runFuzzTarget } from '../../test/fuzz/kit.js';
import { agentFuzzTarget } from '../../test/fuzz/targets/agent.js';

describe('agent body fuzzing', () => {
  it('answers 1,000 mutated hello, heartbeat and drained requests with 200 or a 4xx refusal', async () => {
    const stats = await runFuzzTarget(agentFuzzTarget, { inputs: 1000, seed: 0xa9e });
    expect(stats.crashReports).toEqual([]);
    expect(stats.accepted).toBeGreaterThan(100);
    expect(stats.refused).toBeGreaterThan(300);
  });
});
