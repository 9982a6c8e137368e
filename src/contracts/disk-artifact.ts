// The disk artifact of image.json: a disk image's file as stored (compressed or not) and the
// disk's own bytes after decompression, what a node writes and checks. Both readers of image.json
// use it, the build (images/manifest.ts) and the image store (modules/images/manifest.ts); their
// file-name rules differ, so each extends its own artifact schema with it.
import { z } from 'zod';

const MIB = 1024 * 1024;
/** A GRUB environment block's size (what grub-editenv writes): a deploy writes the node's boot arguments into it. */
export const BOOT_ENV_BYTES = 1024;

type ArtifactSchema = z.ZodObject<{ file: z.ZodString; sha256: z.ZodString; size: z.ZodNumber }>;

export function diskArtifactSchema(artifact: ArtifactSchema) {
  return artifact
    .extend({
      format: z.enum(['raw', 'zstd', 'gzip']),
      rawSize: z.number().int().positive().multipleOf(MIB, 'a positive multiple of 1 MiB (1048576 bytes): disk images are MiB-aligned'),
      rawSha256: artifact.shape.sha256,
      /** Where in the raw disk the GRUB environment block is that a deploy writes the node's boot arguments into. */
      bootEnv: z
        .object({
          offset: z.number().int().positive(),
          size: z.literal(BOOT_ENV_BYTES, `exactly ${BOOT_ENV_BYTES} bytes, a GRUB environment block`),
        })
        .strict()
        .optional(),
    })
    .strict()
    .superRefine((d, ctx) => {
      if (d.bootEnv && d.bootEnv.offset + d.bootEnv.size > d.rawSize) ctx.addIssue({ code: 'custom', path: ['bootEnv', 'offset'], message: `the block ends at ${d.bootEnv.offset + d.bootEnv.size}, past the disk's ${d.rawSize} bytes` });
      // An uncompressed disk is its own raw bytes: two descriptions of one file must agree.
      if (d.format === 'raw' && (d.size !== d.rawSize || d.sha256 !== d.rawSha256)) ctx.addIssue({ code: 'custom', path: ['rawSha256'], message: 'a raw disk has size = rawSize and sha256 = rawSha256' });
    });
}
