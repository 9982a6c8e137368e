// A node's effective configuration rendered into what cloud-init's NoCloud datasource reads
// (meta-data, user-data, vendor-data, network-config version 2), and the digest of it all: the same
// rendering serves the node at boot and checks a profile when it is saved, so a template that fails
// fails at save time, never at boot.
import { createHash } from 'node:crypto';
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
  hostname: string;
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
  const userData = `#cloud-config\n${stringify(cloudConfig)}`;
  const networkConfig = stringify(networkConfigOf(node, config));
  const vendorData = '';
  const digest = canonicalDigest({ image: settings.image ?? null, kernelArgs: settings.kernelArgs ?? [], hostname, userData, vendorData, networkConfig });
  // A new instance-id makes cloud-init run its per-instance modules again on the next boot; the
  // node's agent reports the digest in it as the configuration it booted with. public-keys is
  // NoCloud's own key list: the agent applies it in images without cloud-init, one key a line.
  const metaData = stringify(
    { 'instance-id': `shoal-${node.id}-${digest}`, 'local-hostname': hostname, ...(settings.sshAuthorizedKeys?.length ? { 'public-keys': settings.sshAuthorizedKeys } : {}) },
    { lineWidth: 0 },
  );
  return { digest, metaData, userData, vendorData, networkConfig, hostname };
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
    if (net.gateway) boot.routes = [{ to: 'default', via: net.gateway }];
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
