// The digest a node's image is known by, defined once for both sides of image.json: the build
// (images/, which writes it) and the image store (modules/images, which checks it on import).
// Named inputs, so no caller can pass the hashes in another order.
import { createHash } from 'node:crypto';

export interface ImageDigestInputs {
  /** What a network boot of the image loads, both or neither: a disk-only image (an imported disk) has neither. */
  kernelSha256?: string | undefined;
  initrdSha256?: string | undefined;
  /** Only images with a root filesystem have one. */
  rootfsSha256?: string | undefined;
  /** Only images with a disk image have one: the disk's bytes after decompression, and where its GRUB environment block is. */
  disk?: { rawSha256: string; bootEnvOffset?: number | undefined } | undefined;
  /** The image's base kernel command line. */
  cmdline: string;
}

/**
 * `sha256:` + SHA-256 of `[kernel <hex>\ninitrd <hex>\n][rootfs <hex>\n][disk <hex>[ bootenv <offset>]\n]cmdline <cmdline>\n`:
 * one value for everything that decides what a node boots or writes. The optional lines come before
 * the cmdline and only when the image has that part, so images without one keep the digest they had
 * before images could have one. The disk is named by its raw bytes, not its compressed file: that
 * is what a node writes, whatever the store keeps it compressed with.
 */
export function imageDigest({ kernelSha256, initrdSha256, rootfsSha256, disk, cmdline }: ImageDigestInputs): string {
  if ((kernelSha256 === undefined) !== (initrdSha256 === undefined)) throw new Error('an image has both a kernel and an initrd, or neither');
  if (kernelSha256 === undefined && !disk) throw new Error('an image without a kernel and initrd must have a disk');
  const netboot = kernelSha256 !== undefined ? `kernel ${kernelSha256}\ninitrd ${initrdSha256}\n` : '';
  const rootfs = rootfsSha256 ? `rootfs ${rootfsSha256}\n` : '';
  const diskLine = disk ? `disk ${disk.rawSha256}${disk.bootEnvOffset !== undefined ? ` bootenv ${disk.bootEnvOffset}` : ''}\n` : '';
  const canonical = `${netboot}${rootfs}${diskLine}cmdline ${cmdline}\n`;
  return `sha256:${createHash('sha256').update(canonical).digest('hex')}`;
}
