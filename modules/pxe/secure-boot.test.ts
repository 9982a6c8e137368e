// The Secure Boot path inside a real appliance: a node with secureBoot: true gets shim from DHCP,
// and TFTP (curl as the client) serves shim, GRUB, GRUB's entry config, the node's own GRUB config
// with the iPXE path's kernel command line, and its kernel and initrd, read from the image store's
// HTTP route (a loopback server here). Each stage shows on the boot facet. (OVMF enforcing it is
// vm-test/scenarios/secure-boot.test.ts.)
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageInfo } from '../../src/contracts/services.js';
import type { ShoalModule } from '../../src/engine/module.js';
import type { NodeRecord } from '../../src/domain/node.js';
import { startTestAppliance, type TestAppliance } from '../../test/support/appliance.js';
import { MessageType, chaddrFromMac, parseDhcpPacket, serializeDhcpPacket, type DhcpPacket } from './dhcp/codec.js';
import type { DhcpTransport, InboundDatagram } from './dhcp/index.js';
import { PxeModule, PxeOptionsSchema } from './index.js';
import { GRUB_ENTRY_CONFIG, networkBootGrubConfig } from './script.js';

const run = promisify(execFile);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const KERNEL = Buffer.alloc(200_000, 7);
const INITRD = Buffer.alloc(50_000, 9);

const image = (name: string, kernelSigned: boolean | undefined, cmdline = 'console=ttyS0'): ImageInfo => ({
  ref: `${name}@1`,
  name,
  version: '1',
  arch: 'x86_64',
  digest: 'sha256:abc',
  kernel: { sha256: sha256(KERNEL), size: KERNEL.length, path: `/images/${name}/1/vmlinuz` },
  initrd: { sha256: sha256(INITRD), size: INITRD.length, path: `/images/${name}/1/initrd.img` },
  cmdline,
  ...(kernelSigned !== undefined ? { kernelSigned } : {}),
});
const images = new Map([image('signed', true), image('unsigned', false), image('old', undefined), image('quoted', true, 'console=ttyS0 foo="a b"')].map((i) => [i.ref, i]));

const services: ShoalModule = {
  name: 'stand-in',
  start(host) {
    host.services.provide('images', { get: (ref) => images.get(ref), byDigest: () => undefined, list: () => [...images.values()] });
    host.services.provide('bootTokens', { issue: () => 'b00t' });
  },
};

/** The DHCP server's sockets replaced by hands that keep every reply. */
class HandTransport implements DhcpTransport {
  readonly replies: DhcpPacket[] = [];
  private onDatagram: ((d: InboundDatagram) => void) | undefined;
  async open(onDatagram: (d: InboundDatagram) => void): Promise<void> {
    this.onDatagram = onDatagram;
  }
  async send(data: Buffer): Promise<void> {
    const parsed = parseDhcpPacket(data);
    if (parsed.ok) this.replies.push(parsed.packet);
  }
  async close(): Promise<void> {
    this.onDatagram = undefined;
  }
  /** OVMF's DISCOVER; resolves with the offer. */
  async discover(mac: string): Promise<DhcpPacket> {
    const before = this.replies.length;
    const packet = serializeDhcpPacket({
      op: 1, htype: 1, hlen: 6, hops: 0, xid: 7, secs: 0, flags: 0,
      ciaddr: '0.0.0.0', yiaddr: '0.0.0.0', siaddr: '0.0.0.0', giaddr: '0.0.0.0',
      chaddr: chaddrFromMac(mac), sname: '', file: '',
      options: { messageType: MessageType.DISCOVER, clientArch: [7], vendorClassId: 'PXEClient:Arch:00007:UNDI:003000' },
    });
    this.onDatagram!({ data: packet, from: { address: '0.0.0.0', port: 68 }, arrival: 'broadcast' });
    for (let i = 0; i < 100 && this.replies.length === before; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    return this.replies[before]!;
  }
}

async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

describe('pxe module: the Secure Boot path', () => {
  let t: TestAppliance;
  let store: Server;
  let storeUrl: string;
  let dir: string;
  let tftpPort: number;
  const transport = new HandTransport();
  const SB_MAC = '52:54:00:5b:00:01';
  const PLAIN_MAC = '52:54:00:5b:00:02';
  let sbNode: NodeRecord;
  let plainNode: NodeRecord;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-pxe-sb-'));
    writeFileSync(join(dir, 'shim.signed'), 'the shim');
    writeFileSync(join(dir, 'grubnet.signed'), 'the grub');
    writeFileSync(join(dir, 'snponly.efi'), 'ipxe');
    // The image store's HTTP route, as the advertise URL reaches it.
    store = createServer((req, res) => {
      const body = req.url?.endsWith('/vmlinuz') ? KERNEL : req.url?.endsWith('/initrd.img') ? INITRD : undefined;
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((resolve) => store.listen(0, '127.0.0.1', resolve));
    storeUrl = `http://127.0.0.1:${(store.address() as { port: number }).port}`;
    tftpPort = await freeUdpPort();
    const pxe = new PxeModule(
      PxeOptionsSchema.parse({
        advertiseUrl: storeUrl,
        dhcp: { interface: { name: 'lo', address: '127.0.0.1' }, subnets: [{ cidr: '127.0.0.0/24', pool: { start: '127.0.0.100', end: '127.0.0.110' } }] },
        tftp: { address: '127.0.0.1', port: tftpPort, transferThreads: 0 },
        ipxeDir: dir,
        secureBoot: { shim: join(dir, 'shim.signed'), grub: join(dir, 'grubnet.signed') },
      }),
      { dhcpTransport: transport },
    );
    t = await startTestAppliance({ modules: [services, pxe] });
    t.appliance.engine.executor.stop(); // the test arms boots itself
    // sb01's reservation is where curl fetches from, so its TFTP requests are sb01's.
    for (const [name, mac, ipv4] of [['sb01', SB_MAC, '127.0.0.1'], ['plain01', PLAIN_MAC, '127.0.0.2']]) {
      expect((await t.api('POST', '/api/v1/nodes', { name, macs: [mac], ipv4, bmc: 'ipmi://127.0.0.1', labels: {} })).status).toBe(201);
    }
    sbNode = t.appliance.state.resolve('sb01');
    plainNode = t.appliance.state.resolve('plain01');
    expect((await t.api('PUT', '/api/v1/nodes/sb01/config', { secureBoot: true, kernelArgs: ['net.ifnames=0'] })).status).toBe(200);
  });
  afterAll(async () => {
    await t?.close();
    store?.closeAllConnections();
    await new Promise((resolve) => store?.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  const arm = (node: NodeRecord, image: string) =>
    t.appliance.engine.driverFor(node, 'boot')!.steps['boot.arm']!({ step: 'boot.arm', node, desired: { image }, bmcPassword: undefined, signal: new AbortController().signal });
  const tftp = async (path: string) => (await run('curl', ['-sS', '--max-time', '20', '--tftp-blksize', '1024', `tftp://127.0.0.1:${tftpPort}/${path}`], { encoding: 'buffer', maxBuffer: 1 << 24 })).stdout;
  const boot = (node: NodeRecord) => t.appliance.state.observed(node.id).boot;

  it('validates the setting: a boolean', async () => {
    const res = await t.api('PUT', '/api/v1/nodes/plain01/config', { secureBoot: 'yes' });
    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).toMatch(/secureBoot/);
  });

  it('refuses Secure Boot for an image whose kernel is not signed, or not known to be, saying why', async () => {
    await expect(arm(sbNode, 'unsigned@1')).rejects.toThrow(/sb01 boots with Secure Boot, but the kernel of unsigned@1 is not signed, and shim would refuse it/);
    await expect(arm(sbNode, 'old@1')).rejects.toThrow(/the kernel of old@1 is of unknown signature/);
    // The same images boot through iPXE on a node without it.
    await arm(plainNode, 'unsigned@1');
  });

  it('refuses a command line GRUB would rewrite', async () => {
    await expect(arm(sbNode, 'quoted@1')).rejects.toThrow(/cannot go through GRUB: GRUB would rewrite its "\\"" \(it escapes quotes and backslashes\)/);
  });

  it('offers shim to the Secure Boot node, snponly.efi to the other', async () => {
    await arm(sbNode, 'signed@1');
    expect(boot(sbNode)?.value).toBe('armed');
    expect((await transport.discover(SB_MAC)).file).toBe('shimx64.efi');
    expect((await transport.discover(PLAIN_MAC)).file).toBe('snponly.efi');
    expect(boot(sbNode)?.value).toBe('dhcp');
  });

  it('serves shim and GRUB beside it over TFTP: fetching shim is the loader stage', async () => {
    expect((await tftp('shimx64.efi')).toString()).toBe('the shim');
    expect(boot(sbNode)?.value).toBe('loader');
    expect((await tftp('grubx64.efi')).toString()).toBe('the grub');
    expect((await tftp('snponly.efi')).toString()).toBe('ipxe');
    expect((await tftp('grub/grub.cfg')).toString()).toBe(GRUB_ENTRY_CONFIG);
  });

  it("serves the node's GRUB config: the iPXE script's kernel command line, word for word", async () => {
    const config = (await tftp(`grub/node/${SB_MAC}.cfg`)).toString();
    const script = await (await fetch(`${t.appliance.url}/boot/${SB_MAC}.ipxe`)).text();
    const ipxeCmdline = /^kernel \S+ (.*)$/m.exec(script)![1]!;
    const linux = /^linux (\S+) (.*)$/m.exec(config)!;
    expect(linux[1]).toBe(`/boot/${SB_MAC}/vmlinuz`);
    // GRUB drops the quotes of each word and joins them with one space.
    expect(linux[2]!.split(' ').map((w) => w.replace(/^'(.*)'$/, '$1')).join(' ')).toBe(ipxeCmdline);
    expect(ipxeCmdline).toContain('shoal.token=b00t');
    expect(ipxeCmdline).toMatch(/ ds=nocloud-net;s=http:\/\/127\.0\.0\.1:\d+\/nocloud\/[A-Za-z0-9_-]{32}\/ net\.ifnames=0$/);
    expect(config).toMatch(new RegExp(`^initrd /boot/${SB_MAC}/initrd.img$`, 'm'));
    // An unknown MAC's config sends GRUB back to the firmware.
    expect((await tftp('grub/node/52:54:00:00:00:99.cfg')).toString()).toMatch(/52:54:00:00:00:99 is not enrolled; booting from local disk'\nexit\n$/);
  });

  it('serves the kernel and initrd over TFTP from the image store: fetching the kernel is the kernel stage', async () => {
    expect(sha256(await tftp(`boot/${SB_MAC}/vmlinuz`))).toBe(sha256(KERNEL));
    expect(boot(sbNode)?.value).toBe('kernel');
    expect(sha256(await tftp(`boot/${SB_MAC}/initrd.img`))).toBe(sha256(INITRD));
    await expect(tftp('boot/52:54:00:00:00:99/vmlinuz')).rejects.toThrow(/curl: \(68\)/); // CURLE_TFTP_NOTFOUND
    const metrics = ((await t.api('GET', '/metrics')).body as string).split('\n');
    expect(metrics).toEqual(
      expect.arrayContaining([
        'shoal_pxe_boot_files_total{route="kernel",outcome="served"} 1',
        'shoal_pxe_boot_files_total{route="initrd",outcome="served"} 1',
        'shoal_pxe_boot_files_total{route="kernel",outcome="not-found"} 1',
      ]),
    );
  });

  it('sends a Secure Boot node set to boot from disk through shim and GRUB to its disk, since its firmware would refuse iPXE', async () => {
    await t.appliance.engine.driverFor(sbNode, 'boot')!.steps['boot.disk']!({ step: 'boot.disk', node: sbNode, desired: {}, bmcPassword: undefined, signal: new AbortController().signal });
    expect((await transport.discover(SB_MAC)).file).toBe('shimx64.efi');
    expect((await tftp(`grub/node/${SB_MAC}.cfg`)).toString()).toBe("set timeout=0\necho 'Shoal: sb01 is set to boot from disk; booting from local disk'\nexit\n");
    // A client's name for a file is plain text in GRUB's echo: no quote, no newline (curl sends %0a as one) gets through.
    expect((await tftp("grub/node/x'%0aexit.cfg")).toString()).toMatch(/^set timeout=0\necho 'Shoal: xexit is not enrolled; booting from local disk'\nexit\n$/);
  });

  it('renders what GRUB reads as GRUB words: a ";" in the seed URL stays inside its word', () => {
    const config = networkBootGrubConfig({
      advertiseUrl: 'http://10.0.0.1:8080',
      mac: SB_MAC,
      nodeId: 'n1',
      plan: { kind: 'network', image: 'signed@1', token: 't0k', seed: 's33d', secureBoot: true },
      image: images.get('signed@1')!,
    });
    expect(config).toContain(`linux /boot/${SB_MAC}/vmlinuz 'initrd=initrd.img' 'console=ttyS0' 'shoal.url=http://10.0.0.1:8080' 'shoal.node=n1' 'shoal.token=t0k' 'shoal.image=signed@1' 'ds=nocloud-net;s=http://10.0.0.1:8080/nocloud/s33d/'\n`);
  });
});
