// The simulated PXE clients of the boot-storm benchmark, all in one process inside the client
// namespace. Each does what a BIOS node does at power-on: DHCP DORA as a PXE ROM (broadcast,
// option 93 = 0, vendor class PXEClient), TFTP of the boot file the ACK names from the server it
// names, then, as iPXE would, its script `/boot/<mac>.ipxe`, the kernel and initrd the script
// names, and the root image named by `shoal.rootfs=` on its kernel line. Every byte received is
// compared with the file the benchmark generated. Prints one JSON line: the results of all clients
// and the CPU seconds this process spent.
//
//   node --import tsx bench/boot-storm/clients.ts SPEC.json
import dgram from 'node:dgram';
import { get as httpGet } from 'node:http';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { MessageType, chaddrFromMac, parseDhcpPacket, serializeDhcpPacket, type DhcpOptions, type DhcpPacket } from '../../modules/pxe/dhcp/codec.js';

export const ClientSpecSchema = z
  .object({
    clients: z.array(z.object({ mac: z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/), ip: z.ipv4() }).strict()).min(1),
    /** The starts are spread evenly over this many milliseconds, as a rack whose BMCs power on one after another. */
    spreadMs: z.number().int().min(0).max(10_000),
    /** The script URL with {mac} for the client's MAC (lower case, ':'). */
    scriptUrl: z.string().includes('{mac}'),
    files: z.object({ loader: z.string(), kernel: z.string(), initrd: z.string(), root: z.string() }).strict(),
  })
  .strict();
export type ClientSpec = z.infer<typeof ClientSpecSchema>;

export const STAGES = ['dhcp', 'tftp', 'script', 'kernel+initrd', 'root'] as const;
export type Stage = (typeof STAGES)[number];

export interface ClientResult {
  mac: string;
  /** Start and end, in ms since the first client's start. */
  startMs: number;
  endMs: number;
  /** Milliseconds per stage completed. */
  stages: Partial<Record<Stage, number>>;
  /** Bytes received and found equal to the generated files (loader, kernel, initrd, root). */
  verifiedBytes: number;
  /** UDP packets sent again after a timeout (DHCP and TFTP): loss or a slow server. */
  retransmits: number;
  failure?: { stage: Stage; message: string };
}

const DHCP_TRIES_MS = [1000, 2000, 4000, 8000];
const TFTP_TIMEOUT_MS = 1000;
const TFTP_TRIES = 6;
const TFTP_BLKSIZE = 1468;
const HTTP_STALL_MS = 60_000;

class StageError extends Error {}

/** One socket on 0.0.0.0:68 for every client, as each ROM has its own; replies go by xid. */
class DhcpPort {
  private readonly waiting = new Map<number, (p: DhcpPacket) => void>();
  private constructor(private readonly socket: dgram.Socket) {
    socket.on('message', (data) => {
      const parsed = parseDhcpPacket(data);
      if (!parsed.ok || parsed.packet.op !== 2) return;
      this.waiting.get(parsed.packet.xid)?.(parsed.packet);
    });
  }

  static async open(): Promise<DhcpPort> {
    const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(68, '0.0.0.0', () => resolve());
    });
    socket.setBroadcast(true);
    return new DhcpPort(socket);
  }

  /** Broadcasts `packet` until a reply of `wantType` with its xid comes, retrying as a PXE ROM does. */
  async exchange(packet: DhcpPacket, wantType: number, onRetransmit: () => void): Promise<DhcpPacket> {
    const bytes = serializeDhcpPacket(packet);
    try {
      for (const [attempt, waitMs] of DHCP_TRIES_MS.entries()) {
        if (attempt > 0) onRetransmit();
        const reply = await new Promise<DhcpPacket | undefined>((resolve, reject) => {
          const timer = setTimeout(() => resolve(undefined), waitMs);
          this.waiting.set(packet.xid, (p) => {
            if (p.options.messageType === MessageType.NAK) return clearTimeout(timer), reject(new StageError(`NAK for ${packet.options.requestedIp}`));
            if (p.options.messageType !== wantType) return;
            clearTimeout(timer);
            resolve(p);
          });
          this.socket.send(bytes, 67, '255.255.255.255');
        });
        if (reply) return reply;
      }
    } finally {
      this.waiting.delete(packet.xid);
    }
    throw new StageError(`no reply of type ${wantType} after ${DHCP_TRIES_MS.length} tries`);
  }

  close(): void {
    this.socket.close();
  }
}

function request(mac: string, xid: number, type: number, options: DhcpOptions): DhcpPacket {
  return {
    op: 1, htype: 1, hlen: 6, hops: 0, xid, secs: 0, flags: 0x8000,
    ciaddr: '0.0.0.0', yiaddr: '0.0.0.0', siaddr: '0.0.0.0', giaddr: '0.0.0.0',
    chaddr: chaddrFromMac(mac), sname: '', file: '',
    options: {
      messageType: type as DhcpOptions['messageType'],
      clientArch: [0],
      vendorClassId: 'PXEClient:Arch:00000:UNDI:002001',
      parameterRequestList: [1, 3, 28, 43, 60, 66, 67, 128, 129, 130, 131, 132, 133, 134, 135],
      ...options,
    },
  };
}

/** DORA; returns the boot file and the TFTP server the ACK names. */
async function dhcp(port: DhcpPort, mac: string, ip: string, xid: number, onRetransmit: () => void): Promise<{ file: string; tftpServer: string }> {
  const offer = await port.exchange(request(mac, xid, MessageType.DISCOVER, {}), MessageType.OFFER, onRetransmit);
  if (offer.yiaddr !== ip) throw new StageError(`offered ${offer.yiaddr}, not its reservation ${ip}`);
  const serverId = offer.options.serverId;
  if (!serverId) throw new StageError('OFFER without a server identifier');
  const ack = await port.exchange(request(mac, xid, MessageType.REQUEST, { requestedIp: offer.yiaddr, serverId }), MessageType.ACK, onRetransmit);
  if (ack.yiaddr !== ip) throw new StageError(`ACK for ${ack.yiaddr}, not ${ip}`);
  const file = ack.file || ack.options.bootfileName;
  if (!file) throw new StageError('ACK names no boot file');
  const tftpServer = ack.siaddr !== '0.0.0.0' ? ack.siaddr : (ack.options.tftpServerName ?? serverId);
  return { file, tftpServer };
}

/** A TFTP read of `file` (octet, blksize 1468, lock-step), from the client's own address. */
async function tftp(localIp: string, server: string, file: string, expected: Buffer, onRetransmit: () => void): Promise<number> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, localIp, () => resolve());
  });
  try {
    return await new Promise<number>((resolveTransfer, rejectTransfer) => {
      // Once settled, late packets and timers touch nothing: the socket closes right after.
      let settled = false;
      const reject = (e: Error) => ((settled = true), clearTimeout(timer), rejectTransfer(e));
      const rrq = Buffer.from(`\x00\x01${file}\x00octet\x00blksize\x00${TFTP_BLKSIZE}\x00tsize\x000\x00`, 'latin1');
      let last: Buffer = rrq;
      let peerPort = 69;
      let blksize = 512;
      let received = 0;
      let nextBlock = 1;
      let tries = 0;
      let timer: NodeJS.Timeout;
      const send = (packet: Buffer) => {
        last = packet;
        tries = 0;
        socket.send(packet, peerPort, server);
        arm();
      };
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          if (settled) return;
          if (++tries >= TFTP_TRIES) return reject(new StageError(`TFTP ${file}: no answer after ${TFTP_TRIES} tries at block ${nextBlock}`));
          onRetransmit();
          socket.send(last, peerPort, server);
          arm();
        }, TFTP_TIMEOUT_MS);
      };
      const ack = (block: number) => {
        const b = Buffer.alloc(4);
        b.writeUInt16BE(4, 0);
        b.writeUInt16BE(block & 0xffff, 2);
        send(b);
      };
      socket.on('error', (err) => reject(new StageError(`TFTP ${file}: ${err.message}`)));
      socket.on('message', (msg, from) => {
        if (settled || from.address !== server) return;
        const op = msg.readUInt16BE(0);
        if (received === 0 && nextBlock === 1) peerPort = from.port;
        else if (from.port !== peerPort) return;
        if (op === 5) return reject(new StageError(`TFTP ${file}: error ${msg.readUInt16BE(2)} ${msg.subarray(4, -1).toString('latin1')}`));
        if (op === 6) {
          const fields = msg.subarray(2).toString('latin1').split('\0');
          const at = fields.findIndex((f) => f.toLowerCase() === 'blksize');
          if (at >= 0) blksize = Number(fields[at + 1]);
          return ack(0);
        }
        if (op !== 3) return;
        const block = msg.readUInt16BE(2);
        if (block !== (nextBlock & 0xffff)) {
          if (block === ((nextBlock - 1) & 0xffff)) ack(block); // a retransmission: our ACK was lost
          return;
        }
        const payload = msg.subarray(4);
        if (!payload.equals(expected.subarray(received, received + payload.length))) {
          return reject(new StageError(`TFTP ${file}: block ${nextBlock} differs from the file`));
        }
        received += payload.length;
        nextBlock++;
        if (payload.length < blksize) {
          if (received !== expected.length) return reject(new StageError(`TFTP ${file}: ${received} bytes, not ${expected.length}`));
          // The last ACK, once (a lost one only makes the server retransmit into a closed port); closed once it is sent.
          settled = true;
          clearTimeout(timer);
          return socket.send(Buffer.from([0, 4, (block >> 8) & 0xff, block & 0xff]), peerPort, server, () => resolveTransfer(received));
        }
        ack(block);
      });
      send(rrq);
    });
  } finally {
    socket.close();
  }
}

/** GET `url` from `localIp`, following redirects; every chunk is compared with `expected` (when given). */
function fetchVerified(url: string, localIp: string, expected: Buffer | undefined, redirects = 3): Promise<Buffer | number> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { localAddress: localIp, agent: false }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location && redirects > 0) {
        res.resume();
        return resolve(fetchVerified(new URL(res.headers.location, url).href, localIp, expected, redirects - 1));
      }
      if (status !== 200) {
        res.resume();
        return reject(new StageError(`GET ${url}: ${status}`));
      }
      const chunks: Buffer[] = [];
      let offset = 0;
      res.on('data', (chunk: Buffer) => {
        if (expected) {
          if (!chunk.equals(expected.subarray(offset, offset + chunk.length))) {
            req.destroy(new StageError(`GET ${url}: bytes ${offset}..${offset + chunk.length} differ from the file`));
            return;
          }
        } else chunks.push(chunk);
        offset += chunk.length;
      });
      res.on('end', () => {
        if (!res.complete) return reject(new StageError(`GET ${url}: the response was cut at ${offset} bytes`));
        if (!expected) return resolve(Buffer.concat(chunks));
        if (offset !== expected.length) return reject(new StageError(`GET ${url}: ${offset} bytes, not ${expected.length}`));
        resolve(offset);
      });
      res.on('error', reject);
    });
    req.setTimeout(HTTP_STALL_MS, () => req.destroy(new StageError(`GET ${url}: no bytes for ${HTTP_STALL_MS / 1000} s`)));
    req.on('error', (err) => reject(err instanceof StageError ? err : new StageError(`GET ${url}: ${err.message}`)));
  });
}

/** The URLs an iPXE script makes iPXE and then the initramfs fetch: kernel, initrd, and shoal.rootfs. */
export function bootUrls(script: string): { kernel: string; initrd: string; root: string } {
  const lines = script.split('\n').map((l) => l.trim());
  if (lines[0] !== '#!ipxe') throw new StageError('the script does not start with #!ipxe');
  const kernelLine = lines.find((l) => l.startsWith('kernel '));
  const initrdLine = lines.find((l) => l.startsWith('initrd '));
  if (!kernelLine || !initrdLine) throw new StageError(`the script has no kernel or initrd line:\n${script}`);
  const root = kernelLine.split(/\s+/).find((w) => w.startsWith('shoal.rootfs='));
  if (!root) throw new StageError('the kernel line names no shoal.rootfs');
  return { kernel: kernelLine.split(/\s+/)[1]!, initrd: initrdLine.split(/\s+/).at(-1)!, root: root.slice('shoal.rootfs='.length) };
}

interface Expected {
  loader: Buffer;
  kernel: Buffer;
  initrd: Buffer;
  root: Buffer;
}

async function bootOne(port: DhcpPort, spec: ClientSpec, index: number, files: Expected, t0: number): Promise<ClientResult> {
  const { mac, ip } = spec.clients[index]!;
  const startAt = t0 + (spec.clients.length > 1 ? (index * spec.spreadMs) / (spec.clients.length - 1) : 0);
  await new Promise((r) => setTimeout(r, Math.max(0, startAt - performance.now())));
  const result: ClientResult = { mac, startMs: performance.now() - t0, endMs: 0, stages: {}, verifiedBytes: 0, retransmits: 0 };
  const retransmitted = () => void result.retransmits++;
  let stage: Stage = 'dhcp';
  const timed = async <T>(name: Stage, work: () => Promise<T>): Promise<T> => {
    stage = name;
    const started = performance.now();
    const value = await work();
    result.stages[name] = performance.now() - started;
    return value;
  };
  try {
    const lease = await timed('dhcp', () => dhcp(port, mac, ip, 0x4000_0000 + index, retransmitted));
    result.verifiedBytes += await timed('tftp', () => tftp(ip, lease.tftpServer, lease.file, files.loader, retransmitted));
    const script = await timed('script', () => fetchVerified(spec.scriptUrl.replace('{mac}', mac), ip, undefined));
    const urls = bootUrls((script as Buffer).toString('utf8'));
    await timed('kernel+initrd', async () => {
      result.verifiedBytes += (await fetchVerified(urls.kernel, ip, files.kernel)) as number;
      result.verifiedBytes += (await fetchVerified(urls.initrd, ip, files.initrd)) as number;
    });
    result.verifiedBytes += (await timed('root', () => fetchVerified(urls.root, ip, files.root))) as number;
  } catch (err) {
    result.failure = { stage, message: err instanceof Error ? err.message : String(err) };
  }
  result.endMs = performance.now() - t0;
  return result;
}

export async function runClients(spec: ClientSpec): Promise<ClientResult[]> {
  const files: Expected = {
    loader: readFileSync(spec.files.loader),
    kernel: readFileSync(spec.files.kernel),
    initrd: readFileSync(spec.files.initrd),
    root: readFileSync(spec.files.root),
  };
  const port = await DhcpPort.open();
  try {
    const t0 = performance.now();
    return await Promise.all(spec.clients.map((_, i) => bootOne(port, spec, i, files, t0)));
  } finally {
    port.close();
  }
}

if (process.argv[1] === import.meta.filename) {
  const spec = ClientSpecSchema.parse(JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')));
  runClients(spec).then(
    (results) => {
      const cpu = process.cpuUsage();
      process.stdout.write(`${JSON.stringify({ results, cpuSeconds: (cpu.user + cpu.system) / 1e6 })}\n`);
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
