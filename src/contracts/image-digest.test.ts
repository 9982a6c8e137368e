// The image digest against the text images/README.md documents for it, with and without a root
// filesystem: the build and the image store both compute it through this one function.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { imageDigest } from './image-digest.js';

const sha256 = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;
const kernel = 'a'.repeat(64);
const initrd = 'b'.repeat(64);
const rootfs = 'c'.repeat(64);

describe('imageDigest', () => {
  it('hashes the documented text of kernel, initrd and cmdline', () => {
    expect(imageDigest({ kernelSha256: kernel, initrdSha256: initrd, cmdline: 'console=ttyS0' })).toBe(
      sha256(`kernel ${kernel}\ninitrd ${initrd}\ncmdline console=ttyS0\n`),
    );
  });

  it('puts a root filesystem on its own line before the cmdline', () => {
    expect(imageDigest({ kernelSha256: kernel, initrdSha256: initrd, rootfsSha256: rootfs, cmdline: 'console=ttyS0' })).toBe(
      sha256(`kernel ${kernel}\ninitrd ${initrd}\nrootfs ${rootfs}\ncmdline console=ttyS0\n`),
    );
  });

  it('keeps the digest of an image without a root filesystem whether rootfsSha256 is left out or undefined', () => {
    const without = imageDigest({ kernelSha256: kernel, initrdSha256: initrd, cmdline: 'quiet' });
    expect(imageDigest({ kernelSha256: kernel, initrdSha256: initrd, rootfsSha256: undefined, cmdline: 'quiet' })).toBe(without);
  });
});
