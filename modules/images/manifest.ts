// image.json as the image store reads it. The format is the one images/manifest.ts writes
// (images/README.md); its schema is restated here because a module depends on src/ only, and its
// digest is the one both compute (src/contracts/image-digest.ts). The store accepts a superset:
// arm64 and no `builtFrom` (hand-made images).
import { z } from 'zod';
import { imageDigest } from '../../src/contracts/image-digest.js';
import { diskArtifactSchema } from '../../src/contracts/disk-artifact.js';

export const SHA256_HEX = /^[0-9a-f]{64}$/;

const artifact = z
  .object({
    // A plain file name next to image.json: never a path, so an import reads only that directory.
    file: z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/, 'a file name next to image.json, no slashes').max(128),
    sha256: z.string().regex(SHA256_HEX, '64 lowercase hex digits'),
    size: z.number().int().positive(),
  })
  .strict();

// A disk image a deploy writes to a node's disk (src/contracts/disk-artifact.ts).
const disk = diskArtifactSchema(artifact);

// Names and versions an operator can also write in desired state (src/domain/state.ts IMAGE_REF)
// and that image.json allows: the intersection of both grammars, so every stored image can be
// asked for and every built one can be stored.
export const IMAGE_NAME = /^[a-z][a-z0-9-]{0,62}$/;
export const IMAGE_VERSION = /^[0-9a-z][0-9a-z.-]{0,31}$/;
export const IMAGE_REF = /^([a-z][a-z0-9-]{0,62})@([0-9a-z][0-9a-z.-]{0,31})$/;

export const StoredManifestSchema = z
  .object({
    name: z.string().regex(IMAGE_NAME, 'lowercase letters, digits and dashes, starting with a letter'),
    version: z.string().regex(IMAGE_VERSION, 'lowercase letters, digits, dots and dashes'),
    arch: z.enum(['x86_64', 'arm64']),
    // Both or neither: a disk-only image (an imported disk file) is written to disks, never network-booted.
    kernel: artifact.optional(),
    initrd: artifact.optional(),
    rootfs: artifact.optional(),
    disk: disk.optional(),
    cmdline: z.string().max(4096),
    /** Whether the kernel carries an Authenticode signature; checked on import when it says so (Secure Boot boots only such images). */
    kernelSigned: z.boolean().optional(),
    digest: z.string().regex(/^sha256:[0-9a-f]{64}$/, '"sha256:" and 64 lowercase hex digits'),
    // Provenance, kept as written; the store does not interpret it.
    builtFrom: z.record(z.string(), z.unknown()).optional(),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (!m.kernel !== !m.initrd) return ctx.addIssue({ code: 'custom', path: [m.kernel ? 'initrd' : 'kernel'], message: 'an image has both a kernel and an initrd, or neither' });
    if (!m.kernel && !m.disk) return ctx.addIssue({ code: 'custom', path: ['kernel'], message: 'required: only a disk image (disk) may come without a kernel and initrd' });
    if (!m.kernel && m.rootfs) return ctx.addIssue({ code: 'custom', path: ['rootfs'], message: 'a disk-only image has no root filesystem to network-boot' });
    if (!m.kernel && !m.disk?.bootEnv) return ctx.addIssue({ code: 'custom', path: ['disk', 'bootEnv'], message: 'required for a disk-only image: its installed OS gets its boot token through it' });
    const files = artifactsOf(m).map((a) => a.artifact.file);
    if (new Set(files).size !== files.length) ctx.addIssue({ code: 'custom', path: ['initrd', 'file'], message: 'kernel, initrd, rootfs and disk need distinct file names' });
    const expected = digestOf(m);
    if (m.digest !== expected) ctx.addIssue({ code: 'custom', path: ['digest'], message: `does not match the kernel, initrd, rootfs, disk and cmdline (expected ${expected})` });
  });
export type StoredManifest = z.infer<typeof StoredManifestSchema>;

export type ArtifactRole = 'kernel' | 'initrd' | 'rootfs' | 'disk';
export type Artifact = z.infer<typeof artifact>;
export type DiskArtifact = z.infer<typeof disk>;

type ManifestParts = Pick<StoredManifest, 'kernel' | 'initrd' | 'rootfs' | 'disk' | 'cmdline'>;

/** The artifacts of a manifest in a fixed order, with the role each plays. */
export function artifactsOf(m: Pick<ManifestParts, 'kernel' | 'initrd' | 'rootfs' | 'disk'>): { role: ArtifactRole; artifact: Artifact }[] {
  return [
    ...(m.kernel ? [{ role: 'kernel' as const, artifact: m.kernel }] : []),
    ...(m.initrd ? [{ role: 'initrd' as const, artifact: m.initrd }] : []),
    ...(m.rootfs ? [{ role: 'rootfs' as const, artifact: m.rootfs }] : []),
    ...(m.disk ? [{ role: 'disk' as const, artifact: m.disk }] : []),
  ];
}

/** The digest the manifest's parts give (src/contracts/image-digest.ts). */
function digestOf(m: ManifestParts): string {
  const disk = m.disk && { rawSha256: m.disk.rawSha256, bootEnvOffset: m.disk.bootEnv?.offset };
  return imageDigest({ kernelSha256: m.kernel?.sha256, initrdSha256: m.initrd?.sha256, rootfsSha256: m.rootfs?.sha256, disk, cmdline: m.cmdline });
}

/** Validates an image.json's text; the message names the source and every bad field. */
export function parseStoredManifest(text: string, source: string): StoredManifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ManifestError(`${source}: not JSON: ${(err as Error).message}`);
  }
  const result = StoredManifestSchema.safeParse(json);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`);
    throw new ManifestError(`${source}: not an image manifest: ${problems.join('; ')}`);
  }
  return result.data;
}

export class ManifestError extends Error {}
