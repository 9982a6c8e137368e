// The pxe module's boot facet inside a real appliance: arming mints a token and a plan, the iPXE
// script carries what the agent needs, and each HTTP request seen moves the boot facet forward.
// (DHCP and TFTP are tested with real clients in their own folders; QEMU boots are vm-test's.)
import { createSocket } from 'node:dgram';
import { get as httpGet } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../../src/appliance.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import type { ImageInfo } from '../../src/contracts/services.js';
import type { NodeRecord } from '../../src/domain/node.js';
import { startTestAppliance } from '../../test/support/appliance.js';
import { COMPUTE_IMAGE, pxeServiceStandIns } from '../../test/support/pxe-stand-ins.js';
import { MessageType, chaddrFromMac, serializeDhcpPacket } from './dhcp/codec.js';
import type { DhcpTransport, InboundDatagram } from './dhcp/index.js';
import { createModule, PxeModule, PxeOptionsSchema } from './index.js';
import { networkBootScript } from './script.js';

const IMAGE = COMPUTE_IMAGE;

/** An image with a root filesystem, offered only by the test that needs it. */
const ROOT_IMAGE: ImageInfo = {
  ...IMAGE,
  ref: 'debian@12',
  name: 'debian',
  version: '12',
  kernel: { sha256: 'k', size: 1, path: '/images/debian/12/vmlinuz' },
  initrd: { sha256: 'i', size: 1, path: '/images/debian/12/initrd.img' },
  rootfs: { sha256: 'r', size: 1, path: '/images/debian/12/root.squashfs' },
};
/** A disk-only image (an imported disk file): it has nothing to network-boot. */
const DISK_ONLY: ImageInfo = {
  ref: 'site@1',
  name: 'site',
  version: '1',
  arch: 'x86_64',
  digest: 'sha256:' + '9'.repeat(64),
  cmdline: '',
  disk: { sha256: 'z', size: 1, path: '/images/site/1/disk.raw.zst', format: 'zstd', rawSize: 1048576, rawSha256: 'f'.repeat(64), bootEnv: { offset: 4096, size: 1024 } },
};
const images = new Map<string, ImageInfo>([[IMAGE.ref, IMAGE], [DISK_ONLY.ref, DISK_ONLY]]);

const issued: { nodeId: string; image: string }[] = [];
const services = pxeServiceStandIns(images, issued);

describe('pxe module', () => {
  let appliance: Appliance;
  let dataDir: string;
  let node: NodeRecord;
  const MAC = '52:54:00:ab:cd:01';

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'shoal-pxe-'));
    const config = loadConfig(undefined, { dataDir, api: { listen: '127.0.0.1', port: 0 } });
    const pxe = createModule({ advertiseUrl: 'http://10.213.0.1:8080' });
    appliance = await Appliance.start(config, { modules: [services, pxe], log: createLogger('silent') });
    appliance.engine.executor.stop(); // the test drives the boot steps itself
    [node] = (await appliance.state.addNodes([{ spec: { name: 'p01', macs: [MAC], bmc: { scheme: 'ipmi', host: '127.0.0.1' }, arch: 'x86_64', firmware: 'bios', labels: {} } }], 'test')) as [NodeRecord];
  });
  afterAll(async () => {
    await appliance?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const perform = (step: string, desired: Record<string, string>) =>
    appliance.engine.driverFor(node, 'boot')!.steps[step]!({ step, node, desired, bmcPassword: undefined, signal: new AbortController().signal });
  const get = (path: string) => fetch(`${appliance.url}${path}`, { redirect: 'manual' });
  const boot = () => appliance.state.observed(node.id).boot;

  it('refuses to arm without an image the store knows', async () => {
    await expect(perform('boot.arm', {})).rejects.toThrow(/no desired image/);
    await expect(perform('boot.arm', { image: 'compute@9' })).rejects.toThrow(/compute@9 is not in the image store/);
    await expect(perform('boot.arm', { image: 'site@1' })).rejects.toThrow('site@1 is a disk image only (no kernel to network-boot): install it with boot=disk image=site@1');
    expect(boot()?.value).not.toBe('armed');
  });

  it('arms a network boot: a token minted for this boot, boot=armed for the image', async () => {
    await perform('boot.arm', { image: 'compute@1' });
    expect(issued).toEqual([{ nodeId: node.id, image: 'compute@1' }]);
    expect(boot()).toMatchObject({ value: 'armed', detail: 'compute@1' });
  });

  it('serves the node its iPXE script with what the agent reads, and sees the loader stage', async () => {
    const res = await get(`/boot/${MAC}.ipxe`);
    const script = await res.text();
    expect(script.split('\n')[0]).toBe('#!ipxe');
    expect(script).toContain(`kernel http://10.213.0.1:8080/boot/${MAC}/vmlinuz initrd=initrd.img console=ttyS0 quiet shoal.url=http://10.213.0.1:8080 shoal.node=${node.id} shoal.token=token-1 shoal.image=compute@1`);
    expect(script).toContain(`initrd --name initrd.img http://10.213.0.1:8080/boot/${MAC}/initrd.img`);
    // No root filesystem in this image: the initramfs runs the agent itself.
    expect(script).not.toContain('shoal.rootfs');
    expect(boot()?.value).toBe('loader');
  });

  it('sends the kernel fetch to the image store and sees the kernel stage', async () => {
    const res = await get(`/boot/${MAC}/vmlinuz`);
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/images/compute/1/vmlinuz');
    expect(boot()?.value).toBe('kernel');
    expect((await get(`/boot/${MAC}/initrd.img`)).headers.get('location')).toBe('/images/compute/1/initrd.img');
    // The MAC as any route takes it: upper case and '-' separators too.
    expect((await get(`/boot/${MAC.toUpperCase().replaceAll(':', '-')}/initrd.img`)).headers.get('location')).toBe('/images/compute/1/initrd.img');
    expect((await get(`/boot/${MAC}/passwd`)).status).toBe(404);
  });

  it('sends the root filesystem fetch to the image store, and shows a retry with the reason the initramfs gave', async () => {
    // This image has no root filesystem: nothing to send.
    expect((await get(`/boot/${MAC}/rootfs`)).status).toBe(404);
    images.set(ROOT_IMAGE.ref, ROOT_IMAGE);
    try {
      await perform('boot.arm', { image: ROOT_IMAGE.ref });
      expect((await get(`/boot/${MAC}/vmlinuz`)).headers.get('location')).toBe('/images/debian/12/vmlinuz');
      const first = await get(`/boot/${MAC}/rootfs`);
      expect(first.status).toBe(302);
      expect(first.headers.get('location')).toBe('/images/debian/12/root.squashfs');
      expect(boot()).toMatchObject({ value: 'kernel' });
      expect(boot()?.detail ?? '').not.toMatch(/root filesystem/);
      await get(`/boot/${MAC}/rootfs?error=sha256-mismatch`);
      expect(boot()).toMatchObject({ value: 'kernel', detail: 'root filesystem not there yet: attempt 2, the last one failed (sha256-mismatch); the initramfs keeps retrying' });
      // The node's word is kept only as a short code.
      await get(`/boot/${MAC}/rootfs?error=${encodeURIComponent('<script>alert(1)</script>')}`);
      expect(boot()?.detail).toBe('root filesystem not there yet: attempt 3, the last one failed (no reason given); the initramfs keeps retrying');
      // A new boot's kernel fetch starts the count again.
      await perform('boot.arm', { image: ROOT_IMAGE.ref });
      await get(`/boot/${MAC}/vmlinuz`);
      await get(`/boot/${MAC}/rootfs`);
      expect(boot()?.detail ?? '').not.toMatch(/root filesystem/);
    } finally {
      images.delete(ROOT_IMAGE.ref);
      await perform('boot.arm', { image: IMAGE.ref });
    }
  });

  it('sends a node set to boot from disk, and an unknown MAC, to the next boot device', async () => {
    await perform('boot.disk', {});
    expect(boot()?.value).toBe('disk');
    const disk = await (await get(`/boot/${MAC}.ipxe`)).text();
    expect(disk).toContain('exit');
    expect(disk).not.toContain('kernel');
    // a disk boot is never turned into a network boot stage by a stray request
    await get(`/boot/${MAC}/vmlinuz`);
    expect(boot()?.value).toBe('disk');
    const unknown = await (await get('/boot/52:54:00:ff:ff:ff.ipxe')).text();
    expect(unknown).toContain('52:54:00:ff:ff:ff is not enrolled');
    expect((await get('/boot/../../etc/passwd.ipxe')).status).toBe(404);
  });

  it('records a machine the inventory does not know as discovered, until enrolled or dismissed', async () => {
    const api = (method: string, path: string, body?: unknown) =>
      fetch(`${appliance.url}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${appliance.token}`, 'content-type': 'application/json' },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    // (the unknown MAC of the test above is there too)
    const listed = async () =>
      ((await (await api('GET', '/discovered')).json()) as { discovered: Array<{ mac: string; requests: number }> }).discovered.filter((m) =>
        m.mac.startsWith('52:54:00:ee'),
      );
    await get('/boot/52:54:00:ee:00:01.ipxe');
    await get('/boot/52-54-00-EE-00-02.ipxe');
    await get('/boot/52:54:00:ee:00:01.ipxe');
    expect(await listed()).toMatchObject([
      { mac: '52:54:00:ee:00:01', requests: 2 },
      { mac: '52:54:00:ee:00:02', requests: 1 },
    ]);
    expect(await listed()).not.toContainEqual(expect.objectContaining({ mac: MAC }));

    const enrolled = await api('POST', '/nodes', { name: 'p02', macs: ['52:54:00:ee:00:01'], bmc: 'ipmi://127.0.0.1:6231' });
    expect(enrolled.status).toBe(201);
    expect((await listed()).map((m) => m.mac)).toEqual(['52:54:00:ee:00:02']);

    expect((await api('DELETE', '/discovered/52:54:00:ee:00:02')).status).toBe(204);
    expect(await listed()).toEqual([]);
    expect((await api('DELETE', '/discovered/52:54:00:ee:00:02')).status).toBe(404);
    expect((await api('DELETE', '/discovered/not-a-mac')).status).toBe(400);
  });

  it('keeps boot plans across a restart of the module', async () => {
    await perform('boot.arm', { image: 'compute@1' });
    await appliance.stop();
    const config = loadConfig(undefined, { dataDir, api: { listen: '127.0.0.1', port: 0 } });
    appliance = await Appliance.start(config, { modules: [services, createModule({ advertiseUrl: 'http://10.213.0.1:8080' })], log: createLogger('silent') });
    appliance.engine.executor.stop();
    const script = await (await get(`/boot/${MAC}.ipxe`)).text();
    expect(script).toContain(`shoal.token=token-${issued.length}`);
  });
});

describe('networkBootScript', () => {
  const script = (image: ImageInfo) =>
    networkBootScript({ advertiseUrl: 'http://10.213.0.1:8080/', mac: '52:54:00:ab:cd:01', nodeId: 'n1', plan: { kind: 'network', image: image.ref, token: 't0k' }, image });
  const kernelLine = (text: string) => text.split('\n').find((line) => line.startsWith('kernel '))!;

  it('adds the root filesystem and its sha256 to the kernel command line when the image has one', () => {
    const sha256 = 'ab'.repeat(32);
    const withRootfs: ImageInfo = { ...IMAGE, ref: 'compute@3', version: '3', rootfs: { sha256, size: 1289461, path: '/images/compute/3/rootfs.tar.gz' } };
    expect(kernelLine(script(withRootfs))).toBe(
      'kernel http://10.213.0.1:8080/boot/52:54:00:ab:cd:01/vmlinuz initrd=initrd.img console=ttyS0 quiet shoal.url=http://10.213.0.1:8080 shoal.node=n1 shoal.token=t0k ' +
        `shoal.image=compute@3 shoal.rootfs=http://10.213.0.1:8080/boot/52:54:00:ab:cd:01/rootfs shoal.rootfs_sha256=${sha256}`,
    );
  });

  it('leaves them out when it has none', () => {
    expect(kernelLine(script(IMAGE))).toMatch(/ shoal\.image=compute@1$/);
  });

  it('puts the network-config after the seed URL and before the profile\'s kernel arguments, so one of those that sets it wins', () => {
    const plan = { kind: 'network' as const, image: IMAGE.ref, token: 't0k', seed: 's33d', networkConfig: 'network-config=dmVyc2lvbjogMgo=', kernelArgs: ['net.ifnames=0'] };
    expect(kernelLine(networkBootScript({ advertiseUrl: 'http://10.213.0.1:8080', mac: '52:54:00:ab:cd:01', nodeId: 'n1', plan, image: IMAGE }))).toMatch(
      / shoal\.image=compute@1 ds=nocloud-net;s=http:\/\/10\.213\.0\.1:8080\/nocloud\/s33d\/ network-config=dmVyc2lvbjogMgo= net\.ifnames=0$/,
    );
  });
});

/** The DHCP server's sockets replaced by a pair of hands: no port 67, no broadcast. */
class HandTransport implements DhcpTransport {
  sent = 0;
  private onDatagram: ((d: InboundDatagram) => void) | undefined;
  async open(onDatagram: (d: InboundDatagram) => void): Promise<void> {
    this.onDatagram = onDatagram;
  }
  async send(): Promise<void> {
    this.sent++;
  }
  async close(): Promise<void> {
    this.onDatagram = undefined;
  }
  discover(mac: string): void {
    const packet = serializeDhcpPacket({
      op: 1, htype: 1, hlen: 6, hops: 0, xid: 7, secs: 0, flags: 0,
      ciaddr: '0.0.0.0', yiaddr: '0.0.0.0', siaddr: '0.0.0.0', giaddr: '0.0.0.0',
      chaddr: chaddrFromMac(mac), sname: '', file: '',
      options: { messageType: MessageType.DISCOVER, clientArch: [7], vendorClassId: 'PXEClient:Arch:00007:UNDI:003000' },
    });
    this.onDatagram!({ data: packet, from: { address: '0.0.0.0', port: 68 }, arrival: 'broadcast' });
  }
}

async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

describe('pxe module metrics', () => {
  it('serves its DHCP, TFTP and boot-file counters at /metrics', async () => {
    const ipxeDir = mkdtempSync(join(tmpdir(), 'shoal-pxe-ipxe-'));
    const transport = new HandTransport();
    const tftpPort = await freeUdpPort();
    const pxe = new PxeModule(
      PxeOptionsSchema.parse({
        advertiseUrl: 'http://127.0.0.1:8080',
        dhcp: { interface: { name: 'lo', address: '127.0.0.1' }, subnets: [{ cidr: '127.0.0.0/24', pool: { start: '127.0.0.100', end: '127.0.0.110' } }] },
        tftp: { address: '127.0.0.1', port: tftpPort, transferThreads: 0 },
        ipxeDir,
      }),
      { dhcpTransport: transport },
    );
    const t = await startTestAppliance({ modules: [pxe] });
    try {
      transport.discover('52:54:00:77:00:01');
      await new Promise((resolve) => setImmediate(resolve));
      expect(transport.sent).toBe(1);

      const client = createSocket('udp4');
      await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', resolve));
      const refusal = new Promise<Buffer>((resolve) => client.once('message', resolve));
      client.send(Buffer.from('\0\x01absent.efi\0octet\0', 'latin1'), tftpPort, '127.0.0.1');
      expect((await refusal).readUInt16BE(2)).toBe(1); // ERROR: file not found
      client.close();

      await fetch(`${t.appliance.url}/boot/52:54:00:77:00:02.ipxe`);
      const metrics = await t.api('GET', '/metrics');
      expect(metrics.status).toBe(200);
      const lines = (metrics.body as string).split('\n');
      expect(lines).toEqual(
        expect.arrayContaining([
          'shoal_dhcp_received_total 1',
          'shoal_dhcp_offers_total 1',
          'shoal_dhcp_foreign_server_total 0',
          'shoal_tftp_refused_total{reason="not-found"} 1',
          'shoal_pxe_boot_files_total{route="script",outcome="local"} 1',
        ]),
      );
    } finally {
      await t.close();
      rmSync(ipxeDir, { recursive: true, force: true });
    }
  });
});

/** GET from a chosen loopback source address (Linux routes all of 127/8 to lo), as a node behind that address would. */
function getFrom(url: string, localAddress: string): Promise<{ status: number; retryAfter: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { localAddress, agent: false }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body }));
    });
    req.on('error', reject);
  });
}

describe('pxe module script rate limits', () => {
  it('answers 429 with Retry-After past the per-MAC and the per-source buckets, each counted apart, and serves again once they refill', async () => {
    const pxe = createModule({ advertiseUrl: 'http://127.0.0.1:8080', scriptRateLimit: { perMac: { burst: 2, perMinute: 60 }, perSource: { burst: 3, perMinute: 60 } } });
    const t = await startTestAppliance({ modules: [pxe] });
    const script = (mac: string, source: string) => getFrom(`${t.appliance.url}/boot/${mac}.ipxe`, source);
    try {
      // One MAC: its burst, then refused, from whichever source.
      expect((await script('52:54:00:88:00:01', '127.0.0.2')).status).toBe(200);
      expect((await script('52:54:00:88:00:01', '127.0.0.3')).status).toBe(200);
      const perMac = await script('52:54:00:88:00:01', '127.0.0.4');
      expect(perMac).toMatchObject({ status: 429, retryAfter: '1' });
      expect(perMac.body).toMatch(/too many script requests for 52:54:00:88:00:01/);
      // The same MAC written another way is the same MAC.
      expect((await script('52-54-00-88-00-01', '127.0.0.4')).status).toBe(429);

      // One source: its burst across MACs (127.0.0.2 spent one above), then refused for any MAC.
      expect((await script('52:54:00:88:00:02', '127.0.0.2')).status).toBe(200);
      expect((await script('52:54:00:88:00:03', '127.0.0.2')).status).toBe(200);
      const perSource = await script('52:54:00:88:00:04', '127.0.0.2');
      expect(perSource).toMatchObject({ status: 429, retryAfter: '1' });
      expect(perSource.body).toMatch(/too many script requests from 127\.0\.0\.2/);
      // Another source and a fresh MAC are untouched by both.
      expect((await script('52:54:00:88:00:04', '127.0.0.5')).status).toBe(200);

      // A refused request took nothing: after Retry-After, each bucket has one again.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      expect((await script('52:54:00:88:00:01', '127.0.0.6')).status).toBe(200);
      expect((await script('52:54:00:88:00:05', '127.0.0.2')).status).toBe(200);

      const metrics = ((await t.api('GET', '/metrics')).body as string).split('\n');
      expect(metrics).toContain('shoal_pxe_boot_files_total{route="script",outcome="rate-limited"} 3');
    } finally {
      await t.close();
    }
  });

  it('has defaults that let a rack behind one address boot at once, and refuses limits that could never serve', () => {
    const defaults = PxeOptionsSchema.parse({ advertiseUrl: 'http://10.0.0.1:8080' }).scriptRateLimit;
    expect(defaults.perSource.burst).toBeGreaterThanOrEqual(500);
    expect(defaults.perMac.burst).toBeGreaterThanOrEqual(5);
    expect(() => createModule({ advertiseUrl: 'http://10.0.0.1:8080', scriptRateLimit: { perMac: { burst: 0, perMinute: 6 } } })).toThrow();
    expect(() => createModule({ advertiseUrl: 'http://10.0.0.1:8080', scriptRateLimit: { perSource: { burst: 10, perMinute: 0 } } })).toThrow();
    expect(() => createModule({ advertiseUrl: 'http://10.0.0.1:8080', scriptRateLimit: { perHost: { burst: 10, perMinute: 10 } } })).toThrow();
  });
});
