// The merge of profiles and node overrides (order, provenance), strict templates and the NoCloud
// rendering they feed, without an appliance.
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { NodeRecord } from './node.js';
import { CONFIG_CMDLINE_BUDGET, networkConfigArgument, renderSeed } from './nocloud.js';
import { effectiveConfig, ProfileInputSchema, type Profile } from './profile.js';
import { checkCloudConfig, renderTemplate, templateFields, TemplateError } from './templates.js';

const node: NodeRecord = {
  id: '11111111-2222-3333-4444-555555555555',
  name: 'c01',
  macs: ['52:54:00:00:00:0a', '52:54:00:00:01:0a'],
  bmc: { scheme: 'sim', host: 'c01' },
  arch: 'x86_64',
  firmware: 'uefi',
  ipv4: '10.0.0.11',
  labels: { role: 'compute', rack: 'r1' },
};
const profile = (name: string, input: unknown): Profile => ({ name, ...ProfileInputSchema.parse(input) });

describe('effective configuration', () => {
  const base = profile('base', { priority: -10, selector: 'role=compute', settings: { image: 'debian@1', kernelArgs: ['console=ttyS0'], sshAuthorizedKeys: ['ssh-ed25519 AAAA ops'], files: [{ path: '/etc/motd', content: 'base' }] } });
  const gpu = profile('gpu', { nodes: ['c01'], settings: { image: 'debian@2', kernelArgs: ['console=ttyS0', 'iommu=pt'], files: [{ path: '/etc/motd', content: 'gpu' }] } });
  const other = profile('other', { selector: 'role=login', settings: { image: 'login@1' } });

  it('merges the profiles that reach the node by priority then name, then its overrides, and says who set each value', () => {
    const config = effectiveConfig(node, [gpu, other, base], { hostname: '{{ name }}.lab', network: { gateway: '10.0.0.1' } });
    expect(config.profiles).toEqual(['base', 'gpu']);
    expect(config.settings.image).toBe('debian@2');
    expect(config.settings.kernelArgs).toEqual(['console=ttyS0', 'iommu=pt']);
    expect(config.settings.files).toEqual([{ path: '/etc/motd', content: 'gpu', mode: '0644', owner: 'root:root' }]);
    expect(config.sources).toMatchObject({
      image: 'profile:gpu',
      'kernelArgs:console=ttyS0': 'profile:base',
      'kernelArgs:iommu=pt': 'profile:gpu',
      'sshAuthorizedKeys:ssh-ed25519 AAAA ops': 'profile:base',
      'files:/etc/motd': 'profile:gpu',
      hostname: 'node',
      'network.gateway': 'node',
    });
  });

  it('lets a higher priority win over a name that sorts later', () => {
    const high = profile('aaa', { priority: 5, selector: 'rack=r1', settings: { image: 'high@1' } });
    expect(effectiveConfig(node, [gpu, high], undefined).settings.image).toBe('high@1');
  });

  it('refuses settings outside the vocabulary with the field named', () => {
    expect(() => ProfileInputSchema.parse({ settings: { files: [{ path: 'etc/motd', content: '' }] } })).toThrow(/absolute/);
    expect(() => ProfileInputSchema.parse({ selector: 'role' })).toThrow(/selector/);
    expect(() => ProfileInputSchema.parse({ settings: { colour: 'red' } })).toThrow();
  });
});

describe('templates', () => {
  const fields = templateFields(node);

  it('renders the node fields', () => {
    expect(renderTemplate('{{ name }} {{ address }} {{ labels.rack }} {{ macs | size }} {{ mac }}', fields, 'x')).toBe('c01 10.0.0.11 r1 2 52:54:00:00:00:0a');
  });

  it('fails on an unknown variable, an unknown filter and a syntax error, with the line', () => {
    const failure = (template: string) => {
      try {
        renderTemplate(template, fields, 'profile p, file /etc/x');
      } catch (err) {
        return err as TemplateError;
      }
      throw new Error('rendered');
    };
    expect(failure('a\n{{ labels.row }}')).toMatchObject({ line: 2, message: 'profile p, file /etc/x, line 2: undefined variable: labels.row' });
    expect(failure('{{ name | shout }}')).toMatchObject({ line: 1, reason: 'undefined filter: shout' });
    expect(failure('a\nb\n{% if name %}')).toMatchObject({ line: 3 });
    // Nothing is read from the appliance's disk.
    expect(failure('{% include "/etc/passwd" %}').reason).toMatch(/Failed to lookup/);
  });

  it('accepts only cloud-config: the header, valid YAML, a mapping', () => {
    expect(checkCloudConfig('#cloud-config\npackages: [htop]\n', 'u')).toEqual({ packages: ['htop'] });
    expect(() => checkCloudConfig('packages: [htop]\n', 'u')).toThrow(/#cloud-config/);
    expect(() => checkCloudConfig('#cloud-config\npackages: [htop\n', 'u')).toThrow(/not valid YAML/);
    expect(() => checkCloudConfig('#cloud-config\n- a\n', 'u')).toThrow(/mapping/);
  });
});

describe('NoCloud seed', () => {
  const compute = profile('compute', {
    selector: 'role=compute',
    settings: {
      hostname: '{{ name }}.lab',
      sshAuthorizedKeys: ['ssh-ed25519 AAAA ops'],
      userData: '#cloud-config\npackages: [htop]\nwrite_files:\n  - path: /etc/own\n    content: own\n',
      files: [{ path: '/etc/shoal-test.conf', content: 'rack={{ labels.rack }}\n', mode: '600' }],
      network: { address: 'reservation', prefix: 16, gateway: '10.0.0.1', dns: ['10.0.0.2'], mtu: 9000, interfaces: [{ mac: '52:54:00:00:01:0A', address: '192.168.1.11/24' }] },
    },
  });

  it('renders user-data, meta-data and network-config for the node, with an instance-id that follows the digest', () => {
    const seed = renderSeed(node, effectiveConfig(node, [compute], undefined));
    expect(seed.userData.startsWith('#cloud-config\n')).toBe(true);
    expect(parse(seed.userData)).toEqual({
      packages: ['htop'],
      hostname: 'c01',
      fqdn: 'c01.lab',
      prefer_fqdn_over_hostname: true,
      ssh_authorized_keys: ['ssh-ed25519 AAAA ops'],
      write_files: [
        { path: '/etc/own', content: 'own' },
        { path: '/etc/shoal-test.conf', content: 'rack=r1\n', permissions: '0600', owner: 'root:root' },
      ],
    });
    expect(parse(seed.metaData)).toEqual({ 'instance-id': `shoal-${node.id}-${seed.digest}`, 'local-hostname': 'c01.lab', 'public-keys': ['ssh-ed25519 AAAA ops'] });
    // One key a line, however long: the busybox agent reads the list line by line.
    const long = `ssh-ed25519 ${'A'.repeat(300)} a very long comment`;
    const withLongKey = renderSeed(node, effectiveConfig(node, [{ ...compute, settings: { ...compute.settings, sshAuthorizedKeys: [long] } }], undefined));
    expect(withLongKey.metaData).toContain(`\n  - ${long}\n`);
    expect(parse(seed.networkConfig)).toEqual({
      version: 2,
      ethernets: {
        boot0: { match: { macaddress: '52:54:00:00:00:0a' }, addresses: ['10.0.0.11/16'], routes: [{ to: '0.0.0.0/0', via: '10.0.0.1' }], nameservers: { addresses: ['10.0.0.2'] }, mtu: 9000 },
        nic1: { match: { macaddress: '52:54:00:00:01:0a' }, addresses: ['192.168.1.11/24'] },
      },
    });
    const changed = renderSeed(node, effectiveConfig(node, [compute], { files: [{ path: '/etc/shoal-test.conf', content: 'v2', mode: '0600', owner: 'root:root' }] }));
    expect(changed.digest).not.toBe(seed.digest);
    expect(changed.metaData).not.toBe(seed.metaData);
    expect(renderSeed(node, effectiveConfig(node, [compute], undefined)).digest).toBe(seed.digest);
  });

  it('asks DHCP without an address, and refuses a reservation the node does not have', () => {
    const seed = renderSeed(node, effectiveConfig(node, [], undefined));
    expect(parse(seed.networkConfig).ethernets.boot0).toEqual({ match: { macaddress: '52:54:00:00:00:0a' }, dhcp4: true });
    const { ipv4: _ipv4, ...unreserved } = node;
    expect(() => renderSeed(unreserved, effectiveConfig(unreserved, [compute], undefined))).toThrow(/profile compute, network.address: node c01 has no reserved address/);
  });

  /** What cloud-init's _b64dgz makes of a network-config= argument: base64, then gunzip'd if it is gzip. */
  const decoded = (arg: string) => {
    expect(arg.startsWith('network-config=')).toBe(true);
    const blob = Buffer.from(arg.slice('network-config='.length), 'base64');
    return (blob[0] === 0x1f && blob[1] === 0x8b ? gunzipSync(blob) : blob).toString();
  };

  it('puts the same network-config on the kernel command line when the node\'s configuration has network settings, and none without', () => {
    const seed = renderSeed(node, effectiveConfig(node, [compute], undefined));
    expect(seed.networkConfigArg).toMatch(/^network-config=[A-Za-z0-9+/]+=*$/);
    expect(decoded(seed.networkConfigArg!)).toBe(seed.networkConfig);
    expect(renderSeed(node, effectiveConfig(node, [], undefined)).networkConfigArg).toBeUndefined();
    // gzip'd only where that is shorter: a small document goes as it is, a long one compressed.
    const small = 'version: 2\n';
    expect(networkConfigArgument(small)).toBe(`network-config=${Buffer.from(small).toString('base64')}`);
    const long = `version: 2\nethernets:\n${Array.from({ length: 20 }, (_, i) => `  nic${i}:\n    dhcp4: true\n`).join('')}`;
    expect(networkConfigArgument(long).length).toBeLessThan(`network-config=${Buffer.from(long).toString('base64')}`.length);
    expect(decoded(networkConfigArgument(long))).toBe(long);
  });

  it('writes network-config as cloud-init 22.4 reads it: MACs quoted for YAML 1.1, the default route as 0.0.0.0/0', () => {
    // 52:54:00:12:34:56 unquoted is a base-60 integer to PyYAML (YAML 1.1).
    const decimal = { ...node, macs: ['52:54:00:12:34:56'] };
    const seed = renderSeed(decimal, effectiveConfig(decimal, [compute], undefined));
    const boot = parse(seed.networkConfig, { version: '1.1' }).ethernets.boot0;
    expect(boot.match.macaddress).toBe('52:54:00:12:34:56');
    expect(boot.routes).toEqual([{ to: '0.0.0.0/0', via: '10.0.0.1' }]);
  });

  it('refuses, when saved, kernel arguments and a network-config that together would not fit the kernel command line', () => {
    const args = Array.from({ length: 40 }, (_, i) => `shoal.test${String(i).padStart(2, '0')}=xxxxxxxxxx`);
    expect(args.join(' ').length).toBeLessThan(CONFIG_CMDLINE_BUDGET);
    const many = profile('many', { selector: 'role=compute', settings: { kernelArgs: args } });
    expect(renderSeed(node, effectiveConfig(node, [many], undefined)).networkConfigArg).toBeUndefined();
    expect(() => renderSeed(node, effectiveConfig(node, [many, compute], undefined))).toThrow(
      /^profile compute, network and kernelArgs: node c01's kernel arguments and its network-config \(\d+ bytes as network-config=BASE64\) take \d+ bytes of the kernel command line, over the 1024/,
    );
  });

  it('refuses a hostname that renders to something else than a host name', () => {
    const spaced = profile('spaced', { selector: 'role=compute', settings: { hostname: '{{ name }} {{ labels.rack }}' } });
    expect(() => renderSeed(node, effectiveConfig(node, [spaced], undefined))).toThrow('profile spaced, hostname: renders to "c01 r1" for node c01, which is not a hostname');
  });

  it('stops a template that would take the appliance\'s time or memory', () => {
    const bomb = profile('bomb', { selector: 'role=compute', settings: { files: [{ path: '/etc/bomb', content: '{% for i in (1..100000000) %}xxxxxxxxxx{% endfor %}' }] } });
    const started = Date.now();
    expect(() => renderSeed(node, effectiveConfig(node, [bomb], undefined))).toThrow(/profile bomb, file \/etc\/bomb/);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('names the profile and the file whose template fails', () => {
    const broken = profile('broken', { selector: 'role=compute', settings: { files: [{ path: '/etc/a', content: 'x\n{{ labels.row }}' }] } });
    expect(() => renderSeed(node, effectiveConfig(node, [broken], undefined))).toThrow('profile broken, file /etc/a, line 2: undefined variable: labels.row');
  });
});
