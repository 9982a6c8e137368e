// image.json: what a built image is, written next to its vmlinuz and initrd.img. The image
// store (modules/images) and the vm-test harness read it; parse it with `parseManifest`. Its
// digest is defined in src/contracts/image-digest.ts, which the image store uses as well.
import { z } from 'zod';

export { imageDigest } from '../src/contracts/image-digest.js';

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);
const artifact = z.object({ file: z.string().regex(/^[A-Za-z0-9._-]+$/), sha256: sha256Hex, size: z.number().int().positive() });
const debianPackage = z.object({ name: z.string().min(1), version: z.string().min(1) });

export const ImageManifest = z.object({
  name: z.string().regex(/^[a-z][a-z0-9-]*$/),
  version: z.string().regex(/^[0-9A-Za-z][0-9A-Za-z.+-]*$/),
  arch: z.literal('x86_64'),
  kernel: artifact,
  initrd: artifact,
  /** A root filesystem the initramfs fetches and switches into: a gzip'd tar (compute@3) or a squashfs (an OS recipe); only some images have one. */
  rootfs: artifact.optional(),
  /** Base kernel arguments; boot configuration appends the shoal.* ones. */
  cmdline: z.string(),
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
