// A node's BMC endpoint as configured by an operator, parsed and checked once at the
// edge: the BMC URL names the host, the user and optionally the system; the password
// and TLS trust come from the node's config beside it.
import { z } from 'zod';
import { RedfishConfigError } from './errors.js';

const sha256FingerprintPattern = /^(?:[0-9a-f]{2}:?){31}[0-9a-f]{2}$/i;

export const redfishEndpointConfigSchema = z.strictObject({
  /**
   * `redfish://user@host[:port][/redfish/v1]/Systems/ID`. `redfish:` and `redfish+https:` mean
   * HTTPS (what Redfish requires); `redfish+http:` is plain HTTP for emulators. The system part
   * is optional when the BMC has exactly one system.
   */
  url: z.string().min(1),
  /** Needed unless the URL carries the user. */
  username: z.string().min(1).optional(),
  password: z.string(),
  /** Accept any certificate. For lab BMCs only; prefer `certificateSha256`. */
  insecure: z.boolean().default(false),
  /** Accept exactly the certificate with this SHA-256 fingerprint (hex, colons optional), whoever signed it. */
  certificateSha256: z.string().regex(sha256FingerprintPattern, 'a SHA-256 fingerprint: 32 hex bytes').optional(),
  /** Deadline of one HTTP exchange, connection included. */
  requestTimeoutMs: z.number().int().positive().default(10_000),
  /** Deadline for a task the BMC accepted with 202 to finish. */
  taskTimeoutMs: z.number().int().positive().default(120_000),
  /** Pause between task monitor polls when the BMC does not send Retry-After. */
  taskPollIntervalMs: z.number().int().nonnegative().default(1_000),
});

export type RedfishEndpointConfig = z.input<typeof redfishEndpointConfigSchema>;

export type TlsTrust =
  | { kind: 'ca' }
  | { kind: 'any' }
  | { kind: 'pinned'; fingerprintSha256: string };

export interface RedfishEndpoint {
  protocol: 'http:' | 'https:';
  host: string;
  port: number;
  /** Origin requests go to; every URL a BMC hands back must stay on it. */
  origin: string;
  username: string;
  password: string;
  /** `/redfish/v1/Systems/ID` when the URL named one. */
  systemPath: string | undefined;
  tlsTrust: TlsTrust;
  requestTimeoutMs: number;
  taskTimeoutMs: number;
  taskPollIntervalMs: number;
}

const schemes: Record<string, 'http:' | 'https:'> = {
  'redfish:': 'https:',
  'redfish+https:': 'https:',
  'https:': 'https:',
  'redfish+http:': 'http:',
  'http:': 'http:',
};

/** Lower-case hex without separators, the form fingerprints are compared in. */
export function normalizeFingerprint(fingerprint: string): string {
  return fingerprint.replaceAll(':', '').toLowerCase();
}

export function parseRedfishEndpoint(input: unknown): RedfishEndpoint {
  const parsed = redfishEndpointConfigSchema.safeParse(input);
  if (!parsed.success) throw new RedfishConfigError(`invalid Redfish endpoint config: ${z.prettifyError(parsed.error)}`);
  const config = parsed.data;

  let url: URL;
  try {
    url = new URL(config.url);
  } catch {
    throw new RedfishConfigError(`invalid BMC URL ${JSON.stringify(config.url)}`);
  }
  const protocol = schemes[url.protocol];
  if (!protocol) throw new RedfishConfigError(`BMC URL scheme ${url.protocol} is not one of ${Object.keys(schemes).join(' ')}`);
  if (!url.hostname) throw new RedfishConfigError('BMC URL has no host');
  // Passwords in URLs end up in logs and process lists; they belong in the node's secret config.
  if (url.password) throw new RedfishConfigError('put the BMC password in the config, not in the URL');
  if (url.search || url.hash) throw new RedfishConfigError('BMC URL must not have a query or fragment');

  const urlUser = decodeURIComponent(url.username);
  if (urlUser && config.username && urlUser !== config.username) {
    throw new RedfishConfigError(`BMC user is ${urlUser} in the URL but ${config.username} in the config`);
  }
  const username = urlUser || config.username;
  if (!username) throw new RedfishConfigError('no BMC user: give it in the URL (redfish://user@host) or as username');

  if (config.insecure && config.certificateSha256) {
    throw new RedfishConfigError('choose insecure or certificateSha256, not both');
  }
  const tlsTrust: TlsTrust = config.certificateSha256
    ? { kind: 'pinned', fingerprintSha256: normalizeFingerprint(config.certificateSha256) }
    : config.insecure
      ? { kind: 'any' }
      : { kind: 'ca' };

  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port ? Number(url.port) : protocol === 'https:' ? 443 : 80;
  return {
    protocol,
    host,
    port,
    origin: `${protocol}//${url.hostname}:${port}`,
    username,
    password: config.password,
    systemPath: systemPathOf(url.pathname),
    tlsTrust,
    requestTimeoutMs: config.requestTimeoutMs,
    taskTimeoutMs: config.taskTimeoutMs,
    taskPollIntervalMs: config.taskPollIntervalMs,
  };
}

function systemPathOf(pathname: string): string | undefined {
  const trimmed = pathname.replace(/\/+$/, '');
  if (trimmed === '' || trimmed === '/redfish/v1') return undefined;
  const match = /^(?:\/redfish\/v1)?\/Systems\/([^/]+)$/.exec(trimmed);
  if (!match) throw new RedfishConfigError(`BMC URL path ${pathname} is not /redfish/v1/Systems/ID or /Systems/ID`);
  return `/redfish/v1/Systems/${match[1]}`;
}
