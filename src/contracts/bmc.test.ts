// The BMC options contract: one schema and one credential rule for the ipmi and redfish modules
// (test/bmc-module-options.test.ts checks that both modules use it).
import { describe, expect, it } from 'vitest';
import type { NodeRecord } from '../domain/node.js';
import { bmcPowerOptionsOf, BmcModuleOptionsSchema, resolveBmcCredentials } from './bmc.js';

const node = (username?: string): NodeRecord => ({
  id: 'n1',
  name: 'n01',
  macs: ['52:54:00:ff:00:01'],
  bmc: { scheme: 'ipmi', host: '127.0.0.1', ...(username ? { username } : {}) },
  arch: 'x86_64',
  firmware: 'bios',
  labels: {},
});

describe('resolveBmcCredentials', () => {
  it("prefers the node's own user and password to the module's defaults", () => {
    const defaults = { defaultUsername: 'ops', defaultPassword: 'fallback' };
    expect(resolveBmcCredentials('IPMI', node('admin'), 'secret', defaults)).toEqual({ username: 'admin', password: 'secret' });
    expect(resolveBmcCredentials('IPMI', node(), undefined, defaults)).toEqual({ username: 'ops', password: 'fallback' });
    // An empty password is a password (some BMCs have one), not a missing one.
    expect(resolveBmcCredentials('IPMI', node('admin'), '', defaults)).toEqual({ username: 'admin', password: '' });
  });

  it('names the protocol, the node and what is missing', () => {
    expect(() => resolveBmcCredentials('Redfish', node(), 'secret', {})).toThrow(/^no Redfish credentials for n01: no user in its BMC URL;/);
    expect(() => resolveBmcCredentials('IPMI', node('admin'), undefined, {})).toThrow(/^no IPMI credentials for n01: no BMC password;/);
  });
});

describe('BMC module options', () => {
  it('passes on only the driver options that were set', () => {
    const parsed = BmcModuleOptionsSchema.parse({ pollMs: 5_000, defaultPassword: 'x' });
    expect(bmcPowerOptionsOf(parsed)).toEqual({ pollMs: 5_000 });
  });

});
