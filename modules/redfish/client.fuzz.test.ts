// Seeded fuzzing of Redfish replies through the client (test/fuzz/targets/redfish.ts): every
// conversation with a broken or hostile BMC ends in a result or a RedfishError.
import { describe, expect, it } from 'vitest';
import { runFuzzTarget } from '../../test/fuzz/kit.js';
import { redfishFuzzTarget } from '../../test/fuzz/targets/redfish.js';

describe('Redfish reply fuzzing', () => {
  it('ends 2,000 conversations with mutated replies in a result or a RedfishError', async () => {
    const stats = await runFuzzTarget(redfishFuzzTarget, { inputs: 2000, seed: 0x4ed });
    expect(stats.crashReports).toEqual([]);
    expect(stats.accepted).toBeGreaterThan(200);
    expect(stats.refused).toBeGreaterThan(200);
  });
});
