// The image digest against the text images/README.md documents for it, with and without a root
// filesystem and a disk: the build and the image store both compute it through this one function.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { imageDigest } from './image-digest.js';

const sha256 = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;
const kernel = 'a'.repeat(64);
const initrd = 'b'.repeat(64);
const rootfs = 'c'.repeat(64);
const disk = 'd'.repeat(64);

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

  it('keeps the digests images had before disks, pinned as literals', () => {
    // Computed once from the definition before disks existed: a change here re-digests every stored image.
    expect(imageDigest({ kernelSha256: kernel, initrdSha256: initrd, cmdline: 'console=ttyS0' })).toBe('sha256:c0a22346425d72a56eca6911874ddf30e64d4774c4011d6ab6ba76f3f1a3d3f0');
    expect(imageDigest({ kernelSha256: kernel, initrdSha256: initrd, rootfsSha256: rootfs, cmdline: 'console=ttyS0' })).toBe('sha256:7a6be4f0e225f5e660e729384a7eb01a71117b23b80d7dd401f879b35fb78656');
    expect(imageDigest({ kernelSha256: kernel, initrdSha256: initrd, disk: undefined, cmdline: 'console=ttyS0' })).toBe('sha256:c0a22346425d72a56eca6911874ddf30e64d4774c4011d6ab6ba76f3f1a3d3f0');
  });

  it('puts a disk on its own line after the root filesystem, with its boot environment offset when it has one', () => {
    expect(imageDigest({ kernelSha256: kernel, initrdSha256: initrd, rootfsSha256: rootfs, disk: { rawSha256: disk }, cmdline: 'console=ttyS0' })).toBe(
      sha256(`kernel ${kernel}\ninitrd ${initrd}\nrootfs ${rootfs}\ndisk ${disk}\ncmdline console=ttyS0\n`),
    );
    expect(imageDigest({ kernelSha256: kernel, initrdSha256: initrd, disk: { rawSha256: disk, bootEnvOffset: 1048576 }, cmdline: 'console=ttyS0' })).toBe(
      sha256(`kernel ${kernel}\ninitrd ${initrd}\ndisk ${disk} bootenv 1048576\ncmdline console=ttyS0\n`),
    );
  });

  it('changes with the disk bytes and with the boot environment offset', () => {
    const base = { kernelSha256: kernel, initrdSha256: initrd, cmdline: 'console=ttyS0' };
    const digests = [
      imageDigest(base),
      imageDigest({ ...base, disk: { rawSha256: disk } }),
      imageDigest({ ...base, disk: { rawSha256: 'e'.repeat(64) } }),
      imageDigest({ ...base, disk: { rawSha256: disk, bootEnvOffset: 1048576 } }),
      imageDigest({ ...base, disk: { rawSha256: disk, bootEnvOffset: 2097152 } }),
    ];
    expect(new Set(digests).size).toBe(digests.length);
  });

  it('names a disk-only image by its disk and cmdline alone, and refuses half a network boot or nothing at all', () => {
    expect(imageDigest({ disk: { rawSha256: disk, bootEnvOffset: 1048576 }, cmdline: '' })).toBe(sha256(`disk ${disk} bootenv 1048576\ncmdline \n`));
    expect(() => imageDigest({ kernelSha256: kernel, disk: { rawSha256: disk }, cmdline: '' })).toThrow('both a kernel and an initrd, or neither');
    expect(() => imageDigest({ cmdline: '' })).toThrow('must have a disk');
  });
});
