// iPXE scripts rendered from a node's boot plan.
import type { ImageInfo } from '../../src/contracts/services.js';

export interface NetworkBootPlan {
  kind: 'network';
  image: string;
  /** The boot's one-time bootstrap token (shoal.token): public to anyone who fetches the script. */
  token: string;
  /**
   * The boot's NoCloud seed secret: the path under /nocloud/ where cloud-init reads this node's data
   * for this boot (images/agent/PROTOCOL.md). Plans armed before seeds existed have none.
   */
  seed?: string;
  /** Kernel arguments the node's profiles and overrides add, as they were when the boot was armed. */
  kernelArgs?: string[];
  /** The digest of the node's effective configuration when the boot was armed (the config facet). */
  digest?: string;
  /** The `network-config=…` argument of the node's configuration when the boot was armed, if it has network settings. */
  networkConfig?: string;
  /** A boot of the deploy environment (boot.deploy): its stages are observed as boot=deploy, then deployed. */
  deploy?: true;
  /** Through shim and signed GRUB rather than iPXE (the node's secureBoot setting when the boot was armed). */
  secureBoot?: true;
}
export type BootPlan = NetworkBootPlan | { kind: 'disk' };

/**
 * The kernel command line of a network boot. An image with a root filesystem gets shoal.rootfs (this
 * module's route for it, which the initramfs fetches and switches into, so each attempt and its
 * failure are seen too) and shoal.rootfs_sha256 (which it checks first). The seed URL is cloud-init's: `nocloud-net` is the name cloud-init before
 * 24.1 (Debian 12's 22.4) gives the NoCloud datasource that reads an http:// seed; later versions take
 * it as an alias of `nocloud`. The network config goes beside it, since cloud-init applies none from
 * such a seed; before the profile's kernel arguments, so one of those that sets it wins.
 */
export function kernelCommandLine(o: { advertiseUrl: string; mac: string; nodeId: string; plan: NetworkBootPlan; image: ImageInfo }): string {
  const base = o.advertiseUrl.replace(/\/$/, '');
  return [
    // Old iPXE under UEFI hands the kernel no initramfs unless the command line names it.
    'initrd=initrd.img',
    o.image.cmdline,
    `shoal.url=${base}`,
    `shoal.node=${o.nodeId}`,
    `shoal.token=${o.plan.token}`,
    `shoal.image=${o.image.ref}`,
    ...(o.image.rootfs ? [`shoal.rootfs=${base}/boot/${o.mac}/rootfs`, `shoal.rootfs_sha256=${o.image.rootfs.sha256}`] : []),
    ...(o.plan.seed ? [`ds=nocloud-net;s=${base}/nocloud/${o.plan.seed}/`] : []),
    ...(o.plan.networkConfig ? [o.plan.networkConfig] : []),
    ...(o.plan.kernelArgs ?? []),
  ]
    .filter(Boolean)
    .join(' ');
}

/** Kernel and initrd go through this module's routes, so fetching them is seen as boot=kernel. */
export function networkBootScript(o: { advertiseUrl: string; mac: string; nodeId: string; plan: NetworkBootPlan; image: ImageInfo }): string {
  const base = o.advertiseUrl.replace(/\/$/, '');
  return [
    '#!ipxe',
    `echo Shoal: booting ${o.image.ref}`,
    `kernel ${base}/boot/${o.mac}/vmlinuz ${kernelCommandLine(o)}`,
    `initrd --name initrd.img ${base}/boot/${o.mac}/initrd.img`,
    'boot',
    '',
  ].join('\n');
}

/** Leaves iPXE so the firmware tries its next boot device (the local disk). */
export function localBootScript(reason: string): string {
  return ['#!ipxe', `echo Shoal: ${reason}; booting from local disk`, 'exit', ''].join('\n');
}

/**
 * Where Debian's signed grubnetx64.efi looks first: its built-in prefix is `/grub` on the TFTP server
 * it came from, and its memdisk config sources `$prefix/x86_64-efi/grub.cfg`, else `$prefix/grub.cfg`.
 * That one file is the same for every node; it hands over to the node's own by the MAC GRUB booted
 * from. (That GRUB has no http module, and under Secure Boot loads no other: everything is TFTP.)
 */
export const GRUB_PREFIX_CONFIG = 'grub/grub.cfg';
export const GRUB_ENTRY_CONFIG = ['set timeout=0', 'configfile /grub/node/${net_default_mac}.cfg', ''].join('\n');

/** The TFTP names of a node's per-node GRUB config and its boot files. */
export function grubNodeConfigPath(mac: string): string {
  return `grub/node/${mac}.cfg`;
}
export function grubBootFilePath(mac: string, file: 'vmlinuz' | 'initrd.img'): string {
  return `boot/${mac}/${file}`;
}

/**
 * Why GRUB cannot pass this command line as it is, or undefined. GRUB rebuilds the kernel command
 * line from its arguments and puts a backslash before every quote and backslash (lib/cmdline.c),
 * which the kernel does not undo.
 */
export function grubCommandLineProblem(cmdline: string): string | undefined {
  const bad = /['"\\]/.exec(cmdline);
  return bad ? `GRUB would rewrite its ${JSON.stringify(bad[0])} (it escapes quotes and backslashes)` : undefined;
}

/**
 * The per-node GRUB config of a Secure Boot network boot: the same kernel, initrd and command line
 * as the iPXE script. Each kernel argument is its own single-quoted GRUB word, so `;` and `$` in one
 * (the NoCloud seed's `ds=nocloud-net;s=…`) are not GRUB syntax; GRUB joins them with one space each,
 * which is the command line again. The caller checked it with grubCommandLineProblem.
 */
export function networkBootGrubConfig(o: { advertiseUrl: string; mac: string; nodeId: string; plan: NetworkBootPlan; image: ImageInfo }): string {
  const args = kernelCommandLine(o)
    .split(' ')
    .filter(Boolean)
    .map((word) => `'${word}'`);
  return [
    'set timeout=0',
    `echo 'Shoal: booting ${o.image.ref}'`,
    `linux /${grubBootFilePath(o.mac, 'vmlinuz')} ${args.join(' ')}`,
    `initrd /${grubBootFilePath(o.mac, 'initrd.img')}`,
    'boot',
    '',
  ].join('\n');
}

/** Leaves GRUB, so the firmware tries its next boot device. */
export function localBootGrubConfig(reason: string): string {
  // The reason may hold a name a client sent: only characters that are plain text to GRUB.
  return ['set timeout=0', `echo 'Shoal: ${reason.replace(/[^\w .:@-]/g, '')}; booting from local disk'`, 'exit', ''].join('\n');
}
