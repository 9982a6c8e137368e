// The server end to end on loopback with a client written here (no external tools): a second
// server on a taken port, and OVMF's boot sequence (RRQ with tsize, read the OACK, ERROR 8,
// request again with windowsize 4), on the main thread and on transfer threads.
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePacket, encodeAck, encodeError, encodeRequest, type TftpOption, type TftpPacket } from './codec.js';
import { TftpBindError, TftpServer, type TftpLogEntry } from './index.js';
import type { TransferObservation } from './transfer.js';

/** A TFTP client reduced to its datagrams: send to a port, take the next packet and its source port. */
class RawClient {
  private readonly queue: { packet: TftpPacket; port: number }[] = [];
  private waiter: (() => void) | undefined;
  private readonly sending = new Set<Promise<void>>();
  private constructor(private readonly socket: Socket) {
    socket.on('message', (message, remote) => {
      const decoded = decodePacket(message);
      if (!decoded.ok) throw new Error(`server sent a malformed packet: ${decoded.message}`);
      this.queue.push({ packet: decoded.packet, port: remote.port });
      this.waiter?.();
    });
  }
  static async open(): Promise<RawClient> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    return new RawClient(socket);
  }
  send(packet: Buffer, port: number): void {
    const sent = new Promise<void>((resolve) => this.socket.send(packet, port, '127.0.0.1', () => resolve()));
    this.sending.add(sent);
    void sent.then(() => this.sending.delete(sent));
  }
  async next(timeoutMs = 5000): Promise<{ packet: TftpPacket; port: number }> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      if (Date.now() > deadline) throw new Error('no packet from the server in time');
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, 50);
      });
    }
    return this.queue.shift()!;
  }
  /** Closes once every datagram sent has left (closing earlier would drop the last ACK). */
  async close(): Promise<void> {
    await Promise.all(this.sending);
    await new Promise<void>((resolve) => this.socket.close(resolve));
  }
}

const ovmfOptions = (size: string): TftpOption[] => [
  { name: 'tsize', value: size },
  { name: 'blksize', value: '1468' },
  { name: 'windowsize', value: '4' },
];

/** Reads a whole file the way OVMF does after its probe: windows of 4, acknowledging the last block of each. */
async function fetchWindowed(client: RawClient, serverPort: number, filename: string): Promise<Buffer> {
  client.send(encodeRequest({ type: 'rrq', filename, mode: 'octet', options: ovmfOptions('0') }), serverPort);
  const oack = await client.next();
  expect(oack.packet.type).toBe('oack');
  const tid = oack.port;
  client.send(encodeAck(0), tid);
  const chunks: Buffer[] = [];
  let expected = 1;
  for (;;) {
    const { packet, port } = await client.next();
    expect(port).toBe(tid);
    if (packet.type !== 'data') throw new Error(`expected DATA, got ${packet.type}`);
    if (packet.block !== expected % 0x10000) continue; // a resend of a block already held
    chunks.push(packet.payload);
    expected++;
    const last = packet.payload.length < 1468;
    if (last || (expected - 1) % 4 === 0) client.send(encodeAck(packet.block), tid);
    if (last) return Buffer.concat(chunks);
  }
}

describe('TFTP server on loopback', { timeout: 60_000 }, () => {
  let dir: string;
  const file = Buffer.alloc(100_000);
  for (let i = 0; i < file.length; i++) file[i] = (i * 7 + (i >> 9)) & 0xff;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-tftp-loopback-'));
    writeFileSync(join(dir, 'snponly.efi'), file);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses to start on a port another server holds, with the reason, and leaves that server working', async () => {
    const first = new TftpServer({ address: '127.0.0.1', port: 0, root: dir, transferThreads: 0 });
    const { port } = await first.start();
    try {
      const second = new TftpServer({ address: '127.0.0.1', port, root: dir, transferThreads: 0 });
      const error = await second.start().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(TftpBindError);
      expect(error).toMatchObject({ code: 'EADDRINUSE', message: `TFTP port 127.0.0.1:${port} is already in use (is another TFTP server, e.g. tftpd-hpa, running?)` });
      // The first server still answers on its port.
      const client = await RawClient.open();
      client.send(encodeRequest({ type: 'rrq', filename: 'absent', mode: 'octet', options: [] }), port);
      expect((await client.next()).packet).toEqual({ type: 'error', code: 1, message: 'File not found' });
      await client.close();
    } finally {
      await first.close();
    }
  });

  it('refuses a port held by any other socket too (no SO_REUSEADDR sharing)', async () => {
    const holder = createSocket('udp4');
    await new Promise<void>((resolve) => holder.bind(0, '127.0.0.1', resolve));
    const { port } = holder.address();
    try {
      await expect(new TftpServer({ address: '127.0.0.1', port, root: dir }).start()).rejects.toMatchObject({ name: 'TftpBindError', code: 'EADDRINUSE' });
    } finally {
      holder.close();
    }
  });

  for (const threads of [0, 2]) {
    describe(threads === 0 ? 'transfers on the main thread' : `transfers on ${threads} transfer threads`, () => {
      let server: TftpServer;
      let port: number;
      const transfers: TransferObservation[] = [];
      const logs: TftpLogEntry[] = [];

      beforeAll(async () => {
        server = new TftpServer(
          // Short retransmit timeouts keep the timeout test quick; enough retries that a transfer
          // survives a few seconds' stall of a loaded CI machine.
          { address: '127.0.0.1', port: 0, root: dir, transferThreads: threads, timeoutMs: 300, retries: 8 },
          { onTransfer: (o) => transfers.push(o), onLog: (l) => logs.push(l) },
        );
        port = (await server.start()).port;
        await server.warmUp();
      });
      afterAll(async () => {
        await server.close();
      });

      it("follows OVMF's probe (tsize, then ERROR 8) and its second request, logging no failure", async () => {
        transfers.length = 0;
        logs.length = 0;
        const client = await RawClient.open();
        client.send(encodeRequest({ type: 'rrq', filename: 'snponly.efi', mode: 'octet', options: ovmfOptions('0') }), port);
        const oack = await client.next();
        expect(oack.packet).toEqual({ type: 'oack', options: ovmfOptions(String(file.length)) });
        expect(oack.port).not.toBe(port); // the transfer's own TID
        client.send(encodeError(8, 'User aborted the transfer'), oack.port);

        const got = await fetchWindowed(client, port, 'snponly.efi');
        expect(got.equals(file)).toBe(true);
        await client.close();
        const deadline = Date.now() + 20_000;
        while (transfers.filter((t) => t.event !== 'start').length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));

        // On two threads the probe's end and the second request's start reach the main thread in either order.
        const event = (name: string) => transfers.filter((t) => t.event === name);
        expect(transfers.map((t) => t.event).sort()).toEqual(['complete', 'probe', 'start', 'start']);
        expect(transfers.findIndex((t) => t.event === 'probe')).toBeLessThan(transfers.findIndex((t) => t.event === 'complete'));
        expect(event('probe')[0]).toMatchObject({ path: 'snponly.efi', size: file.length, clientError: { code: 8, message: 'User aborted the transfer' } });
        expect(event('complete')[0]).toMatchObject({ bytes: file.length, size: file.length });
        expect(logs.filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([]);
        expect(logs.map((l) => l.event)).toContain('probe');
        // Where they ran: the threads when there are any, else the main thread.
        expect(server.transferStats).toEqual(threads === 0 ? { mainThread: 2, threads: 0, threadsReady: 0 } : { mainThread: 0, threads: 2, threadsReady: threads });
        // Both requests were served from one read of the file.
        expect(server.cacheStats).toMatchObject({ entries: 1, misses: 1 });
        expect(server.cacheStats.hits).toBeGreaterThanOrEqual(1);
      });

      it('logs the options it ignores once per request, listing a bounded number of them', async () => {
        logs.length = 0;
        transfers.length = 0;
        const unknown = Array.from({ length: 3000 }, (_, i) => ({ name: `x-${i}`, value: '1' }));
        const options = [{ name: 'tsize', value: '0' }, { name: 'blksize', value: '0' }, { name: 'timeout', value: '256' }, ...unknown];
        const client = await RawClient.open();
        client.send(encodeRequest({ type: 'rrq', filename: 'snponly.efi', mode: 'octet', options }), port);
        const oack = await client.next();
        // RFC 2347: the server leaves out what it cannot honour and goes on with the rest.
        expect(oack.packet).toEqual({ type: 'oack', options: [{ name: 'tsize', value: String(file.length) }] });
        client.send(encodeError(8, 'User aborted the transfer'), oack.port);
        await client.close();
        const deadline = Date.now() + 20_000;
        while (!transfers.some((t) => t.event === 'probe') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        const ignored = logs.filter((l) => l.event === 'option-ignored');
        expect(ignored).toHaveLength(1);
        expect(ignored[0]).toMatchObject({ level: 'info', path: 'snponly.efi' });
        expect(ignored[0]!.message).toMatch(/^3002 options ignored: blksize=0 \(blksize must be 8\.\.65464\), timeout=256 \(timeout must be 1\.\.255 seconds\), x-0=1 \(unknown option\), .* and 2994 more$/);
        expect(ignored[0]!.message.length).toBeLessThan(1000);
      });

      it('serves the new bytes after the file is rewritten', async () => {
        const changed = Buffer.from(file);
        changed.fill(0xab, 0, 5000);
        writeFileSync(join(dir, 'snponly.efi'), changed);
        try {
          const client = await RawClient.open();
          expect((await fetchWindowed(client, port, 'snponly.efi')).equals(changed)).toBe(true);
          await client.close();
        } finally {
          writeFileSync(join(dir, 'snponly.efi'), file);
        }
      });

      it('logs a transfer that times out as failed', async () => {
        logs.length = 0;
        const client = await RawClient.open();
        client.send(encodeRequest({ type: 'rrq', filename: 'snponly.efi', mode: 'octet', options: [] }), port);
        await client.next(); // DATA 1, never acknowledged
        const deadline = Date.now() + 20_000;
        while (!logs.some((l) => l.event === 'transfer-failed') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        await client.close();
        expect(logs.find((l) => l.event === 'transfer-failed')).toMatchObject({
          level: 'warn',
          path: 'snponly.efi',
          message: 'timeout: no acknowledgement of block 1 after 8 retransmissions (0 of 100000 bytes acknowledged)',
        });
      });
    });
  }
});
