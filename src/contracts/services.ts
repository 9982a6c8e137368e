// Services one module provides and others use, declared here so that modules depend on src/ and
// never on each other. Each is looked up at call time: modules start in configuration order.
import type { NoCloudSeed } from '../domain/nocloud.js';
import type { NodeId } from '../domain/node.js';
import type { NodeOwnership } from './ownership.js';
import type { RootDeviceHint } from '../domain/root-device.js';

/** A bootable image as the images module stores it. */
export interface ImageInfo {
  /** `name@version`, what desired state names. */
  ref: string;
  name: string;
  version: string;
  arch: 'x86_64' | 'arm64';
  /** sha256 of the image manifest: what a booted node reports. */
  digest: string;
  /** What a network boot loads; a disk-only image (an imported disk file) has neither and is only written to disks. */
  kernel?: ImageFile;
  initrd?: ImageFile;
  rootfs?: ImageFile;
  /** A disk image a deploy writes to the node's disk; only some images have one. */
  disk?: ImageDisk;
  /** Kernel arguments the image needs (the boot module appends its own). */
  cmdline: string;
  /**
   * Whether the kernel carries an Authenticode signature (images/pe-signature.ts), as its manifest
   * records it; undefined for a manifest from before that was recorded. Secure Boot needs true.
   */
  kernelSigned?: boolean;
}

export interface ImageFile {
  sha256: string;
  size: number;
  /** Path on the appliance's HTTP server, e.g. /images/compute/2/vmlinuz */
  path: string;
}

/**
 * The disk image's file as served (`sha256` and `size` are the file's, compressed or not) and the
 * disk's own bytes, what the node writes to its disk and checks after decompressing.
 */
export type ImageDisk = ImageFile & {
  format: 'raw' | 'zstd' | 'gzip';
  /** Bytes of the raw disk, a multiple of 1 MiB. */
  rawSize: number;
  rawSha256: string;
  /** Where in the raw disk the 1024-byte GRUB environment block is that a deploy writes the node's boot arguments into. */
  bootEnv?: { offset: number; size: number };
};

export interface ImageCatalog {
  get(ref: string): ImageInfo | undefined;
  byDigest(digest: string): ImageInfo | undefined;
  list(): ImageInfo[];
}

/** Per-boot tokens: minted when a boot is prepared, checked when the booted node's agent reports. */
export interface BootTokens {
  /**
   * A fresh one-time bootstrap token for the node's next boot of `imageRef`, for its kernel command
   * line; its first hello trades it for the boot's own token. Earlier bootstraps of the node can no
   * longer start a boot; the running boot keeps its token until the new boot says hello, so the
   * running agent can still be asked to drain and reboot.
   */
  issue(nodeId: NodeId, imageRef: string): string;
}

/** A node's effective configuration (src/state/profiles.ts), as a boot module needs it; the appliance itself provides it. */
export interface NodeConfigs {
  /**
   * The image, kernel arguments and boot path (secureBoot: shim and signed GRUB) the node's profiles
   * and overrides set, and whether a reprovision may kexec (false: forbidden, with who said so).
   */
  boot(nodeId: NodeId): { image?: string; kernelArgs: string[]; secureBoot?: boolean; kexec: { allowed: boolean; setBy?: string } } | undefined;
  /** What cloud-init's NoCloud datasource reads for the node now; undefined for a node not in the inventory. */
  seed(nodeId: NodeId): NoCloudSeed | undefined;
  /** Which disk an install writes and how disk=erased wipes it (quick when unset). */
  disk(nodeId: NodeId): { rootDevice?: RootDeviceHint; erase: 'quick' | 'full' } | undefined;
}

/** An armed network boot as a running OS loads it for kexec: what the iPXE script would boot, from the image store. */
export interface KexecBoot {
  image: string;
  kernel: ImageFile;
  initrd: ImageFile;
  /** The boot's kernel command line, its one-time bootstrap included: the same words the iPXE script gives. */
  cmdline: string;
}

/** The node's armed network boots, for a running agent to kexec into (the boot module provides it; the agent module asks). */
export interface ArmedBoots {
  /** The node's armed boot of an image, or why it has none a kexec can start. */
  forKexec(nodeId: NodeId): KexecBoot | { problem: string };
  /** The node's running OS is kexec'ing into its armed boot, past firmware and PXE: the boot facet observes it. */
  kexecStarted(nodeId: NodeId): void;
}

/** A skopeo reference an import takes besides a plain path: its transport, then what it names. */
export const SKOPEO_REFERENCE = /^(oci:|oci-archive:|docker-archive:|docker:\/\/)(?=.)/;

/** What an import of a container image is asked to do (modules/oci does it with images/oci-import.ts). */
export interface ContainerImageRequest {
  /** An absolute path on the appliance host (OCI layout, OCI archive, `docker save` archive), or a skopeo reference. */
  source: string;
  name?: string;
  version?: string;
  /** A directory holding a built image (image.json, vmlinuz, root.squashfs) whose kernel and modules to use. */
  kernelFromDir?: string;
  /** The init to run when the image has no /sbin/init. */
  init?: string;
}

/** Turns a container image into a Shoal image directory; the images module stores it. */
export interface ContainerImageImporter {
  /** Writes `<outDir>/<name>@<version>/`; rejects with an Error whose message names the source and the reason. */
  importImage(request: ContainerImageRequest, outDir: string, progress: (line: string) => void): Promise<{ ref: string; dir: string }>;
}

/** What nodes say of the configuration they booted with: the agent module reports, the boot module (owner of the config facet) observes. */
export interface ConfigReports {
  /** The node's agent says this boot was given the configuration whose digest this is. */
  booted(nodeId: NodeId, digest: string): void;
}

export interface Services {
  images: ImageCatalog;
  configReports: ConfigReports;
  containerImages: ContainerImageImporter;
  bootTokens: BootTokens;
  armedBoots: ArmedBoots;
  nodeConfig: NodeConfigs;
  /** Which nodes this appliance acts on (the appliance itself provides it): a boot module answers only those. */
  ownership: NodeOwnership;
}

export class ServiceRegistry {
  private readonly provided = new Map<keyof Services, Services[keyof Services]>();

  provide<K extends keyof Services>(name: K, impl: Services[K]): void {
    if (this.provided.has(name)) throw new Error(`service ${name} is provided twice`);
    this.provided.set(name, impl);
  }

  get<K extends keyof Services>(name: K): Services[K] | undefined {
    return this.provided.get(name) as Services[K] | undefined;
  }
}
