// TLS on the operator API: a self-signed certificate made at first start and kept (its fingerprint
// printed by `shoal serve` and the same after a restart), an operator's certificate used as given,
// the CLI trusting a CA file or pinning the fingerprint, and the node routes on plain HTTP, on a
// listener of their own that does not answer for the API.
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Appliance } from '../src/appliance.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import type { ShoalModule } from '../src/engine/module.js';
import { startTestAppliance, type TestAppliance } from './support/appliance.js';
import { runShoal } from './support/cli.js';
import { killAndWait, killChildAppliances, startChildAppliance } from './support/child-appliance.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'shoal-tls-'));
let t: TestAppliance | undefined;

afterEach(async () => {
  await t?.close();
  t = undefined;
  await killChildAppliances();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A module with one node route, as the pxe and agent modules mount theirs on host.http. */
const nodeRouteModule = (): ShoalModule => ({
  name: 'node-route',
  start(host) {
    host.http.get('/boot/probe.ipxe', (_req, res) => void res.type('text/plain').send('#!ipxe\n'));
  },
});

/** GET over HTTPS trusting `ca` only; the status and body. */
function httpsGet(url: string, ca: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A CA and a certificate for 127.0.0.1 it signed, as an operator's PKI would give them. */
async function operatorPki(where: string): Promise<{ ca: string; cert: string; key: string }> {
  const p = (name: string) => join(where, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-subj', '/CN=test ca', '-days', '2', '-keyout', p('ca.key'), '-out', p('ca.crt')]);
  await run('openssl', ['req', ...ec, '-subj', '/CN=head01', '-keyout', p('api.key'), '-out', p('api.csr')]);
  writeFileSync(p('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await run('openssl', ['x509', '-req', '-in', p('api.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', p('ext.cnf'), '-out', p('api.crt')]);
  return { ca: p('ca.crt'), cert: p('api.crt'), key: p('api.key') };
}

describe('TLS on the operator API', { timeout: 60_000 }, () => {
  it('makes a self-signed certificate at first start (key 0600, names of the listen address and loopback), serves the API over HTTPS with it and the node routes on plain HTTP only', async () => {
    const dataDir = join(dir, 'auto');
    t = await startTestAppliance({ dataDir, tls: 'auto', boot: { port: 0 }, modules: [nodeRouteModule()] });
    const { appliance } = t;
    const certPem = readFileSync(join(dataDir, 'tls', 'api.crt'));
    const cert = new X509Certificate(certPem);
    expect(statSync(join(dataDir, 'tls', 'api.key')).mode & 0o777).toBe(0o600);
    expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(cert.subjectAltName).toContain('DNS:localhost');
    expect(appliance.certificate?.fingerprint).toBe(cert.fingerprint256);
    expect(appliance.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(appliance.bootUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    const auth = { authorization: `Bearer ${appliance.token}` };
    expect((await httpsGet(`${appliance.url}/api/v1/nodes`, certPem, auth)).status).toBe(200);
    expect((await httpsGet(`${appliance.url}/metrics`, certPem, auth)).status).toBe(200);
    // The node route answers on the plain port, and only there.
    const script = await fetch(`${appliance.bootUrl}/boot/probe.ipxe`);
    expect([script.status, await script.text()]).toEqual([200, '#!ipxe\n']);
    expect((await httpsGet(`${appliance.url}/boot/probe.ipxe`, certPem)).status).toBe(404);
    // The API, metrics and dashboard are not on the plain port, with or without the token.
    for (const path of ['/api/v1/nodes', '/metrics', '/']) expect((await fetch(`${appliance.bootUrl}${path}`, { headers: auth })).status).toBe(404);
  });

  it('uses an operator-given certificate and key, which the CLI trusts with --ca or SHOAL_CA', async () => {
    const pki = await operatorPki(mkdtempSync(join(dir, 'pki-')));
    t = await startTestAppliance({ tls: { cert: pki.cert, key: pki.key }, boot: { port: 0 } });
    expect(t.appliance.certificate?.fingerprint).toBe(new X509Certificate(readFileSync(pki.cert)).fingerprint256);
    expect(await runShoal(t.appliance, ['node', 'list', '--ca', pki.ca], 30_000)).toMatchObject({ code: 0, stdout: expect.stringMatching(/^NODE\s+PHASE/) });
    expect((await runShoal(t.appliance, ['node', 'list'], 30_000, { SHOAL_CA: pki.ca })).code).toBe(0);
    // Without it the system's CAs do not know the operator's CA; the CLI says what to pass.
    const untrusted = await runShoal(t.appliance, ['node', 'list'], 30_000);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/certificate is not trusted .*--ca FILE or --fingerprint SHA256/);
  });

  it('refuses an operator key that does not belong to the certificate, naming both files', async () => {
    const a = await operatorPki(mkdtempSync(join(dir, 'pki-')));
    const b = await operatorPki(mkdtempSync(join(dir, 'pki-')));
    const config = loadConfig(undefined, { dataDir: join(dir, 'mismatch'), api: { listen: '127.0.0.1', port: 0, tls: { cert: a.cert, key: b.key } } });
    await expect(Appliance.start(config, { modules: [], log: createLogger('silent') })).rejects.toThrow(`api.tls: the key ${b.key} does not belong to the certificate ${a.cert}`);
  });

  it('says openssl is needed when it cannot make the self-signed certificate', async () => {
    const config = loadConfig(undefined, { dataDir: join(dir, 'no-openssl'), api: { listen: '127.0.0.1', port: 0, tls: 'auto' } });
    const path = process.env.PATH;
    process.env.PATH = join(dir, 'empty-bin');
    try {
      await expect(Appliance.start(config, { modules: [], log: createLogger('silent') })).rejects.toThrow(/openssl is not installed.*api\.tls: \{ cert: PATH, key: PATH \}/);
    } finally {
      process.env.PATH = path;
    }
  });

  it('the CLI pins the fingerprint: the right one works (--fingerprint or SHOAL_FINGERPRINT), a wrong one fails naming both and sends nothing', async () => {
    t = await startTestAppliance({ tls: 'auto', boot: { port: 0 } });
    const fingerprint = t.appliance.certificate!.fingerprint;
    expect((await runShoal(t.appliance, ['node', 'list', '--fingerprint', fingerprint], 30_000)).code).toBe(0);
    // As an operator may paste it: lower case, no colons.
    expect((await runShoal(t.appliance, ['node', 'list'], 30_000, { SHOAL_FINGERPRINT: fingerprint.replace(/:/g, '').toLowerCase() })).code).toBe(0);

    const wrong = 'AB:'.repeat(31) + 'AB';
    const before = t.appliance.state.revision;
    const refused = await runShoal(t.appliance, ['node', 'add', 'pin01', '--mac', '52:54:00:ee:99:01', '--bmc', 'sim://pin01', '--fingerprint', wrong], 30_000);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`presented a certificate with SHA-256 fingerprint ${fingerprint}, not the expected ${wrong}`);
    expect(t.appliance.state.revision).toBe(before);
    expect((await runShoal(t.appliance, ['node', 'list', '--fingerprint', 'abc'], 30_000)).stderr).toContain('--fingerprint: "abc" is not a SHA-256 fingerprint');
  });

  it('shoal serve prints the fingerprint and the plain node URL at start, the same fingerprint after a restart', async () => {
    const home = mkdtempSync(join(dir, 'serve-'));
    const configPath = join(home, 'config.yaml');
    writeFileSync(configPath, [`dataDir: ${join(home, 'data')}`, 'api: { listen: 127.0.0.1, port: 0, tls: auto }', 'boot: { port: 0 }', 'log: { level: warn }', ''].join('\n'));
    const fingerprintOf = (stdout: string) => /SHA-256 fingerprint ([0-9A-F:]{95})/.exec(stdout)?.[1];

    const first = await startChildAppliance(configPath);
    expect(first.url).toMatch(/^https:\/\//);
    expect(first.stdout).toContain('(made now)');
    expect(first.stdout).toMatch(/node routes \(iPXE, kernels, images, agents\) at http:\/\/127\.0\.0\.1:\d+, plain HTTP/);
    const made = fingerprintOf(first.stdout);
    expect(made).toBe(new X509Certificate(readFileSync(join(home, 'data', 'tls', 'api.crt'))).fingerprint256);
    await killAndWait(first.child);

    const second = await startChildAppliance(configPath);
    expect(second.stdout).toContain('(made at first start)');
    expect(fingerprintOf(second.stdout)).toBe(made);
  });
});
