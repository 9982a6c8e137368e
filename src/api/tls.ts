// The operator API's certificate: the operator's own PEM files, or a self-signed one made at first
// start in the data directory and kept, so its fingerprint (what the CLI pins) stays the same
// across restarts. Node cannot make X.509 certificates, so the self-signed one comes from openssl.
import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ApiCertificate {
  cert: Buffer;
  key: Buffer;
  /** SHA-256 of the certificate's DER, as `AB:CD:…` (what `--fingerprint` takes). */
  fingerprint: string;
  /** Where it came from, for the start-up line. */
  origin: 'operator' | 'made' | 'kept';
  certPath: string;
}

export type TlsSetting = 'auto' | { cert: string; key: string };

/** Reads the operator's certificate and key, or makes (once) and reads the self-signed pair. */
export async function loadApiCertificate(setting: TlsSetting, dataDir: string, listen: string): Promise<ApiCertificate> {
  if (setting === 'auto') {
    const dir = join(dataDir, 'tls');
    const certPath = join(dir, 'api.crt');
    const keyPath = join(dir, 'api.key');
    const kept = existsSync(certPath) && existsSync(keyPath);
    if (!kept) await makeSelfSigned(dir, certPath, keyPath, subjectAltNames(listen));
    return { ...readPair(certPath, keyPath), origin: kept ? 'kept' : 'made', certPath };
  }
  return { ...readPair(setting.cert, setting.key), origin: 'operator', certPath: setting.cert };
}

/** `AB:CD:…` from any spelling an operator may paste: with or without colons, a `sha256:` prefix, any case. */
export function normalizeFingerprint(text: string): string {
  const hex = text.trim().replace(/^sha256:/i, '').replace(/:/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) throw new Error(`"${text}" is not a SHA-256 fingerprint (64 hex digits, colons optional)`);
  return hex.match(/../g)!.join(':');
}

/** The names a client may use for the API: its listen address (or every local address for a wildcard), the host name, loopback. */
export function subjectAltNames(listen: string): string[] {
  const wildcard = listen === '0.0.0.0' || listen === '::' || listen === '';
  const addresses = wildcard
    ? Object.values(networkInterfaces())
        .flat()
        .map((i) => i?.address.replace(/%.*$/, ''))
        .filter((a): a is string => a !== undefined)
    : [listen];
  const names = new Set<string>();
  for (const name of [...addresses, '127.0.0.1', '::1', hostname(), 'localhost']) {
    names.add(isIP(name) ? `IP:${name}` : `DNS:${name}`);
  }
  return [...names];
}

function readPair(certPath: string, keyPath: string): Omit<ApiCertificate, 'origin' | 'certPath'> {
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`api.tls: cannot read the ${what} ${path}: ${(err as Error).message}`);
    }
  };
  const cert = read(certPath, 'certificate');
  const key = read(keyPath, 'key');
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new Error(`api.tls: ${certPath} is not a PEM certificate: ${(err as Error).message}`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new Error(`api.tls: ${keyPath} is not an unencrypted PEM private key: ${(err as Error).message}`);
  }
  if (!x509.checkPrivateKey(privateKey)) throw new Error(`api.tls: the key ${keyPath} does not belong to the certificate ${certPath}`);
  return { cert, key, fingerprint: x509.fingerprint256 };
}

/**
 * Made under temporary names and renamed into place, so an interrupted start never leaves half a
 * pair that a later start would take as kept. openssl opens -keyout files 0600 itself, and the
 * directory is the appliance's alone (0700); the chmod says so for any openssl that does not.
 */
async function makeSelfSigned(dir: string, certPath: string, keyPath: string, names: string[]): Promise<void> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmpCert = `${certPath}.new`;
  const tmpKey = `${keyPath}.new`;
  try {
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256',
      '-days', '3650', '-subj', '/CN=shoal appliance API', '-addext', `subjectAltName=${names.join(',')}`,
      '-keyout', tmpKey, '-out', tmpCert,
    ]);
  } catch (err) {
    rmSync(tmpCert, { force: true });
    rmSync(tmpKey, { force: true });
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new Error('api.tls is auto but openssl is not installed, so no self-signed certificate can be made: install openssl (Debian: apt-get install openssl) or give api.tls: { cert: PATH, key: PATH }');
    }
    throw new Error(`api.tls: openssl could not make a self-signed certificate: ${(e.stderr ?? e.message).trim()}`);
  }
  chmodSync(tmpKey, 0o600);
  renameSync(tmpKey, keyPath);
  renameSync(tmpCert, certPath);
}
