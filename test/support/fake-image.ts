// Hand-made image directories for tests and the HTTP benchmark: given bytes for the kernel and
// initrd, writes them with an image.json whose sizes, hashes and digest are right.
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { imageDigest } from '../../src/contracts/image-digest.js';
import type { StoredManifest } from '../../modules/images/manifest.js';

export interface FakeImage {
  dir: string;
  manifest: StoredManifest;
}

export function writeFakeImage(dir: string, opts: { name: string; version: string; kernel: Buffer; initrd: Buffer; rootfs?: Buffer; cmdline?: string }): FakeImage {
  mkdirSync(dir, { recursive: true });
  const artifact = (file: string, bytes: Buffer) => {
    writeFileSync(join(dir, file), bytes);
    return { file, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
  };
  const kernel = artifact('vmlinuz', opts.kernel);
  const initrd = artifact('initrd.img', opts.initrd);
  const rootfs = opts.rootfs ? artifact('root.squashfs', opts.rootfs) : undefined;
  const cmdline = opts.cmdline ?? 'console=ttyS0 quiet';
  const manifest: StoredManifest = {
    name: opts.name,
    version: opts.version,
    arch: 'x86_64',
    kernel,
    initrd,
    ...(rootfs ? { rootfs } : {}),
    cmdline,
    digest: imageDigest({ kernelSha256: kernel.sha256, initrdSha256: initrd.sha256, rootfsSha256: rootfs?.sha256, cmdline }),
  };
  writeFileSync(join(dir, 'image.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return { dir, manifest };
}
