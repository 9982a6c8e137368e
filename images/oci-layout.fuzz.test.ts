// Seeded fuzzing of the OCI import's checker (test/fuzz/targets/oci.ts): hostile or damaged
// layouts are refused with an OciImageError, and no layer it accepts holds an entry that escapes.
import { describe, expect, it } from 'vitest';
import { runFuzzTarget } from '../test/fuzz/kit.js';
import { ociFuzzTarget } from '../test/fuzz/targets/oci.js';

describe('OCI layout fuzzing', () => {
  it('accepts or refuses with an OciImageError 1,000 hostile layouts, and accepts no layer with an entry outside the root', async () => {
    const stats = await runFuzzTarget(ociFuzzTarget, { inputs: 1000, seed: 0x0c1 });
    expect(stats.crashReports).toEqual([]);
    expect(stats.accepted).toBeGreaterThan(20);
    expect(stats.refused).toBeGreaterThan(500);
  });
});
