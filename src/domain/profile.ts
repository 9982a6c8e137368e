// Profiles: named sets of node settings (image, kernel arguments, SSH keys, cloud-init user-data,
// files, network) that reach nodes by label selector and by name, so a rack is configured once and
// each node differs only where it must. This file is the vocabulary (validated at the edge) and the
// merge that turns a node's profiles and its own overrides into its effective configuration, which
// keeps, for each value, who set it.
import { z } from 'zod';
import { normalizeMac, type NodeRecord } from './node.js';
import { parseSelector } from './selector.js';
import { RootDeviceHintSchema } from './root-device.js';

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
/** An IPv4 address with its prefix length, e.g. 10.0.0.5/24. */
const CIDR = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}\/([0-9]|[12][0-9]|3[0-2])$/;

export const ProfileNameSchema = z.string().regex(NAME, 'a profile name is 1-63 lowercase letters, digits or dashes, not starting or ending with a dash');

const MacSchema = z.string().transform(normalizeMac).pipe(z.string().regex(MAC, 'a MAC is six hex pairs, e.g. 52:54:00:12:34:56'));

export const FileSchema = z.strictObject({
  path: z.string().regex(/^\/[^\0]*$/, 'a file path is absolute').refine((p) => !p.split('/').includes('..'), 'a file path has no ".." part'),
  /** A liquid template, rendered per node. */
  content: z.string().max(256 * 1024),
  mode: z.string().regex(/^0?[0-7]{3,4}$/, 'a mode is octal, e.g. 0644').default('0644'),
  owner: z.string().regex(/^[a-z_][a-z0-9_-]*(:[a-z_][a-z0-9_-]*)?$/, 'an owner is user or user:group').default('root:root'),
});
export type FileSetting = z.infer<typeof FileSchema>;

const InterfaceSchema = z.strictObject({
  mac: MacSchema,
  /** A static address with its prefix (10.1.0.5/24); without one the NIC asks DHCP. */
  address: z.string().regex(CIDR, 'an address is IPv4 with a prefix, e.g. 10.0.0.5/24').optional(),
  mtu: z.number().int().min(576).max(9216).optional(),
});

export const NetworkSchema = z.strictObject({
  /** The boot NIC's static address: `reservation` (the node's ipv4 with `prefix`) or a literal CIDR. */
  address: z.union([z.literal('reservation'), z.string().regex(CIDR, 'an address is "reservation" or IPv4 with a prefix, e.g. 10.0.0.5/24')]).optional(),
  /** The prefix length of a `reservation` address. */
  prefix: z.number().int().min(0).max(32).optional(),
  gateway: z.ipv4().optional(),
  dns: z.array(z.ipv4()).max(8).optional(),
  mtu: z.number().int().min(576).max(9216).optional(),
  /** NICs other than the boot NIC, matched by MAC. */
  interfaces: z.array(InterfaceSchema).max(32).optional(),
});
export type NetworkSetting = z.infer<typeof NetworkSchema>;

/** What a profile, or a node's overrides, may set; every field optional. */
export const SettingsSchema = z.strictObject({
  image: z.string().regex(/^[a-z0-9][a-z0-9._-]*@[A-Za-z0-9._-]+$/, 'an image is NAME@VERSION').optional(),
  /** A liquid template, e.g. `{{ name }}.lab`; the node's name when unset. */
  hostname: z.string().max(253).optional(),
  kernelArgs: z.array(z.string().regex(/^[^\s'"]+$/, 'a kernel argument has no spaces or quotes')).max(64).optional(),
  sshAuthorizedKeys: z.array(z.string().regex(/^(ssh-|ecdsa-|sk-)\S+ \S+/, 'an SSH key is "TYPE BASE64 [comment]"')).max(64).optional(),
  /** cloud-config text (a liquid template); its rendering must start with #cloud-config and be a YAML mapping. */
  userData: z.string().max(256 * 1024).optional(),
  files: z.array(FileSchema).max(128).optional(),
  network: NetworkSchema.optional(),
  /** Which disk an install to disk writes (src/domain/root-device.ts). */
  rootDevice: RootDeviceHintSchema.optional(),
  /** What disk=erased does: `quick` wipes partition tables and signatures, `full` overwrites the whole disk. */
  diskErase: z.enum(['quick', 'full']).optional(),
  /**
   * Network-boot UEFI machines that enforce Secure Boot through Microsoft-signed shim and Debian's
   * signed GRUB instead of iPXE (modules/pxe/README.md); the image's kernel must be signed.
   */
  secureBoot: z.boolean().optional(),
  /**
   * Whether a reprovision may kexec into the new image from the running OS, skipping firmware and
   * PXE (src/facets/kexec.ts); on when unset. false for work that needs a real reset, such as a
   * firmware update that takes effect at the next power-on self-test.
   */
  kexec: z.boolean().optional(),
});
export type Settings = z.infer<typeof SettingsSchema>;

export const ProfileInputSchema = z.strictObject({
  /** Lower merges first, so a higher priority wins; equal priorities merge by name. */
  priority: z.number().int().min(-1000).max(1000).default(0),
  /**
   * A label selector (`role=compute,rack!=r9`); the profile reaches the nodes it matches. Labels
   * only: hardware is reported at boot, and a configuration that changed with it would make the
   * boot that reported it stale.
   */
  selector: z
    .string()
    .max(1024)
    .refine((s) => {
      try {
        return !parseSelector(s).usesHardware;
      } catch {
        return false;
      }
    }, 'a profile selector is key=value or key!=value label terms joined by commas (no hw. terms)')
    .optional(),
  /** Nodes the profile reaches by name, whatever their labels. */
  nodes: z.array(z.string().regex(NAME, 'a node name is lowercase letters, digits or dashes')).max(10_000).default([]),
  settings: SettingsSchema.default({}),
});
export type ProfileInput = z.input<typeof ProfileInputSchema>;

export interface Profile extends z.infer<typeof ProfileInputSchema> {
  name: string;
}

/** Where a value of an effective configuration came from. */
export type Source = `profile:${string}` | 'node';

export interface EffectiveConfig {
  /** The profiles that reach the node, in merge order. */
  profiles: string[];
  settings: Settings;
  /**
   * Who set each value: `image`, `hostname`, `userData`, `network.gateway`… for a single value;
   * `files:PATH`, `kernelArgs:ARG`, `sshAuthorizedKeys:KEY`, `network.interfaces:MAC` for an item of a list.
   */
  sources: Record<string, Source>;
}

export function profileReaches(profile: Profile, node: Pick<NodeRecord, 'name' | 'labels'>): boolean {
  if (profile.nodes.includes(node.name)) return true;
  return profile.selector !== undefined && parseSelector(profile.selector)({ labels: node.labels });
}

/** The profiles reaching a node in merge order: by priority (lower first), then by name. */
export function profilesFor(profiles: Iterable<Profile>, node: Pick<NodeRecord, 'name' | 'labels'>): Profile[] {
  return [...profiles].filter((p) => profileReaches(p, node)).sort((a, b) => a.priority - b.priority || a.name.localeCompare(b.name));
}

/**
 * Merges settings in order, the later layer over the earlier: single values (image, hostname,
 * userData, rootDevice as a whole, diskErase, secureBoot, kexec, each network field) are replaced; files (by path) and other NICs (by MAC) are replaced
 * item by item; kernel arguments and SSH keys accumulate, each once, in the order first given.
 * userData is one document, not merged key by key: a later layer's replaces an earlier one's.
 */
export function mergeSettings(layers: { source: Source; settings: Settings }[]): { settings: Settings; sources: Record<string, Source> } {
  const merged: Settings = {};
  const sources: Record<string, Source> = {};
  for (const { source, settings } of layers) {
    for (const key of ['image', 'hostname', 'userData', 'rootDevice', 'diskErase', 'secureBoot', 'kexec'] as const) {
      if (settings[key] !== undefined) {
        (merged as Record<string, unknown>)[key] = settings[key];
        sources[key] = source;
      }
    }
    for (const key of ['kernelArgs', 'sshAuthorizedKeys'] as const) {
      for (const item of settings[key] ?? []) {
        const list = (merged[key] ??= []);
        if (list.includes(item)) continue;
        list.push(item);
        sources[`${key}:${item}`] = source;
      }
    }
    for (const file of settings.files ?? []) {
      const files = (merged.files ??= []);
      const at = files.findIndex((f) => f.path === file.path);
      if (at >= 0) files[at] = file;
      else files.push(file);
      sources[`files:${file.path}`] = source;
    }
    if (settings.network) {
      const network = (merged.network ??= {});
      for (const key of ['address', 'prefix', 'gateway', 'dns', 'mtu'] as const) {
        if (settings.network[key] !== undefined) {
          (network as Record<string, unknown>)[key] = settings.network[key];
          sources[`network.${key}`] = source;
        }
      }
      for (const nic of settings.network.interfaces ?? []) {
        const nics = (network.interfaces ??= []);
        const at = nics.findIndex((n) => n.mac === nic.mac);
        if (at >= 0) nics[at] = nic;
        else nics.push(nic);
        sources[`network.interfaces:${nic.mac}`] = source;
      }
    }
  }
  return { settings: merged, sources };
}

/** A node's effective configuration: the profiles reaching it in merge order, then its own overrides. */
export function effectiveConfig(node: Pick<NodeRecord, 'name' | 'labels'>, profiles: Iterable<Profile>, overrides: Settings | undefined): EffectiveConfig {
  const reaching = profilesFor(profiles, node);
  const layers = reaching.map((p) => ({ source: `profile:${p.name}` as Source, settings: p.settings }));
  if (overrides) layers.push({ source: 'node', settings: overrides });
  return { profiles: reaching.map((p) => p.name), ...mergeSettings(layers) };
}
