// The node images Shoal knows how to build. Every image is the same Debian kernel, busybox
// and agent; what tells them apart is /etc/shoal-image, which the agent reports as
// `bakedImage` so the appliance can tell which image really booted. An image may also have a
// root filesystem that its initramfs fetches and switches into.

/** A Debian kernel module, loaded in this order: each one's dependencies come before it. */
export const KERNEL_MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_modern_dev',
  'virtio_pci_legacy_dev',
  'virtio_pci',
  'failover',
  'net_failover',
  'virtio_net',
  // Disks a node reports in its hardware, and that a disk install writes to.
  'virtio_blk',
  // QEMU's default NIC on the pc machine, and common on real hardware; about 130 kB gzipped.
  'e1000',
  // The ACPI power button and the event device acpid reads it from, so a BMC's graceful power-off
  // (soft off) shuts the node down at once instead of being forced off after the grace period.
  'button',
  'evdev',
] as const;

export interface ImageRecipe {
  name: string;
  version: string;
  description: string;
  /** Base kernel arguments; the appliance appends shoal.url, shoal.node, shoal.token, shoal.image. */
  cmdline: string;
  /**
   * Also build a root filesystem (rootfs.tar.gz: busybox, /init, the agent, the modules and the
   * /etc/shoal-rootfs marker). Booted with shoal.rootfs=URL, the initramfs fetches it, unpacks
   * it into a tmpfs and switch_roots into it; the agent then runs from there.
   */
  rootfs?: boolean;
  /** Programs from Debian packages the initramfs carries besides busybox, with the shared libraries they load. */
  programs?: readonly DebianProgram[];
}

/** A dynamically linked program from a Debian package, for a busybox initramfs. */
export interface DebianProgram {
  package: string;
  /** Its path inside the package, and so in the initramfs. */
  path: string;
  /**
   * Packages its shared libraries and the dynamic loader are looked up in, by the names its ELF
   * asks for (NEEDED and the interpreter, followed through each library): a missing one fails the build.
   */
  libraryPackages: readonly string[];
}

const IMAGE_REF = /^([a-z][a-z0-9-]*)@([0-9A-Za-z][0-9A-Za-z.+-]*)$/;

export function imageRef(recipe: Pick<ImageRecipe, 'name' | 'version'>): string {
  return `${recipe.name}@${recipe.version}`;
}

export const RECIPES: readonly ImageRecipe[] = [
  {
    name: 'compute',
    version: '1',
    description: 'Compute node, first release: agent with a placeholder workload',
    cmdline: 'console=ttyS0 quiet',
  },
  {
    name: 'compute',
    version: '2',
    description: 'Compute node, second release: same agent, new release marker (exercises image changes)',
    cmdline: 'console=ttyS0 quiet',
  },
  {
    name: 'compute',
    version: '3',
    description: 'Compute node, third release: the initramfs fetches a root filesystem and switches into it; the agent runs there',
    cmdline: 'console=ttyS0 quiet',
    rootfs: true,
  },
  {
    name: 'deploy',
    version: '1',
    description: 'The deploy environment a disk install boots: the agent writes or erases a disk (write-disk, erase-disk)',
    cmdline: 'console=ttyS0 quiet',
    // busybox has dd, gunzip, sha256sum and blockdev, but no zstd. Debian's zstd links libzstd
    // statically; it loads zlib, liblzma and liblz4 (for the other formats it reads) and libc.
    programs: [{ package: 'zstd', path: 'usr/bin/zstd', libraryPackages: ['zlib1g', 'liblzma5', 'liblz4-1', 'libc6'] }],
  },
];

/** The recipe for a `name@version` reference; throws naming the known ones when there is none. */
export function findRecipe(ref: string): ImageRecipe {
  if (!IMAGE_REF.test(ref)) throw new Error(`image reference must look like name@version (e.g. compute@2), got ${JSON.stringify(ref)}`);
  const recipe = RECIPES.find((r) => imageRef(r) === ref);
  if (!recipe) throw new Error(`no recipe for image ${ref}; known: ${RECIPES.map(imageRef).join(', ')}`);
  return recipe;
}
