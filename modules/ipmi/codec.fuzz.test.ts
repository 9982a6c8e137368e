// Seeded fuzzing of every IPMI reply decoder the client uses (test/fuzz/targets/ipmi.ts): each
// mutated reply is decoded or refused with IpmiMalformedReplyError, never a TypeError or RangeError.
import { describe, expect, it } from 'vitest';
import { runFuzzTarget } from '../../test/fuzz/kit.js';
import { ipmiFuzzTarget, ipmiSessionFuzzTarget } from '../../test/fuzz/targets/ipmi.js';

describe('IPMI reply fuzzing', () => {
  it('decodes or refuses with IpmiMalformedReplyError 5,000 mutated replies of every kind', async () => {
    const stats = await runFuzzTarget(ipmiFuzzTarget, { inputs: 5000, seed: 0x1b41 });
    expect(stats.crashReports).toEqual([]);
    // Both paths must be exercised for the test to mean anything.
    expect(stats.accepted).toBeGreaterThan(500);
    expect(stats.refused).toBeGreaterThan(500);
  });
});

describe('IPMI client reply judging fuzzing', () => {
  it('opens a session and reads chassis status, or fails with an IpmiError, in 1,000 conversations with mutated replies', async () => {
    const stats = await runFuzzTarget(ipmiSessionFuzzTarget, { inputs: 1000, seed: 0x5e55 });
    expect(stats.crashReports).toEqual([]);
    expect(stats.accepted).toBeGreaterThan(100);
    expect(stats.refused).toBeGreaterThan(100);
  });
});
