// A scripted DHCP client for the conformance tests, for the exchanges udhcpc and dhclient
// cannot be made to do (a REQUEST naming another server, PXE-shaped DISCOVERs, port 4011).
// Runs inside the test's client namespace, which needs a default route for 255.255.255.255.
//
//   npx tsx test/support/dhcp-probe-client.ts STEPS.json
//
// STEPS.json: [{ mac, type, options?, ciaddr?, to?: "a.b.c.d:port", awaitReply? }]
// Sends each step in order from 0.0.0.0:68 (broadcast to port 67 unless `to`); with
// `awaitReply` waits up to 3 s for a reply with that step's xid. Prints every reply
// received, in order, as one JSON line: { step, type, yiaddr, siaddr, file, options }.
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { chaddrFromMac, parseDhcpPacket, serializeDhcpPacket, type DhcpOptions } from '../../modules/pxe/dhcp/codec.js';

const StepSchema = z.object({
  mac: z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/),
  type: z.number().int().min(1).max(8),
  options: z.record(z.string(), z.unknown()).default({}),
  ciaddr: z.string().default('0.0.0.0'),
  to: z.string().regex(/^\d+\.\d+\.\d+\.\d+:\d+$/).optional(),
  awaitReply: z.boolean().default(false),
});

const REPLY_WAIT_MS = 3000;

async function main(): Promise<void> {
  const steps = z.array(StepSchema).parse(JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')));
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: false });
  await new Promise<void>((resolve) => socket.bind(68, '0.0.0.0', resolve));
  socket.setBroadcast(true);
  const xidBase = 0x5000_0000;
  const waiting = new Map<number, () => void>();
  socket.on('message', (data) => {
    const parsed = parseDhcpPacket(data);
    if (!parsed.ok || parsed.packet.op !== 2) return;
    const p = parsed.packet;
    const step = p.xid - xidBase;
    if (step < 0 || step >= steps.length) return;
    process.stdout.write(
      `${JSON.stringify({ step, type: p.options.messageType, yiaddr: p.yiaddr, siaddr: p.siaddr, file: p.file, options: p.options })}\n`,
    );
    waiting.get(step)?.();
  });
  for (const [index, step] of steps.entries()) {
    const packet = serializeDhcpPacket({
      op: 1,
      htype: 1,
      hlen: 6,
      hops: 0,
      xid: xidBase + index,
      secs: 0,
      flags: 0x8000,
      ciaddr: step.ciaddr,
      yiaddr: '0.0.0.0',
      siaddr: '0.0.0.0',
      giaddr: '0.0.0.0',
      chaddr: chaddrFromMac(step.mac),
      sname: '',
      file: '',
      options: { ...(step.options as DhcpOptions), messageType: step.type as DhcpOptions['messageType'] },
    });
    const [address, port] = step.to ? step.to.split(':') : ['255.255.255.255', '67'];
    const replied = new Promise<void>((resolve) => {
      waiting.set(index, resolve);
      setTimeout(resolve, REPLY_WAIT_MS).unref();
    });
    await new Promise<void>((resolve, reject) => socket.send(packet, Number(port), address, (e) => (e ? reject(e) : resolve())));
    if (step.awaitReply) await replied;
  }
  socket.close();
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
