// Seeded fuzzing of the upload unpacker (test/fuzz/targets/images.ts): hostile archives are
// refused with a TarError, and nothing is ever written outside the staging directory.
// OCI layouts have their own target (images/oci-layout.fuzz.test.ts).
import { describe, expect, it } from 'vitest';
import { runFuzzTarget } from '../../test/fuzz/kit.js';
import { imagesFuzzTarget } from '../../test/fuzz/targets/images.js';

describe('image tar fuzzing', () => {
  it('unpacks or refuses with a TarError 1,000 hostile archives, writing only plain files inside staging', async () => {
    const stats = await runFuzzTarget(imagesFuzzTarget, { inputs: 1000, seed: 0x7a7 });
    expect(stats.crashReports).toEqual([]);
    expect(stats.accepted).toBeGreaterThan(50);
    // One outcome per input, so refused is at most 1,000: about 93% of the generated archives are
    // hostile (924 to 944 over five seeds), the rest whole images.
    expect(stats.refused).toBeGreaterThan(800);
  });
});
