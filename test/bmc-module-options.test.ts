// Both BMC modules take their shared options from one contract (src/contracts/bmc.ts): the same
// option is accepted or refused the same way by each, with the option named in the error.
import { describe, expect, it } from 'vitest';
import { createModule as createIpmiModule } from '../modules/ipmi/module.js';
import { createModule as createRedfishModule } from '../modules/redfish/module.js';

describe.each([
  ['ipmi', createIpmiModule],
  ['redfish', createRedfishModule],
])('the %s module options', (name, createModule) => {
  it('refuse a bad or unknown shared option, naming it', () => {
    expect(() => createModule({ forcedOffMs: 0 })).toThrow(/forcedOffMs/);
    expect(() => createModule({ defaultUsername: '' })).toThrow(/defaultUsername/);
    expect(() => createModule({ pollMS: 1_000 })).toThrow(/pollMS/);
  });

  it('accept every shared option', () => {
    const options = { pollMs: 1_000, fastPollMs: 100, gracefulOffMs: 1_000, forcedOffMs: 1_000, maxConcurrent: 2, defaultUsername: 'ops', defaultPassword: '' };
    expect(createModule(options).name).toBe(name);
  });
});
