// What the pxe module looks up from other modules, for tests of it without them: an image store
// that knows a few images, and an agent module that issues boot tokens.
import type { ImageInfo } from '../../src/contracts/services.js';
import type { ShoalModule } from '../../src/engine/module.js';

/** compute@1 as the image store lists it: a kernel and an initrd, no root filesystem. */
export const COMPUTE_IMAGE: ImageInfo = {
  ref: 'compute@1',
  name: 'compute',
  version: '1',
  arch: 'x86_64',
  digest: 'sha256:abc',
  kernel: { sha256: 'k', size: 1, path: '/images/compute/1/vmlinuz' },
  initrd: { sha256: 'i', size: 1, path: '/images/compute/1/initrd.img' },
  cmdline: 'console=ttyS0 quiet',
};

/** Stand-ins for the images and agent modules: `images` (read when asked, so a test may add to it) and tokens `token-1`, `token-2`, … each recorded in `issued`. */
export function pxeServiceStandIns(images: ReadonlyMap<string, ImageInfo>, issued: { nodeId: string; image: string }[] = []): ShoalModule {
  return {
    name: 'stand-in',
    start(host) {
      host.services.provide('images', { get: (ref) => images.get(ref), byDigest: () => undefined, list: () => [...images.values()] });
      host.services.provide('bootTokens', {
        issue: (nodeId, image) => {
          issued.push({ nodeId, image });
          return `token-${issued.length}`;
        },
      });
    },
  };
}
