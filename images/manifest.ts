// image.json: what a built image is, written next to its vmlinuz and initrd.img. The image
// store (modules/images) and the vm-test harness read it; parse it with `parseManifest`. Its
// digest is defined in src/contracts/image-digest.ts, which the image store uses as well.
import { z } from 'zod';

import { imageDigest } from '../src/contracts/image-digest.js';
import { diskArtifactSchema } from '../src/contracts/disk-artifact.js';
import { hasAuthenticodeSignature } from '../src/domain/pe-signature.js';

export { imageDigest };

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);
const artifact = z.object({ file: z.string().regex(/^[A-Za-z0-9._-]+$/), sha256: sha256Hex, size: z.number().int().positive() });
// A disk image (disk-image.ts): the file as stored, and the disk's own bytes after decompression.
const diskArtifact = diskArtifactSchema(artifact);
export type DiskArtifact = z.infer<typeof diskArtifact>;
const debianPackage = z.object({ name: z.string().min(1), version: z.string().min(1) });

export const ImageManifest = z.object({
  name: z.string().regex(/^[a-z][a-z0-9-]*$/),
  version: z.string().regex(/^[0-9A-Za-z][0-9A-Za-z.+-]*$/),
  arch: z.literal('x86_64'),
  kernel: artifact,
  initrd: artifact,
  /** A root filesystem the initramfs fetches and switches into: a gzip'd tar (compute@3) or a squashfs (an OS recipe); only some images have one. */
  rootfs: artifact.optional(),
  /** A disk image a deploy writes to a node's disk (build-disk.ts --image adds it); only some images have one. */
  disk: diskArtifact.optional(),
  /** Base kernel arguments; boot configuration appends the shoal.* ones. */
  cmdline: z.string(),
  /** Whether the kernel carries an Authenticode signature (Debian's does), which Secure Boot needs; not part of the digest, since the kernel's bytes are. */
  kernelSigned: z.boolean().optional(),
  /** "sha256:" + hex; see `imageDigest`. */
  digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  builtFrom: z.object({
    /** The Debian package the kernel came from; absent for a kernel an imported container image brought without a dpkg record of it. */
    kernelPackage: debianPackage.optional(),
    busyboxPackage: debianPackage,
    kernelRelease: z.string().min(1),
    modules: z.array(z.string().min(1)),
    sourceDateEpoch: z.number().int().nonnegative(),
    /** Images built from an OS recipe (images/recipes/): which, from where, and the root tree's cache key. */
    recipe: z.object({ file: z.string().min(1), suite: z.string().min(1), mirror: z.string().min(1), treeKey: sha256Hex }).optional(),
    /** Images imported from a container image (oci-import.ts): the source as given, the OCI manifest's digest, and the image the kernel came from when the container had none. */
    oci: z
      .object({
        source: z.string().min(1),
        manifestDigest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
        configDigest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
        kernelFrom: z.object({ image: z.string().min(1), digest: z.string().regex(/^sha256:[0-9a-f]{64}$/) }).optional(),
      })
      .optional(),
  }),
});
export type ImageManifest = z.infer<typeof ImageManifest>;

/**
 * The manifest with `disk` as its disk and the digest recomputed (the digest covers the disk):
 * what build-disk.ts --image writes into an image directory built before.
 */
export function withDisk(m: ImageManifest, disk: DiskArtifact): ImageManifest {
  const digest = imageDigest({
    kernelSha256: m.kernel.sha256,
    initrdSha256: m.initrd.sha256,
    rootfsSha256: m.rootfs?.sha256,
    disk: { rawSha256: disk.rawSha256, bootEnvOffset: disk.bootEnv?.offset },
    cmdline: m.cmdline,
  });
  // Spelled out for image.json's key order: the files, then what the kernel is given, then where it came from.
  const { name, version, arch, kernel, initrd, rootfs, cmdline, kernelSigned, builtFrom } = m;
  const result = ImageManifest.safeParse({ name, version, arch, kernel, initrd, ...(rootfs ? { rootfs } : {}), disk, cmdline, ...(kernelSigned !== undefined ? { kernelSigned } : {}), digest, builtFrom });
  if (!result.success) throw new Error(`${name}@${version}: the disk does not fit image.json: ${z.prettifyError(result.error)}`);
  return result.data;
}

/**
 * What image.json records of a kernel's signature. A kernel that is no PE file at all (no EFI stub)
 * is simply not signed; one that starts like a PE file but does not parse fails the build.
 */
export function kernelSignedOf(kernel: Buffer): boolean {
  return kernel.length >= 2 && kernel.readUInt16LE(0) === 0x5a4d && hasAuthenticodeSignature(kernel);
}

/** Validates an image.json's text; the error names the file and the bad field. */
export function parseManifest(text: string, source: string): ImageManifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`${source}: not JSON: ${(error as Error).message}`);
  }
  const result = ImageManifest.safeParse(json);
  if (!result.success) throw new Error(`${source}: not an image manifest: ${z.prettifyError(result.error)}`);
  return result.data;
}
