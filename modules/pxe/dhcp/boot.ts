// Which boot program a client gets, from what it says about itself: option 93 (RFC 4578
// architecture), option 60 (PXEClient / HTTPClient), and iPXE's user class 77 or option 175.
import { IPXE_NO_PXEDHCP, type DhcpOptions, type EncapsulatedOption } from './codec.js';
import type { DhcpServerConfig } from './config.js';

export const ClientArch = {
  BIOS: 0,
  EFI_IA32: 6,
  EFI_X64: 7,
  /** Some firmware reports x86-64 UEFI as 9 ("EFI BC"). */
  EFI_BC: 9,
  EFI_ARM64: 11,
  EFI_X64_HTTP: 16,
  EFI_ARM64_HTTP: 19,
} as const;

export interface ClientKind {
  /** RFC 4578 architecture, from option 93 or else the "Arch:NNNNN" in option 60. */
  arch: number | undefined;
  isIpxe: boolean;
  isPxeClient: boolean;
  isHttpClient: boolean;
}

export function classifyClient(options: DhcpOptions): ClientKind {
  const vendor = options.vendorClassId ?? '';
  const archFromVendor = /^(?:PXEClient|HTTPClient):Arch:(\d{5})/.exec(vendor);
  const arch = options.clientArch?.[0] ?? (archFromVendor ? Number(archFromVendor[1]) : undefined);
  const userClass = options.userClass;
  const saysIpxe =
    userClass !== undefined && (userClass.format === 'raw' ? userClass.value === 'iPXE' : userClass.classes.includes('iPXE'));
  return {
    arch,
    isIpxe: saysIpxe || options.ipxe !== undefined,
    isPxeClient: vendor.startsWith('PXEClient'),
    isHttpClient: vendor.startsWith('HTTPClient') || arch === ClientArch.EFI_X64_HTTP || arch === ClientArch.EFI_ARM64_HTTP,
  };
}

export type BootDecision =
  /** A plain DHCP client (an installed OS, udhcpc in an initramfs): no boot options. */
  | { kind: 'none' }
  /** A network-boot client whose architecture has no configured program. */
  | { kind: 'unsupported'; arch: number | undefined }
  /** Firmware PXE: a program over TFTP. */
  | { kind: 'tftp'; file: string }
  /** UEFI HTTP boot: a program over HTTP. */
  | { kind: 'http'; url: string }
  /** iPXE: its per-node script over HTTP. */
  | { kind: 'ipxe-script'; url: string };

function fill(template: string, server: string, mac: string): string {
  return template.replaceAll('{server}', server).replaceAll('{mac}', mac);
}

/** `uefiX64File` replaces boot.uefiX64File for this one client (a Secure Boot node gets shim). */
export function decideBoot(kind: ClientKind, mac: string, config: DhcpServerConfig, uefiX64File?: string): BootDecision {
  const server = config.interface.address;
  const boot = config.boot;
  if (kind.isIpxe) return { kind: 'ipxe-script', url: fill(boot.ipxeScriptUrl, server, mac) };
  if (kind.isHttpClient) {
    if (kind.arch === ClientArch.EFI_ARM64_HTTP) {
      return boot.httpBootArm64Url ? { kind: 'http', url: fill(boot.httpBootArm64Url, server, mac) } : { kind: 'unsupported', arch: kind.arch };
    }
    if (kind.arch === undefined || kind.arch === ClientArch.EFI_X64_HTTP) return { kind: 'http', url: fill(boot.httpBootX64Url, server, mac) };
    return { kind: 'unsupported', arch: kind.arch };
  }
  if (!kind.isPxeClient && kind.arch === undefined) return { kind: 'none' };
  switch (kind.arch) {
    // A PXEClient without option 93 is an old BIOS ROM.
    case undefined:
    case ClientArch.BIOS:
      return { kind: 'tftp', file: boot.biosFile };
    case ClientArch.EFI_X64:
    case ClientArch.EFI_BC:
      return { kind: 'tftp', file: uefiX64File ?? boot.uefiX64File };
    case ClientArch.EFI_ARM64:
      return boot.uefiArm64File ? { kind: 'tftp', file: boot.uefiArm64File } : { kind: 'unsupported', arch: kind.arch };
    default:
      return { kind: 'unsupported', arch: kind.arch };
  }
}

/**
 * Option 43 for PXE clients: PXE_DISCOVERY_CONTROL (6) = 8, "boot the file in this reply,
 * skip boot server discovery". OVMF rejects an offer with option 60 "PXEClient" but no 43.
 */
export const PXE_VENDOR_OPTIONS = Buffer.from([6, 1, 8, 255]);

/** Option 175 for iPXE: no-pxedhcp = 1, so iPXE does not wait ~3 s for a ProxyDHCP offer. */
export const IPXE_NO_PXEDHCP_OPTIONS: EncapsulatedOption[] = [{ code: IPXE_NO_PXEDHCP, data: Buffer.from([1]) }];
