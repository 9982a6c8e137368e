// Seeded fuzzing of every IPMI reply decoder the client uses (test/fuzz/targets/ipmi.ts): each
// mutated reply is decoded or refused with IpmiMalformedReplyError, never a TypeError or RangeError.
import { describe, expect, it } from 'vitest';
import { runFuzzTarget } from '../../test/fuzz/kit.js';
import { ipmiFuzzTarget } from '../../test/fuzz/targets/ipmi.js';

describe('IPMI reply fuzzing', () => {
  it('decodes or refuses with IpmiMalformedReplyError 5,000 mutated replies of every kind', async () => {
    const stats = await runFuzzTarget(ipmiFuzzTarget, { inputs: 5000, seed: 0x1b41 });
    expect(stats.crashReports).toEqual([]);
    // Both paths must be exercised for the test to mean anything.
    expect(stats.accepted).toBeGreaterThan(500);
    expect(stats.refused).toBeGreaterThan(500);
  });
});
