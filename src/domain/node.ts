// The node vocabulary: what an operator enrolls, validated at the edge.
import { z } from 'zod';
import { ValidationError } from './errors.js';


export type NodeId = string;
export type FacetName = string;
export type FacetValue = string;

// redfish+http: plain HTTP, for BMC emulators in tests; real BMCs speak HTTPS (redfish://).
export const BMC_SCHEMES = ['ipmi', 'redfish', 'redfish+http', 'sim'] as const;
export type BmcScheme = (typeof BMC_SCHEMES)[number];

/** A BMC address without its secret: safe to log and to return from the API. */
export interface BmcAddress {
  scheme: BmcScheme;
  host: string;
  port?: number;
  username?: string;
  /** Redfish system path, e.g. /redfish/v1/Systems/1 */
  path?: string;
  /** Redfish over TLS with a self-signed certificate: allowed only when the operator says so. */
  insecure?: boolean;
}

export interface NodeSpec {
  name: string;
  macs: string[];
  bmc: BmcAddress;
  arch: 'x86_64' | 'arm64';
  firmware: 'bios' | 'uefi' | 'auto';
  ipv4?: string;
  labels: Record<string, string>;
}

export interface NodeRecord extends NodeSpec {
  id: NodeId;
}

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
const LABEL_KEY = /^[a-zA-Z0-9]([a-zA-Z0-9._/-]{0,62})$/;

export function normalizeMac(raw: string): string {
  return raw.trim().toLowerCase().replace(/-/g, ':');
}

/**
 * Parses `ipmi://user:secret@host:port`, `redfish://user@host/redfish/v1/Systems/1?insecure=1`,
 * `sim://rack1/n01`. The password, if the URL carries one, is split off so it never travels with
 * the address.
 */
export function parseBmcUrl(raw: string): { address: BmcAddress; password?: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ValidationError(`BMC address "${redactUrl(raw)}" is not a URL; expected ipmi://user@host[:port], redfish://user@host[:port][/path] or sim://name`);
  }
  const scheme = url.protocol.replace(/:$/, '');
  if (!(BMC_SCHEMES as readonly string[]).includes(scheme)) {
    throw new ValidationError(`BMC scheme "${scheme}" is not supported; use one of ${BMC_SCHEMES.join(', ')}`);
  }
  if (!url.hostname) throw new ValidationError(`BMC address "${redactUrl(raw)}" has no host`);
  const address: BmcAddress = { scheme: scheme as BmcScheme, host: url.hostname.replace(/^\[|\]$/g, '') };
  if (url.port) address.port = Number(url.port);
  if (url.username) address.username = decodeURIComponent(url.username);
  if (url.pathname && url.pathname !== '/') address.path = url.pathname;
  if (url.searchParams.get('insecure') === '1' || url.searchParams.get('insecure') === 'true') address.insecure = true;
  const password = url.password ? decodeURIComponent(url.password) : undefined;
  return password === undefined ? { address } : { address, password };
}

export function formatBmcUrl(address: BmcAddress): string {
  const user = address.username ? `${encodeURIComponent(address.username)}@` : '';
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  const port = address.port ? `:${address.port}` : '';
  const query = address.insecure ? '?insecure=1' : '';
  return `${address.scheme}://${user}${host}${port}${address.path ?? ''}${query}`;
}

/** Removes any password from a URL-looking string before it reaches an error message or a log. */
export function redactUrl(raw: string): string {
  return raw.replace(/(\/\/[^:/@\s]*):[^@/\s]*@/, '$1:***@');
}

/** The shape an operator writes (API body, inventory row): a BMC as a URL, password inline or separate. */
export const NodeInputSchema = z
  .object({
    name: z.string().regex(NAME, 'a name is 1-63 lowercase letters, digits or dashes, not starting or ending with a dash'),
    macs: z.array(z.string().transform(normalizeMac).pipe(z.string().regex(MAC, 'a MAC is six hex pairs, e.g. 52:54:00:12:34:56'))).min(1, 'a node needs at least one MAC'),
    bmc: z.string().min(1),
    bmcPassword: z.string().min(1).optional(),
    arch: z.enum(['x86_64', 'arm64']).default('x86_64'),
    firmware: z.enum(['bios', 'uefi', 'auto']).default('auto'),
    ipv4: z.ipv4().optional(),
    labels: z.record(z.string().regex(LABEL_KEY, 'a label key is letters, digits, ".", "_", "/" or "-"'), z.string().max(63)).default({}),
  })
  .strict();
export type NodeInput = z.input<typeof NodeInputSchema>;

/** Validates operator input into a spec plus its separately kept BMC secret. */
export function nodeSpecFromInput(input: unknown): { spec: NodeSpec; bmcPassword?: string } {
  const parsed = NodeInputSchema.parse(input);
  const { address, password } = parseBmcUrl(parsed.bmc);
  if (new Set(parsed.macs).size !== parsed.macs.length) throw new ValidationError(`node ${parsed.name} lists a MAC twice`);
  const spec: NodeSpec = {
    name: parsed.name,
    macs: parsed.macs,
    bmc: address,
    arch: parsed.arch,
    firmware: parsed.firmware,
    labels: parsed.labels,
  };
  if (parsed.ipv4) spec.ipv4 = parsed.ipv4;
  const bmcPassword = parsed.bmcPassword ?? password;
  return bmcPassword === undefined ? { spec } : { spec, bmcPassword };
}
