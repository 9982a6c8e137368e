// A node's effective configuration rendered into what cloud-init's NoCloud datasource reads
// (meta-data, user-data, vendor-data, network-config version 2), and the digest of it all: the same
// rendering serves the node at boot and checks a profile when it is saved, so a template that fails
// fails at save time, never at boot. The network-config also goes on the kernel command line.
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { stringify } from 'yaml';
import type { NodeRecord } from './node.js';
import type { EffectiveConfig } from './profile.js';
import { checkCloudConfig, renderTemplate, templateFields, TemplateError } from './templates.js';

export interface NoCloudSeed {
  /** sha256 of everything below and of the image and kernel arguments: what changes when the node's configuration does. */
  digest: string;
  metaData: string;
  userData: string;
  vendorData: string;
  networkConfig: string;
  /**
   * `network-config=BASE64` of networkConfig, for the kernel command line, when the node's configuration
   * has network settings: cloud-init reads network configuration at its local stage only (the kernel
   * command line, the initramfs, a local datasource), so 22.4 (Debian 12) never applies the one of an
   * http:// (nocloud-net) seed. Without network settings the image's own DHCP stands.
   */
  networkConfigArg?: string;
  hostname: string;
}

/** x86's COMMAND_LINE_SIZE is 2048 bytes with the terminating NUL; iPXE and the kernel cut a longer line without a word. */
export const KERNEL_CMDLINE_MAX = 2047;
/**
 * The bytes of the kernel command line a node's configuration may take (its kernelArgs and its
 * network-config argument), checked when it is saved. The rest is left to the image's arguments and
 * the appliance's (URL, node, token, image, root filesystem and its sha256, seed URL: 455 bytes for
 * debian@12 in the VM test); the whole line is checked again when a boot is armed.
 */
export const CONFIG_CMDLINE_BUDGET = 1024;

/**
 * The argument cloud-init's read_kernel_cmdline_config takes: base64 of the YAML, gzip'd first when
 * that is shorter (it gunzips what is gzip'd and takes the rest as it is).
 */
export function networkConfigArgument(networkConfig: string): string {
  const plain = Buffer.from(networkConfig).toString('base64');
  const gzipped = gzipSync(networkConfig, { level: 9 }).toString('base64');
  return `network-config=${gzipped.length < plain.length ? gzipped : plain}`;
}

/** RFC 1123 host names: labels of 1-63 letters, digits and inner dashes, 253 characters at most. */
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

const sourceOf = (config: EffectiveConfig, key: string) => {
  const source = config.sources[key];
  return source === 'node' ? 'the node\'s own settings' : source ? `profile ${source.slice('profile:'.length)}` : 'the default';
};

/** Renders the node's configuration; a TemplateError names the profile (or the node) and the file. */
export function renderSeed(node: NodeRecord, config: EffectiveConfig): NoCloudSeed {
  const fields = templateFields(node);
  const { settings } = config;
  const hostnameWhere = `${sourceOf(config, 'hostname')}, hostname`;
  const hostname = settings.hostname === undefined ? node.name : renderTemplate(settings.hostname, fields, hostnameWhere).trim();
  if (!HOSTNAME.test(hostname)) throw new TemplateError(hostnameWhere, undefined, `renders to "${hostname}" for node ${node.name}, which is not a hostname (dot-separated labels of letters, digits and dashes)`);
  const files = (settings.files ?? []).map((f) => ({
    path: f.path,
    content: renderTemplate(f.content, fields, `${sourceOf(config, `files:${f.path}`)}, file ${f.path}`),
    permissions: f.mode.length === 3 ? `0${f.mode}` : f.mode,
    owner: f.owner,
  }));
  let userDoc: Record<string, unknown> = {};
  if (settings.userData !== undefined) {
    const where = `${sourceOf(config, 'userData')}, user-data`;
    userDoc = checkCloudConfig(renderTemplate(settings.userData, fields, where), where);
  }
  // What the profiles set goes after what the operator's own user-data lists, in one document:
  // vendor-data would be overridden key by key by a user-data that sets write_files itself.
  const listOf = (key: string) => (Array.isArray(userDoc[key]) ? (userDoc[key] as unknown[]) : []);
  const short = hostname.split('.')[0]!;
  const cloudConfig: Record<string, unknown> = {
    ...userDoc,
    hostname: short,
    ...(hostname.includes('.') ? { fqdn: hostname, prefer_fqdn_over_hostname: true } : {}),
    ...(settings.sshAuthorizedKeys?.length ? { ssh_authorized_keys: [...listOf('ssh_authorized_keys'), ...settings.sshAuthorizedKeys] } : {}),
    ...(files.length ? { write_files: [...listOf('write_files'), ...files] } : {}),
  };
  // All three documents in YAML 1.1, as cloud-init's PyYAML reads them (see network-config below).
  const userData = `#cloud-config\n${stringify(cloudConfig, { version: '1.1' })}`;
  // YAML 1.1 as cloud-init's PyYAML reads it: a MAC of decimal pairs such as 52:54:00:12:34:56 is a
  // base-60 integer there unless quoted, and YAML 1.2 (the default here) sees no need to quote it.
  const networkConfig = stringify(networkConfigOf(node, config), { version: '1.1' });
  const networkConfigArg = settings.network && Object.keys(settings.network).length > 0 ? networkConfigArgument(networkConfig) : undefined;
  const onCmdline = [...(settings.kernelArgs ?? []), ...(networkConfigArg ? [networkConfigArg] : [])].join(' ');
  if (Buffer.byteLength(onCmdline) > CONFIG_CMDLINE_BUDGET) {
    const key = Object.keys(config.sources).find((k) => k.startsWith('network.')) ?? 'kernelArgs';
    throw new TemplateError(
      `${sourceOf(config, key)}, ${networkConfigArg ? 'network and kernelArgs' : 'kernelArgs'}`,
      undefined,
      `node ${node.name}'s kernel arguments${networkConfigArg ? ` and its network-config (${networkConfigArg.length} bytes as network-config=BASE64)` : ''} take ${Buffer.byteLength(onCmdline)} bytes of the kernel command line, over the ${CONFIG_CMDLINE_BUDGET} a node's configuration may use (the kernel keeps ${KERNEL_CMDLINE_MAX} in all, the image and the appliance need the rest): set fewer interfaces or kernel arguments`,
    );
  }
  const vendorData = '';
  const digest = canonicalDigest({ image: settings.image ?? null, kernelArgs: settings.kernelArgs ?? [], hostname, userData, vendorData, networkConfig });
  // A new instance-id makes cloud-init run its per-instance modules again on the next boot; the
  // node's agent reports the digest in it as the configuration it booted with. public-keys is
  // NoCloud's own key list: the agent applies it in images without cloud-init, one key a line.
  const metaData = stringify(
    { 'instance-id': `shoal-${node.id}-${digest}`, 'local-hostname': hostname, ...(settings.sshAuthorizedKeys?.length ? { 'public-keys': settings.sshAuthorizedKeys } : {}) },
    { version: '1.1', lineWidth: 0 },
  );
  return { digest, metaData, userData, vendorData, networkConfig, ...(networkConfigArg ? { networkConfigArg } : {}), hostname };
}

/** Netplan-style version 2: the boot NIC (first MAC) static when an address is set, DHCP otherwise; other NICs by MAC. */
function networkConfigOf(node: NodeRecord, config: EffectiveConfig): Record<string, unknown> {
  const net = config.settings.network ?? {};
  if (net.address === 'reservation' && !node.ipv4) {
    throw new TemplateError(`${sourceOf(config, 'network.address')}, network.address`, undefined, `node ${node.name} has no reserved address (its ipv4) to use`);
  }
  const address = net.address === 'reservation' ? `${node.ipv4}/${net.prefix ?? 24}` : net.address;
  // Matched by MAC and never renamed: a rename of a NIC that is up (the initramfs booted over it) fails.
  const boot: Record<string, unknown> = { match: { macaddress: node.macs[0] } };
  if (address) {
    boot.addresses = [address];
    // 0.0.0.0/0, not netplan's `default`: cloud-init 22.4 raises on `default` and applies none of the config.
    if (net.gateway) boot.routes = [{ to: '0.0.0.0/0', via: net.gateway }];
  } else boot.dhcp4 = true;
  if (net.dns?.length) boot.nameservers = { addresses: net.dns };
  if (net.mtu) boot.mtu = net.mtu;
  const ethernets: Record<string, unknown> = { boot0: boot };
  (net.interfaces ?? []).forEach((nic, i) => {
    ethernets[`nic${i + 1}`] = {
      match: { macaddress: nic.mac },
      ...(nic.address ? { addresses: [nic.address] } : { dhcp4: true }),
      ...(nic.mtu ? { mtu: nic.mtu } : {}),
    };
  });
  return { version: 2, ethernets };
}

/** sha256 of a JSON value with its object keys sorted, so equal content has one digest whatever the key order. */
function canonicalDigest(value: unknown): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canonical) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, canonical(x)])) : v;
  return createHash('sha256').update(JSON.stringify(canonical(value))).digest('hex');
}
