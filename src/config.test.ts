// A config file the appliance refuses names every problem, one per line, each by its field.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'shoal-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('loadConfig', () => {
  it('lists each problem on its own line: the field path, or the message alone for the file as a whole', () => {
    const file = join(dir, 'shoal.yaml');
    writeFileSync(file, 'colour: red\napi:\n  port: 70000\nmodules:\n  - name: Sim\n');
    expect(() => loadConfig(file)).toThrow(
      `config ${file} is invalid:\n  api.port: Too big: expected number to be <=65535\n  modules.0.name: a module name is lowercase letters, digits and dashes\n  Unrecognized key: "colour"`,
    );
  });
});

describe('api.tls and the boot listener', () => {
  it('defaults to plain HTTP with the node routes on the API listener, and refuses a boot port that is the API port', () => {
    expect(loadConfig(undefined).api.tls).toBe('off');
    expect(loadConfig(undefined).boot).toBeUndefined();
    // With TLS on, the node routes get port 80 of the API's address unless told otherwise, so 80 cannot be the API's too.
    expect(() => loadConfig(undefined, { api: { listen: '127.0.0.1', port: 80, tls: 'auto' } })).toThrow('boot.port: the node routes need a port of their own: 80 is api.port');
    expect(() => loadConfig(undefined, { api: { listen: '127.0.0.1', port: 8443, tls: 'sometimes' as never } })).toThrow(/api\.tls/);
  });
});

describe('state', () => {
  it('defaults to the embedded SQLite store, and takes a PostgreSQL URL for backend postgres', () => {
    expect(loadConfig(undefined).state).toEqual({ backend: 'sqlite' });
    expect(loadConfig(undefined, { state: { backend: 'postgres', url: 'postgresql://shoal:pw@db.example/shoal' } }).state).toEqual({ backend: 'postgres', url: 'postgresql://shoal:pw@db.example/shoal' });
  });

  it('refuses backend postgres without a url, a url that is not PostgreSQL, a url for SQLite and an unknown backend', () => {
    expect(() => loadConfig(undefined, { state: { backend: 'postgres' } as never })).toThrow(/state\.url: backend postgres needs a url: postgresql:\/\//);
    expect(() => loadConfig(undefined, { state: { backend: 'postgres', url: 'mysql://db/shoal' } })).toThrow(/state\.url: a PostgreSQL URL starts with postgresql:\/\//);
    expect(() => loadConfig(undefined, { state: { backend: 'sqlite', url: 'postgresql://db/shoal' } as never })).toThrow(/state: Unrecognized key: "url"/);
    expect(() => loadConfig(undefined, { state: { backend: 'etcd' } as never })).toThrow(/state\.backend/);
  });
});

describe('appliance', () => {
  it('defaults to this host, every network and no standby, and takes a name, networks, a standby and a lease TTL', () => {
    const { appliance } = loadConfig(undefined);
    expect(appliance).toMatchObject({ networks: ['0.0.0.0/0', '::/0'], leaseTtlMs: 15_000 });
    expect(appliance.name.length).toBeGreaterThan(0);
    expect(appliance.standbyFor).toBeUndefined();
    const state = { backend: 'postgres' as const, url: 'postgresql://shoal@/shoal' };
    expect(loadConfig(undefined, { state, appliance: { name: 'b', networks: ['10.0.0.0/24', 'fd00::/64'], standbyFor: 'a', leaseTtlMs: 2_000 } }).appliance).toEqual({
      name: 'b',
      networks: ['10.0.0.0/24', 'fd00::/64'],
      standbyFor: 'a',
      leaseTtlMs: 2_000,
    });
  });

  it('refuses a network that is no CIDR, a name with capitals, a standby for itself and a standby without PostgreSQL', () => {
    expect(() => loadConfig(undefined, { appliance: { networks: ['10.0.0.0'] } })).toThrow(/appliance\.networks\.0: a network is a CIDR/);
    expect(() => loadConfig(undefined, { appliance: { name: 'Head-1' } })).toThrow(/appliance\.name: an appliance name is/);
    const state = { backend: 'postgres' as const, url: 'postgresql://shoal@/shoal' };
    expect(() => loadConfig(undefined, { state, appliance: { name: 'a', standbyFor: 'a' } })).toThrow('appliance.standbyFor: an appliance cannot stand by for itself (a)');
    expect(() => loadConfig(undefined, { appliance: { name: 'b', standbyFor: 'a' } })).toThrow('appliance.standbyFor: a standby shares the state of the appliance it stands by for: it needs state.backend postgres');
  });
});
