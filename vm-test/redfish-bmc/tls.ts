// A throw-away self-signed certificate for the emulator's HTTPS mode, made with the
// Debian `openssl` CLI (Node has no built-in certificate generator).
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface SelfSignedCertificate {
  certPem: string;
  keyPem: string;
  /** SHA-256 of the DER certificate, colon-separated upper-case hex, as `X509Certificate.fingerprint256` prints it. */
  fingerprintSha256: string;
}

/** For 127.0.0.1, the only address the emulator binds to. */
export async function generateSelfSignedCertificate(): Promise<SelfSignedCertificate> {
  const dir = await mkdtemp(join(tmpdir(), 'redfish-bmc-tls-'));
  try {
    const certPath = join(dir, 'cert.pem');
    const keyPath = join(dir, 'key.pem');
    await execFileAsync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyPath, '-out', certPath, '-days', '2',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    ]);
    const [certPem, keyPem] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')]);
    return { certPem, keyPem, fingerprintSha256: new X509Certificate(certPem).fingerprint256 };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
