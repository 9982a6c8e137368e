// The digest a node's image is known by, defined once for both sides of image.json: the build
// (images/, which writes it) and the image store (modules/images, which checks it on import).
// Named inputs, so no caller can pass the hashes in another order.
import { createHash } from 'node:crypto';

export interface ImageDigestInputs {
  kernelSha256: string;
  initrdSha256: string;
  /** Only images with a root filesystem have one. */
  rootfsSha256?: string | undefined;
  /** The image's base kernel command line. */
  cmdline: string;
}

/**
 * `sha256:` + SHA-256 of `kernel <hex>\ninitrd <hex>\n[rootfs <hex>\n]cmdline <cmdline>\n`: one
 * value for everything that decides what a node boots. The root filesystem is the optional line
 * before the cmdline, so images without one keep the digest they had before images could have one.
 */
export function imageDigest({ kernelSha256, initrdSha256, rootfsSha256, cmdline }: ImageDigestInputs): string {
  const rootfs = rootfsSha256 ? `rootfs ${rootfsSha256}\n` : '';
  const canonical = `kernel ${kernelSha256}\ninitrd ${initrdSha256}\n${rootfs}cmdline ${cmdline}\n`;
  return `sha256:${createHash('sha256').update(canonical).digest('hex')}`;
}
