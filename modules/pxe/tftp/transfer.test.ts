// One read transfer against a fake socket and fake clocks: lock-step and windows, the OACK,
// block numbers past 65535, retransmission and giving up, duplicate ACKs (the Sorcerer's
// Apprentice), OVMF's tsize probe, and files read in chunks rather than held in memory.
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { decodePacket, encodeAck, encodeData, encodeError, encodeRequest, type TftpOption, type TftpPacket } from './codec.js';
import { bufferSource, type TftpSource } from './resolver.js';
import { ReadTransfer, type TransferObservation, type TransferSocket } from './transfer.js';

/** The transfer's socket as the client sees it: what was sent (copied at send time), and a way to answer. */
class FakeSocket extends EventEmitter implements TransferSocket {
  readonly sent: Buffer[] = [];
  closed = false;
  send(message: Buffer | readonly Buffer[], callback?: (error: Error | null) => void): void {
    if (this.closed) throw new Error('send on a closed socket');
    this.sent.push(Buffer.isBuffer(message) ? Buffer.from(message) : Buffer.concat(message));
    if (callback) queueMicrotask(() => callback(null));
  }
  close(callback?: () => void): void {
    this.closed = true;
    if (callback) queueMicrotask(callback);
  }
  ack(block: number): void {
    this.emit('message', encodeAck(block));
  }
  packets(): TftpPacket[] {
    return this.sent.map((p) => {
      const d = decodePacket(p);
      if (!d.ok) throw new Error(`server sent a malformed packet: ${d.message}`);
      return d.packet;
    });
  }
  /** A short form of what was sent: DATA as its wire block number, the rest by type. */
  summary(): (number | string)[] {
    return this.packets().map((p) => (p.type === 'data' ? p.block : p.type));
  }
  lastBlock(): number {
    const last = this.sent.at(-1);
    const decoded = last && decodePacket(last);
    if (!decoded?.ok || decoded.packet.type !== 'data') throw new Error('the last packet sent is not DATA');
    return decoded.packet.block;
  }
}

function pattern(size: number): Buffer {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = (i * 31 + (i >> 8)) & 0xff;
  return data;
}

interface Setup {
  data?: Buffer;
  size?: number;
  source?: TftpSource;
  blockSize?: number;
  windowSize?: number;
  timeoutMs?: number;
  retries?: number;
  oack?: TftpOption[];
}

function setup(options: Setup = {}) {
  const data = options.data ?? pattern(options.size ?? 1300);
  const socket = new FakeSocket();
  const observations: TransferObservation[] = [];
  const transfer = new ReadTransfer({
    socket,
    source: options.source ?? bufferSource(data),
    path: 'kernel',
    client: { address: '192.0.2.7', port: 2070 },
    requestedAt: performance.now(),
    parameters: {
      blockSize: options.blockSize ?? 512,
      windowSize: options.windowSize ?? 1,
      timeoutMs: options.timeoutMs ?? 1000,
      retries: options.retries ?? 3,
      oack: options.oack ?? [],
    },
    observe: (o) => observations.push(o),
  });
  const events = () => observations.map((o) => o.event);
  return { data, socket, transfer, observations, events };
}

/** The bytes carried by the DATA packets sent, in order, each block once (the latest copy). */
function received(socket: FakeSocket, blockSize: number): Buffer {
  const blocks = new Map<number, Buffer>();
  let absolute = 0;
  let previousWire = -1;
  let largest = 0;
  for (const packet of socket.packets()) {
    if (packet.type !== 'data') continue;
    // Reconstruct absolute numbers: a wire number far below the previous one wrapped; a little below is a resend.
    if (packet.block < previousWire && previousWire - packet.block > 0x8000) absolute += 0x10000;
    previousWire = packet.block;
    blocks.set(absolute + packet.block, packet.payload);
    largest = Math.max(largest, packet.payload.length);
  }
  expect(largest).toBeLessThanOrEqual(blockSize);
  return Buffer.concat([...blocks.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b));
}

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('a lock-step transfer (RFC 1350)', () => {
  it('sends each block after the previous one is acknowledged, the last one short, then completes', async () => {
    const { socket, transfer, data, observations, events } = setup({ size: 1300 });
    transfer.start();
    expect(socket.summary()).toEqual([1]);
    socket.ack(1);
    expect(socket.summary()).toEqual([1, 2]);
    socket.ack(2);
    expect(socket.summary()).toEqual([1, 2, 3]);
    expect(socket.packets()[2]).toMatchObject({ type: 'data', block: 3, payload: data.subarray(1024) });
    socket.ack(3);
    await transfer.done;
    expect(events()).toEqual(['start', 'complete']);
    expect(observations[1]).toMatchObject({ path: 'kernel', bytes: 1300, size: 1300, client: { address: '192.0.2.7', port: 2070 } });
    expect(received(socket, 512)).toEqual(data);
    expect(socket.closed).toBe(true);
  });

  it('ends a file of whole blocks with an empty block', async () => {
    const { socket, transfer } = setup({ size: 1024 });
    transfer.start();
    socket.ack(1);
    socket.ack(2);
    expect(socket.packets()[2]).toEqual({ type: 'data', block: 3, payload: Buffer.alloc(0) });
    socket.ack(3);
    await transfer.done;
    expect(socket.closed).toBe(true);
  });

  it('sends one empty block for an empty file', async () => {
    const { socket, transfer, events } = setup({ size: 0 });
    transfer.start();
    expect(socket.packets()).toEqual([{ type: 'data', block: 1, payload: Buffer.alloc(0) }]);
    socket.ack(1);
    await transfer.done;
    expect(events()).toEqual(['start', 'complete']);
  });

  it('ignores garbage, DATA and requests from the client, and ACKs of blocks not sent', () => {
    const { socket, transfer, events } = setup({ size: 5000 });
    transfer.start();
    socket.emit('message', Buffer.from([0xde, 0xad]));
    socket.emit('message', encodeData(1, Buffer.from('x')));
    socket.emit('message', encodeRequest({ type: 'rrq', filename: 'other', mode: 'octet', options: [] }));
    socket.ack(7);
    expect(socket.summary()).toEqual([1]);
    expect(events()).toEqual(['start']);
    socket.ack(1);
    expect(socket.summary()).toEqual([1, 2]);
  });
});

describe('options', () => {
  it('sends the OACK first and starts the data on ACK 0 only', () => {
    const { socket, transfer } = setup({ size: 3000, oack: [{ name: 'tsize', value: '3000' }, { name: 'blksize', value: '1468' }], blockSize: 1468 });
    transfer.start();
    expect(socket.packets()).toEqual([{ type: 'oack', options: [{ name: 'tsize', value: '3000' }, { name: 'blksize', value: '1468' }] }]);
    socket.ack(1);
    expect(socket.summary()).toEqual(['oack']);
    socket.ack(0);
    expect(socket.summary()).toEqual(['oack', 1]);
    expect(socket.packets()[1]).toMatchObject({ payload: { length: 1468 } });
  });

  it("treats OVMF's tsize probe (ERROR right after the OACK) as a probe, not a failure, and says nothing back", async () => {
    const { socket, transfer, observations, events } = setup({
      size: 8 << 20,
      blockSize: 1468,
      windowSize: 4,
      oack: [{ name: 'tsize', value: String(8 << 20) }, { name: 'blksize', value: '1468' }, { name: 'windowsize', value: '4' }],
    });
    transfer.start();
    socket.emit('message', encodeError(8, 'User aborted the transfer'));
    await transfer.done;
    expect(events()).toEqual(['start', 'probe']);
    expect(observations[1]).toMatchObject({ clientError: { code: 8, message: 'User aborted the transfer' }, bytes: 0, size: 8 << 20 });
    expect(observations[1]!.failure).toBeUndefined();
    expect(socket.summary()).toEqual(['oack']); // no ERROR sent to a client that already left
    expect(socket.closed).toBe(true);
    vi.advanceTimersByTime(60_000);
    expect(socket.summary()).toEqual(['oack']);
  });

  it('reports an ERROR after an OACK without tsize as the client aborting', async () => {
    const { socket, transfer, observations } = setup({ oack: [{ name: 'blksize', value: '1024' }], blockSize: 1024 });
    transfer.start();
    socket.emit('message', encodeError(8, 'blksize refused'));
    await transfer.done;
    expect(observations.at(-1)).toMatchObject({ event: 'error', failure: { kind: 'client-abort', code: 8, message: 'blksize refused' } });
  });

  it('reports an ERROR in the middle of the data as the client aborting', async () => {
    const { socket, transfer, observations } = setup({ size: 5000, oack: [{ name: 'tsize', value: '5000' }] });
    transfer.start();
    socket.ack(0);
    socket.ack(1);
    socket.emit('message', encodeError(0, 'disk full'));
    await transfer.done;
    expect(observations.at(-1)).toMatchObject({ event: 'error', bytes: 512, failure: { kind: 'client-abort', code: 0, message: 'disk full' } });
    expect(socket.summary()).toEqual(['oack', 1, 2]);
  });
});

describe('block numbers past 65535', () => {
  it('sends block 0 after block 65535, then 1, and delivers every byte', async () => {
    // 8-byte blocks: 65,540 full blocks and a short one, 65,541 in all.
    const { socket, transfer, data, observations } = setup({ size: 8 * 65540 + 3, blockSize: 8 });
    transfer.start();
    // Bounded, so a server that stops making progress fails the test instead of hanging it.
    for (let i = 0; i < 70_000 && !socket.closed; i++) socket.ack(socket.lastBlock());
    expect(socket.closed).toBe(true);
    await transfer.done;
    const blocks = socket.summary();
    expect(blocks).toHaveLength(65541);
    expect(blocks.slice(65532, 65539)).toEqual([65533, 65534, 65535, 0, 1, 2, 3]);
    // Absolute block 65536 goes out as 0 and carries the bytes right after block 65535's.
    expect(socket.packets()[65535]).toEqual({ type: 'data', block: 0, payload: data.subarray(65535 * 8, 65536 * 8) });
    expect(received(socket, 8)).toEqual(data);
    expect(observations.at(-1)).toMatchObject({ event: 'complete', bytes: data.length });
  });
});

describe('windows (RFC 7440)', () => {
  it('sends a window per ACK, and after a partial ACK sends again from the first unacknowledged block', async () => {
    // 8-byte blocks, 84 bytes: ten full blocks and one of 4.
    const { socket, transfer, data } = setup({ size: 84, blockSize: 8, windowSize: 4 });
    transfer.start();
    expect(socket.summary()).toEqual([1, 2, 3, 4]);
    socket.ack(4);
    expect(socket.summary().slice(4)).toEqual([5, 6, 7, 8]);
    socket.ack(6); // the client lost 7
    expect(socket.summary().slice(8)).toEqual([7, 8, 9, 10]);
    socket.ack(10);
    expect(socket.summary().slice(12)).toEqual([11]);
    socket.ack(11);
    await transfer.done;
    expect(received(socket, 8)).toEqual(data);
  });
});

describe('retransmission', () => {
  it('retransmits the window when no ACK comes in time, and gives up after the retries with an ERROR', async () => {
    const { socket, transfer, observations } = setup({ size: 5000, timeoutMs: 1000, retries: 3 });
    transfer.start();
    vi.advanceTimersByTime(999);
    expect(socket.summary()).toEqual([1]);
    vi.advanceTimersByTime(1);
    expect(socket.summary()).toEqual([1, 1]);
    vi.advanceTimersByTime(2000);
    expect(socket.summary()).toEqual([1, 1, 1, 1]);
    expect(observations.map((o) => o.event)).toEqual(['start']);
    vi.advanceTimersByTime(1000);
    await transfer.done;
    expect(observations.at(-1)).toMatchObject({ event: 'error', failure: { kind: 'timeout', message: 'no acknowledgement of block 1 after 3 retransmissions' } });
    expect(socket.packets().at(-1)).toEqual({ type: 'error', code: 0, message: 'no acknowledgement of block 1 after 3 retransmissions' });
    expect(socket.closed).toBe(true);
    vi.advanceTimersByTime(10_000);
    expect(socket.sent).toHaveLength(5);
  });

  it('retransmits the OACK, and gives up on a client that never acknowledges it', async () => {
    const { socket, transfer, observations } = setup({ oack: [{ name: 'tsize', value: '1300' }], retries: 1 });
    transfer.start();
    vi.advanceTimersByTime(1000);
    expect(socket.summary()).toEqual(['oack', 'oack']);
    vi.advanceTimersByTime(1000);
    await transfer.done;
    expect(observations.at(-1)).toMatchObject({ failure: { kind: 'timeout', message: 'no acknowledgement of the OACK after 1 retransmissions' } });
  });

  it('waits a full interval after the latest progress, and gives each block its own retries', () => {
    const { socket, transfer } = setup({ size: 5000, timeoutMs: 1000, retries: 1 });
    transfer.start();
    vi.advanceTimersByTime(600);
    socket.ack(1);
    vi.advanceTimersByTime(400); // a second after DATA 1, but 400 ms after DATA 2
    expect(socket.summary()).toEqual([1, 2]);
    vi.advanceTimersByTime(600);
    expect(socket.summary()).toEqual([1, 2, 2]);
    socket.ack(2);
    vi.advanceTimersByTime(1000);
    // Progress restored the retry budget: block 3 gets its own retransmission.
    expect(socket.summary()).toEqual([1, 2, 2, 3, 3]);
  });

  it('does not answer duplicate ACKs: a delayed packet must not double the traffic (Sorcerer\'s Apprentice)', () => {
    const { socket, transfer } = setup({ size: 512 * 10, timeoutMs: 1000 });
    transfer.start();
    socket.ack(1);
    expect(socket.summary()).toEqual([1, 2]);
    // DATA 2 is slow to arrive: the timer sends it again, then the client acknowledges both copies.
    vi.advanceTimersByTime(1000);
    expect(socket.summary()).toEqual([1, 2, 2]);
    socket.ack(2);
    socket.ack(2);
    expect(socket.summary()).toEqual([1, 2, 2, 3]);
    // From there on, one DATA per block, however many duplicates arrive.
    for (let block = 3; block <= 10; block++) {
      socket.ack(block);
      socket.ack(block);
      socket.ack(block - 1);
    }
    expect(socket.summary()).toEqual([1, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  });

  it('does not resend a window on a duplicate of its ACK', () => {
    const { socket, transfer } = setup({ size: 8 * 40, blockSize: 8, windowSize: 4 });
    transfer.start();
    socket.ack(4);
    for (let i = 0; i < 10; i++) socket.ack(4);
    expect(socket.summary()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });
});

describe('ending', () => {
  it('reports a client whose port is closed as gone, without an ERROR', async () => {
    const { socket, transfer, observations } = setup({ size: 5000 });
    transfer.start();
    socket.emit('error', Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
    await transfer.done;
    expect(observations.at(-1)).toMatchObject({ event: 'error', failure: { kind: 'client-gone', message: 'client port unreachable' } });
    expect(socket.summary()).toEqual([1]);
  });

  it('tells the client when the server shuts down', async () => {
    const { socket, transfer, observations } = setup({ size: 5000 });
    transfer.start();
    transfer.abort();
    await transfer.done;
    expect(observations.at(-1)).toMatchObject({ event: 'error', failure: { kind: 'shutdown' } });
    expect(socket.packets().at(-1)).toEqual({ type: 'error', code: 0, message: 'server shutting down' });
  });
});

describe('a source read in chunks (not in memory)', () => {
  function chunkedSource(data: Buffer, failAt?: number) {
    const reads: { position: number; length: number }[] = [];
    let closed = false;
    const source: TftpSource = {
      size: data.length,
      async read(target, offset, length, position) {
        reads.push({ position, length });
        if (failAt !== undefined && position + length > failAt) throw new Error('EIO: i/o error');
        // Short reads, as a descriptor may return: at most 40,000 bytes at a time.
        const n = Math.min(length, 40_000, data.length - position);
        data.copy(target, offset, position, position + n);
        return n;
      },
      async close() {
        closed = true;
      },
    };
    return { source, reads, isClosed: () => closed };
  }

  it('reads ahead many blocks at a time and delivers every byte', async () => {
    const data = pattern(200_000);
    const { source, reads, isClosed } = chunkedSource(data);
    const { socket, transfer } = setup({ data, source });
    transfer.start();
    while (!socket.closed) {
      await flush();
      if (socket.sent.length > 0 && !socket.closed) socket.ack(socket.lastBlock());
    }
    await transfer.done;
    expect(received(socket, 512)).toEqual(data);
    // 200,000 bytes in 64 KiB chunks (each taking two short reads): 4 chunks, not 391 reads.
    expect(new Set(reads.map((r) => r.position)).size).toBeLessThanOrEqual(8);
    expect(reads.length).toBeLessThan(10);
    expect(isClosed()).toBe(true);
  });

  it('sends a window that straddles the end of a chunk again after a partial ACK, with the right bytes', async () => {
    const data = pattern(512 * 200);
    const { source } = chunkedSource(data);
    const { socket, transfer } = setup({ data, source, windowSize: 4 });
    transfer.start();
    await flush();
    // A chunk holds 128 blocks; walk up to the window 125..128 at its end.
    for (let acked = 4; acked <= 124; acked += 4) {
      socket.ack(acked);
      await flush();
    }
    expect(socket.summary().slice(-4)).toEqual([125, 126, 127, 128]);
    socket.ack(126); // lost 127: the next window is 127..130, across the chunk's end
    await flush();
    await flush();
    const last4 = socket.packets().slice(-4);
    expect(last4.map((p) => (p.type === 'data' ? p.block : p.type))).toEqual([127, 128, 129, 130]);
    for (const packet of last4) {
      if (packet.type !== 'data') throw new Error('expected DATA');
      expect(packet.payload).toEqual(data.subarray((packet.block - 1) * 512, packet.block * 512));
    }
  });

  it('fails the transfer and tells the client when reading fails', async () => {
    const data = pattern(200_000);
    const { source } = chunkedSource(data, 100_000);
    const { socket, transfer, observations } = setup({ data, source });
    transfer.start();
    while (!socket.closed) {
      await flush();
      if (!socket.closed && socket.packets().at(-1)?.type === 'data') socket.ack(socket.lastBlock());
    }
    await transfer.done;
    expect(observations.at(-1)).toMatchObject({ event: 'error', failure: { kind: 'read-failed', message: 'EIO: i/o error' } });
    expect(socket.packets().at(-1)).toEqual({ type: 'error', code: 0, message: 'EIO: i/o error' });
  });
});
