// The initramfs's module list from a kernel's modules.dep: dependencies first, each once,
// built-ins skipped, a missing or compressed module named.
import { describe, expect, it } from 'vitest';
import { moduleName, modulesToLoad } from './kernel-modules.js';

const DEP = [
  'kernel/drivers/block/loop.ko:',
  'kernel/fs/squashfs/squashfs.ko: kernel/lib/zstd/zstd_decompress.ko kernel/lib/zstd/zstd_common.ko',
  'kernel/lib/zstd/zstd_decompress.ko: kernel/lib/zstd/zstd_common.ko',
  'kernel/lib/zstd/zstd_common.ko:',
  'kernel/fs/overlayfs/overlay.ko:',
  'kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko',
  'kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko',
  'kernel/net/core/failover.ko:',
  'kernel/drivers/misc/xz-thing.ko.xz:',
  '',
].join('\n');
const BUILTIN = 'kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n';

describe('modulesToLoad', () => {
  it('puts every dependency before the module needing it, once, and skips built-ins', () => {
    expect(modulesToLoad(['virtio', 'virtio_net', 'squashfs', 'loop', 'overlay', 'failover'], DEP, BUILTIN, '6.1.0-test')).toEqual([
      'kernel/net/core/failover.ko',
      'kernel/drivers/net/net_failover.ko',
      'kernel/drivers/net/virtio_net.ko',
      'kernel/lib/zstd/zstd_common.ko',
      'kernel/lib/zstd/zstd_decompress.ko',
      'kernel/fs/squashfs/squashfs.ko',
      'kernel/drivers/block/loop.ko',
      'kernel/fs/overlayfs/overlay.ko',
    ]);
  });

  it('treats - and _ alike, as the kernel does', () => {
    expect(moduleName('kernel/drivers/misc/xz-thing.ko.xz')).toBe('xz_thing');
    expect(modulesToLoad(['virtio-net'], DEP, BUILTIN, '6.1.0-test').at(-1)).toBe('kernel/drivers/net/virtio_net.ko');
  });

  it('names a module the kernel does not have, and a compressed one busybox cannot load', () => {
    expect(() => modulesToLoad(['nosuch'], DEP, BUILTIN, '6.1.0-test')).toThrow('kernel 6.1.0-test has no module nosuch');
    expect(() => modulesToLoad(['xz_thing'], DEP, BUILTIN, '6.1.0-test')).toThrow(/compressed modules.*xz-thing\.ko\.xz/);
  });
});
