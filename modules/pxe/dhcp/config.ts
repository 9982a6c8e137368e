// The DHCP server's configuration: parsed and checked once, at construction, so the
// packet path never meets an impossible subnet or pool.
import { z } from 'zod';
import { ipToNumber, isIpv4, numberToIp } from './codec.js';

const ipv4 = z.string().refine(isIpv4, { message: 'not a dotted-quad IPv4 address' });

/** Linux interface names: at most 15 bytes, no slash or whitespace. */
const interfaceName = z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'not a Linux interface name');

const urlTemplate = z
  .string()
  .min(1)
  .refine((t) => /^https?:\/\//.test(t), { message: 'must be an http:// or https:// URL template' });

const SubnetSchema = z.object({
  /** The network in CIDR form, e.g. "10.0.0.0/24"; relayed requests pick it by giaddr. */
  cidr: z.string().regex(/^\d+\.\d+\.\d+\.\d+\/\d+$/, 'not an IPv4 CIDR'),
  router: ipv4.optional(),
  dnsServers: z.array(ipv4).default([]),
  domainName: z.string().min(1).max(255).optional(),
  /** Dynamic addresses for MACs the address book does not know; without it only reservations get leases. */
  pool: z.object({ start: ipv4, end: ipv4 }).optional(),
});

const BootSchema = z.object({
  /** Legacy BIOS PXE ROMs (arch 0) get this file over TFTP. */
  biosFile: z.string().min(1).max(127).default('undionly.kpxe'),
  /** x86-64 UEFI PXE (arch 7 and 9); `ipxe.efi` is the alternative with its own drivers. */
  uefiX64File: z.string().min(1).max(127).default('snponly.efi'),
  /** arm64 UEFI PXE (arch 11); without it such clients get no boot offer. */
  uefiArm64File: z.string().min(1).max(127).optional(),
  /** UEFI HTTP boot clients (arch 16); `{server}` is replaced by the server address. */
  httpBootX64Url: urlTemplate.default('http://{server}/boot/ipxe.efi'),
  /** arm64 UEFI HTTP boot (arch 19); without it such clients get no boot offer. */
  httpBootArm64Url: urlTemplate.optional(),
  /** iPXE fetches its per-node script here; `{mac}` is the colon-separated lower-case MAC. */
  ipxeScriptUrl: urlTemplate.default('http://{server}/boot/{mac}.ipxe'),
  /** next-server / option 66; defaults to the interface address. */
  tftpServer: ipv4.optional(),
});

export const DhcpServerConfigSchema = z
  .object({
    /** full: hand out addresses; proxy: only boot information to PXE clients, beside another DHCP server. */
    mode: z.enum(['full', 'proxy']),
    /**
     * The one interface served. The server binds `address:67` (unicast and all replies) and
     * `255.255.255.255:67` (client broadcasts); see transport.ts for why.
     */
    interface: z.object({ name: interfaceName, address: ipv4 }),
    subnets: z.array(SubnetSchema).default([]),
    leaseSeconds: z.number().int().min(60).max(0xfffffffe).default(3600),
    /** How long an OFFER holds its address for the client's REQUEST. */
    offerSeconds: z.number().int().min(1).max(3600).default(60),
    boot: BootSchema.default(BootSchema.parse({})),
  })
  .superRefine((config, ctx) => {
    const ranges: Array<{ from: number; to: number; cidr: string }> = [];
    config.subnets.forEach((subnet, index) => {
      const path = ['subnets', index];
      const range = cidrRange(subnet.cidr);
      if (!range) {
        ctx.addIssue({ code: 'custom', path: [...path, 'cidr'], message: `invalid CIDR ${subnet.cidr}` });
        return;
      }
      for (const other of ranges) {
        if (range.network <= other.to && other.from <= range.broadcast) {
          ctx.addIssue({ code: 'custom', path: [...path, 'cidr'], message: `${subnet.cidr} overlaps ${other.cidr}` });
        }
      }
      ranges.push({ from: range.network, to: range.broadcast, cidr: subnet.cidr });
      const inside = (ip: string) => {
        const n = ipToNumber(ip);
        return n > range.network && n < range.broadcast;
      };
      if (subnet.router && !inside(subnet.router)) {
        ctx.addIssue({ code: 'custom', path: [...path, 'router'], message: `router ${subnet.router} is not a host in ${subnet.cidr}` });
      }
      if (subnet.pool) {
        const { start, end } = subnet.pool;
        if (!inside(start) || !inside(end) || ipToNumber(start) > ipToNumber(end)) {
          ctx.addIssue({ code: 'custom', path: [...path, 'pool'], message: `pool ${start}-${end} is not an ordered host range in ${subnet.cidr}` });
        } else {
          const server = ipToNumber(config.interface.address);
          if (server >= ipToNumber(start) && server <= ipToNumber(end)) {
            ctx.addIssue({ code: 'custom', path: [...path, 'pool'], message: `pool ${start}-${end} contains the server address` });
          }
        }
      }
    });
    if (config.mode === 'full') {
      const server = ipToNumber(config.interface.address);
      if (!ranges.some((r) => server > r.from && server < r.to)) {
        ctx.addIssue({ code: 'custom', path: ['interface', 'address'], message: 'full mode needs a subnet that contains the interface address' });
      }
    }
  });

export type DhcpServerConfigInput = z.input<typeof DhcpServerConfigSchema>;
export type DhcpServerConfig = z.output<typeof DhcpServerConfigSchema>;
export type SubnetConfig = z.output<typeof SubnetSchema>;

export class DhcpConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid DHCP server configuration: ${issues.join('; ')}`);
    this.name = 'DhcpConfigError';
  }
}

export function parseDhcpServerConfig(input: unknown): DhcpServerConfig {
  const result = DhcpServerConfigSchema.safeParse(input);
  if (!result.success) {
    throw new DhcpConfigError(result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`));
  }
  return result.data;
}

export interface CidrRange {
  network: number;
  broadcast: number;
  mask: string;
  prefix: number;
}

/** Network and broadcast numbers of an IPv4 CIDR, or undefined when it is not one. */
export function cidrRange(cidr: string): CidrRange | undefined {
  const [address, prefixText] = cidr.split('/');
  const prefix = Number(prefixText);
  if (!address || !isIpv4(address) || !Number.isInteger(prefix) || prefix < 8 || prefix > 30) return undefined;
  const maskNumber = (0xffffffff << (32 - prefix)) >>> 0;
  const network = (ipToNumber(address) & maskNumber) >>> 0;
  if (network !== ipToNumber(address)) return undefined;
  return { network, broadcast: (network | (~maskNumber >>> 0)) >>> 0, mask: numberToIp(maskNumber), prefix };
}
