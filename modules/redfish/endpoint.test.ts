import { describe, expect, it } from 'vitest';
import { parseRedfishEndpoint } from './endpoint.js';
import { RedfishConfigError } from './errors.js';

describe('parseRedfishEndpoint', () => {
  it('reads user, host, port and system from a redfish:// URL, as HTTPS verified against CAs', () => {
    expect(parseRedfishEndpoint({ url: 'redfish://admin@bmc7.lab:8443/redfish/v1/Systems/System.Embedded.1', password: 'pw' })).toMatchObject({
      protocol: 'https:',
      host: 'bmc7.lab',
      port: 8443,
      origin: 'https://bmc7.lab:8443',
      username: 'admin',
      systemPath: '/redfish/v1/Systems/System.Embedded.1',
      tlsTrust: { kind: 'ca' },
    });
  });

  it('accepts the short system path, default ports, IPv6 and a user from the config', () => {
    expect(parseRedfishEndpoint({ url: 'redfish://10.0.0.9/Systems/1', username: 'root', password: 'pw' })).toMatchObject({
      port: 443,
      username: 'root',
      systemPath: '/redfish/v1/Systems/1',
    });
    expect(parseRedfishEndpoint({ url: 'redfish+http://u@[fd00::9]/', password: 'pw' })).toMatchObject({
      protocol: 'http:',
      host: 'fd00::9',
      port: 80,
      origin: 'http://[fd00::9]:80',
      systemPath: undefined,
    });
  });

  it('turns insecure or a pinned fingerprint into the TLS trust, the fingerprint in one canonical form', () => {
    expect(parseRedfishEndpoint({ url: 'redfish://u@h', password: 'pw', insecure: true }).tlsTrust).toEqual({ kind: 'any' });
    const colons = 'AB:'.repeat(31) + 'CD';
    expect(parseRedfishEndpoint({ url: 'redfish://u@h', password: 'pw', certificateSha256: colons }).tlsTrust).toEqual({
      kind: 'pinned',
      fingerprintSha256: 'ab'.repeat(31) + 'cd',
    });
    expect(() =>
      parseRedfishEndpoint({ url: 'redfish://u@h', password: 'pw', insecure: true, certificateSha256: colons }),
    ).toThrow(RedfishConfigError);
  });

  it('refuses a user given twice differently, unknown fields, and query strings', () => {
    expect(() => parseRedfishEndpoint({ url: 'redfish://a@h', username: 'b', password: 'pw' })).toThrow(/URL but b/);
    expect(() => parseRedfishEndpoint({ url: 'redfish://a@h', password: 'pw', verify: false })).toThrow(RedfishConfigError);
    expect(() => parseRedfishEndpoint({ url: 'redfish://a@h/Systems/1?x=1', password: 'pw' })).toThrow(RedfishConfigError);
  });
});
