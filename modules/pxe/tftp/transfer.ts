// One read transfer on its own socket (its TID): OACK when options were accepted, then
// windows of DATA (RFC 7440; a window of 1 is RFC 1350's lock-step), retransmission on
// timeout with bounded retries, and block numbers that wrap past 65535.
//
// Duplicate ACKs are never answered with data: only the timer retransmits, which is what
// keeps a delayed packet from doubling the traffic forever (the Sorcerer's Apprentice bug,
// RFC 1123 4.2.3.1).
//
// The hot path (an ACK in, the next window out) allocates almost nothing and never waits:
// blocks are sliced from one Buffer (the whole file when the source has it in memory, else
// a read-ahead chunk that always covers the window) and sent as [header, payload] without a
// copy; headers come from one immutable table; the retransmission timer is one Timeout per
// transfer that only moves a deadline forward on progress, instead of a new timer per window.
//
// Time is the global `performance.now()` (not node:perf_hooks' export) so that tests with fake
// timers move the deadline's clock and the timers together.
import { absoluteAckedBlock, blockCount, decodePacket, encodeError, encodeOack, ErrorCode, Opcode, wireBlock, type TftpOption } from './codec.js';
import type { TftpPeer, TftpSource } from './resolver.js';

export type TransferFailure =
  /** The client sent ERROR (other than the tsize probe, which is reported as `probe`). */
  | { kind: 'client-abort'; code: number; message: string }
  | { kind: 'timeout'; message: string }
  /** The client's port is closed (ICMP port unreachable): it went away without a word. */
  | { kind: 'client-gone'; message: string }
  | { kind: 'read-failed'; message: string }
  | { kind: 'shutdown'; message: string }
  /** The server itself failed under the transfer (a transfer thread stopped). */
  | { kind: 'internal'; message: string };

export interface TransferObservation {
  /**
   * `probe`: the client read the OACK (it asked tsize) and ended the transfer with ERROR
   * before any data, as OVMF does to learn a file's size before asking for it again. It is
   * how that transfer ends normally, not a failure.
   */
  event: 'start' | 'complete' | 'probe' | 'error';
  /** The filename as the client asked for it. */
  path: string;
  client: TftpPeer;
  /** Bytes of the file the client has acknowledged so far. */
  bytes: number;
  /** Size of the file being served. */
  size: number;
  /** Milliseconds since the request arrived. */
  ms: number;
  /** Set on `error` only. */
  failure?: TransferFailure;
  /** Set on `probe`: the ERROR the client ended it with (OVMF: 8, "User aborted the transfer"). */
  clientError?: { code: number; message: string };
}

export interface TransferParameters {
  blockSize: number;
  windowSize: number;
  timeoutMs: number;
  retries: number;
  /** The OACK to send first; empty for a plain RFC 1350 transfer that starts with DATA 1. */
  oack: TftpOption[];
}

/** What a transfer needs of its socket: a dgram Socket connected to the client, or a test double. */
export interface TransferSocket {
  send(message: Buffer | readonly Buffer[], callback?: (error: Error | null) => void): void;
  close(callback?: () => void): void;
  on(event: 'message', listener: (message: Buffer) => void): unknown;
  on(event: 'error', listener: (error: NodeJS.ErrnoException) => void): unknown;
}

export interface TransferContext {
  socket: TransferSocket;
  source: TftpSource;
  path: string;
  client: TftpPeer;
  /** performance.now() when the request arrived. */
  requestedAt: number;
  parameters: TransferParameters;
  observe(observation: TransferObservation): void;
}

/** File bytes read per descriptor read: many blocks at once, so a transfer costs few thread-pool trips. */
const READ_AHEAD_BYTES = 64 * 1024;

/** The 4-byte DATA header of every wire block number, built once; slices of it are never written. */
let dataHeaders: Buffer | undefined;
function dataHeader(wire: number): Buffer {
  if (dataHeaders === undefined) {
    dataHeaders = Buffer.allocUnsafeSlow(4 * 0x10000);
    for (let block = 0; block < 0x10000; block++) {
      dataHeaders.writeUInt16BE(Opcode.DATA, 4 * block);
      dataHeaders.writeUInt16BE(block, 4 * block + 2);
    }
  }
  return dataHeaders.subarray(4 * wire, 4 * wire + 4);
}

export class ReadTransfer {
  private readonly socket: TransferSocket;
  private readonly source: TftpSource;
  private readonly blockSize: number;
  private readonly windowSize: number;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly totalBlocks: number;
  /** Highest block the client acknowledged (absolute, from 1; 0 = none). */
  private lastAcked = 0;
  /** Highest block sent so far (absolute). */
  private lastSent = 0;
  private awaitingOackAck: boolean;
  /**
   * File bytes from position `dataStart`: the whole file, or the latest read-ahead chunk.
   * A new read replaces the Buffer and never overwrites it, so a send still queued in the
   * kernel path keeps the bytes it was given.
   */
  private data: Buffer;
  private dataStart = 0;
  private reading = false;
  private readonly chunkBytes: number;
  private retriesLeft: number;
  /** When the current wait for an acknowledgement runs out (performance.now() time). */
  private deadline = 0;
  private timer: NodeJS.Timeout | undefined;
  private finished = false;
  private resolveDone!: () => void;
  /** Settles once the socket and source are closed and the last observation is made. */
  readonly done = new Promise<void>((resolve) => {
    this.resolveDone = resolve;
  });

  constructor(private readonly context: TransferContext) {
    const { parameters, source, socket } = context;
    this.socket = socket;
    this.source = source;
    this.blockSize = parameters.blockSize;
    this.windowSize = parameters.windowSize;
    this.timeoutMs = parameters.timeoutMs;
    this.retries = parameters.retries;
    this.totalBlocks = blockCount(source.size, parameters.blockSize);
    this.awaitingOackAck = parameters.oack.length > 0;
    this.retriesLeft = parameters.retries;
    this.data = source.contents ?? Buffer.alloc(0);
    // A chunk always holds at least a whole window, so a window never needs two reads.
    const blocksPerChunk = Math.max(parameters.windowSize, Math.floor(READ_AHEAD_BYTES / parameters.blockSize), 1);
    this.chunkBytes = blocksPerChunk * parameters.blockSize;
    socket.on('message', (message) => this.onDatagram(message));
    socket.on('error', (error) => {
      if (error.code === 'ECONNREFUSED') this.fail({ kind: 'client-gone', message: 'client port unreachable' }, false);
      else this.fail({ kind: 'client-gone', message: `socket error: ${error.message}` }, false);
    });
  }

  start(): void {
    this.observe('start');
    if (this.awaitingOackAck) this.sendOack();
    else this.sendWindow();
  }

  /** Ends the transfer early (server shutdown), telling the client why. */
  abort(): void {
    this.fail({ kind: 'shutdown', message: 'server shutting down' }, true);
  }

  private observe(event: TransferObservation['event'], extra?: Pick<TransferObservation, 'failure' | 'clientError'>): void {
    const { path, client, requestedAt } = this.context;
    const size = this.source.size;
    const bytes = Math.min(size, this.lastAcked * this.blockSize);
    this.context.observe({ event, path, client, bytes, size, ms: Math.round(performance.now() - requestedAt), ...extra });
  }

  private onDatagram(message: Buffer): void {
    if (this.finished) return;
    // The common case, an ACK, without building a decoded packet.
    if (message.length === 4 && message[0] === 0 && message[1] === Opcode.ACK) {
      this.onAck((message[2]! << 8) | message[3]!);
      return;
    }
    const decoded = decodePacket(message);
    // Anything but ACK and ERROR from the client's TID has no meaning in a read; ignoring it
    // keeps a confused or malicious peer from ending a transfer that is otherwise fine.
    if (!decoded.ok) return;
    const packet = decoded.packet;
    if (packet.type === 'ack') this.onAck(packet.block);
    else if (packet.type === 'error') this.onClientError(packet.code, packet.message);
  }

  private onClientError(code: number, message: string): void {
    const askedSize = this.context.parameters.oack.some((option) => option.name === 'tsize');
    if (this.awaitingOackAck && askedSize) {
      this.close('probe', { clientError: { code, message } });
      return;
    }
    this.fail({ kind: 'client-abort', code, message }, false);
  }

  private onAck(wire: number): void {
    if (this.awaitingOackAck) {
      if (wire !== 0) return;
      this.awaitingOackAck = false;
      this.retriesLeft = this.retries;
      this.sendWindow();
      return;
    }
    const acked = absoluteAckedBlock(wire, this.lastAcked, this.lastSent);
    // A duplicate (or an ACK of nothing we sent) is ignored: only the timer retransmits.
    if (acked === undefined || acked === this.lastAcked) return;
    this.lastAcked = acked;
    this.retriesLeft = this.retries;
    if (acked === this.totalBlocks) {
      this.close('complete');
      return;
    }
    // A full window acknowledged moves on; a partial one means the client saw a gap and
    // wants everything after `acked` again (RFC 7440 section 4).
    this.sendWindow();
  }

  private sendOack(): void {
    this.socket.send(encodeOack(this.context.parameters.oack));
    this.arm();
  }

  /** Sends blocks lastAcked+1 … lastAcked+windowSize (or to the end), reading them first if need be. */
  private sendWindow(): void {
    if (this.finished) return;
    const first = this.lastAcked + 1;
    const last = Math.min(this.lastAcked + this.windowSize, this.totalBlocks);
    const { blockSize, dataStart, data } = this;
    const size = this.source.size;
    const firstByte = (first - 1) * blockSize;
    const endByte = Math.min(last * blockSize, size);
    if (firstByte < dataStart || endByte > dataStart + data.length) {
      this.readAhead(firstByte);
      return;
    }
    for (let block = first; block <= last; block++) {
      const start = (block - 1) * blockSize;
      const end = Math.min(start + blockSize, size);
      this.socket.send([dataHeader(wireBlock(block)), data.subarray(start - dataStart, end - dataStart)]);
    }
    if (last > this.lastSent) this.lastSent = last;
    this.arm();
  }

  /** Reads the chunk starting at `position`, then sends the window that is due by then. */
  private readAhead(position: number): void {
    // The timer runs during the read too: a source that never answers ends in a timeout.
    this.arm();
    if (this.reading) return;
    this.reading = true;
    const data = Buffer.allocUnsafe(Math.min(this.chunkBytes, this.source.size - position));
    const fill = async () => {
      let filled = 0;
      while (filled < data.length) {
        const read = await this.source.read(data, filled, data.length - filled, position + filled);
        if (read === 0) throw new Error(`file ended at ${position + filled} bytes, before its size ${this.source.size}: it changed while being served`);
        filled += read;
      }
    };
    fill().then(
      () => {
        this.reading = false;
        this.data = data;
        this.dataStart = position;
        this.sendWindow();
      },
      (error: unknown) => {
        this.reading = false;
        this.fail({ kind: 'read-failed', message: error instanceof Error ? error.message : String(error) }, true);
      },
    );
  }

  /** Starts (or extends) the wait for an acknowledgement of what was just sent. */
  private arm(): void {
    this.deadline = performance.now() + this.timeoutMs;
    this.timer ??= setTimeout(this.onTimer, this.timeoutMs);
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    if (this.finished) return;
    const remaining = this.deadline - performance.now();
    // Progress moved the deadline since this timer was set: wait out the rest.
    if (remaining >= 1) {
      this.timer = setTimeout(this.onTimer, remaining);
      return;
    }
    if (this.retriesLeft === 0) {
      const waitingFor = this.awaitingOackAck ? 'the OACK' : `block ${this.lastAcked + 1}`;
      this.fail({ kind: 'timeout', message: `no acknowledgement of ${waitingFor} after ${this.retries} retransmissions` }, true);
      return;
    }
    this.retriesLeft--;
    if (this.awaitingOackAck) this.sendOack();
    else this.sendWindow();
  };

  private fail(failure: TransferFailure, tellClient: boolean): void {
    if (this.finished) return;
    this.close('error', { failure }, tellClient ? encodeError(ErrorCode.NOT_DEFINED, failure.message) : undefined);
  }

  private close(event: 'complete' | 'probe' | 'error', extra?: Pick<TransferObservation, 'failure' | 'clientError'>, lastWords?: Buffer): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.observe(event, extra);
    const { socket, source } = this;
    // A read-only descriptor that fails to close leaves nothing to undo; the transfer is over either way.
    const sourceClosed = source.close().catch(() => undefined);
    const socketClosed = new Promise<void>((resolve) => {
      // The last ERROR is best effort, but closing before the send completes would cancel it.
      if (lastWords) socket.send(lastWords, () => socket.close(() => resolve()));
      else socket.close(() => resolve());
    });
    void Promise.all([sourceClosed, socketClosed]).then(() => this.resolveDone());
  }
}
