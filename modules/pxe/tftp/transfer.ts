// One read transfer on its own socket (its TID): OACK when options were accepted, then
// windows of DATA (RFC 7440; a window of 1 is RFC 1350's lock-step), retransmission on
// timeout with bounded retries, and block numbers that wrap past 65535.
//
// Duplicate ACKs are never answered with data: only the timer retransmits, which is what
// keeps a delayed packet from doubling the traffic forever (the Sorcerer's Apprentice bug,
// RFC 1123 4.2.3.1).
import type { Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import {
  absoluteAckedBlock,
  blockCount,
  decodePacket,
  encodeData,
  encodeError,
  encodeOack,
  ErrorCode,
  wireBlock,
  type TftpOption,
} from './codec.js';
import type { TftpPeer, TftpSource } from './resolver.js';

export type TransferFailure =
  /** The client sent ERROR; OVMF does this on purpose right after reading tsize from the OACK. */
  | { kind: 'client-abort'; code: number; message: string }
  | { kind: 'timeout'; message: string }
  /** The client's port is closed (ICMP port unreachable): it went away without a word. */
  | { kind: 'client-gone'; message: string }
  | { kind: 'read-failed'; message: string }
  | { kind: 'shutdown'; message: string };

export interface TransferObservation {
  event: 'start' | 'complete' | 'error';
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
}

export interface TransferParameters {
  blockSize: number;
  windowSize: number;
  timeoutMs: number;
  retries: number;
  /** The OACK to send first; empty for a plain RFC 1350 transfer that starts with DATA 1. */
  oack: TftpOption[];
}

export interface TransferContext {
  socket: Socket;
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

export class ReadTransfer {
  private readonly totalBlocks: number;
  /** Highest block the client acknowledged (absolute, from 1; 0 = none). */
  private lastAcked = 0;
  /** Highest block sent so far (absolute). */
  private lastSent = 0;
  private awaitingOackAck: boolean;
  /** DATA packets sent and not yet acknowledged, kept whole for retransmission. */
  private readonly unacked = new Map<number, Buffer>();
  /** The most recent read from the source; replaced, never overwritten, so a read in flight cannot tear a packet. */
  private chunk: { start: number; data: Buffer } = { start: 0, data: Buffer.alloc(0) };
  private filling: Promise<void> | undefined;
  private readonly chunkBytes: number;
  private retriesLeft: number;
  private timer: NodeJS.Timeout | undefined;
  /** Bumped whenever a newer window supersedes the one being sent. */
  private windowEpoch = 0;
  private finished = false;
  private resolveDone!: () => void;
  /** Settles once the socket and source are closed and the last observation is made. */
  readonly done = new Promise<void>((resolve) => {
    this.resolveDone = resolve;
  });

  constructor(private readonly context: TransferContext) {
    const { parameters, source, socket } = context;
    this.totalBlocks = blockCount(source.size, parameters.blockSize);
    this.awaitingOackAck = parameters.oack.length > 0;
    this.retriesLeft = parameters.retries;
    this.chunkBytes = parameters.blockSize * Math.max(1, Math.floor(READ_AHEAD_BYTES / parameters.blockSize));
    socket.on('message', (message) => this.onDatagram(message));
    socket.on('error', (error: NodeJS.ErrnoException) => {
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

  private observe(event: TransferObservation['event'], failure?: TransferFailure): void {
    const { path, client, source, requestedAt, parameters } = this.context;
    const bytes = Math.min(source.size, this.lastAcked * parameters.blockSize);
    const observation: TransferObservation = { event, path, client, bytes, size: source.size, ms: Math.round(performance.now() - requestedAt) };
    if (failure) observation.failure = failure;
    this.context.observe(observation);
  }

  private onDatagram(message: Buffer): void {
    if (this.finished) return;
    const decoded = decodePacket(message);
    // Anything but ACK and ERROR from the client's TID has no meaning in a read; ignoring it
    // keeps a confused or malicious peer from ending a transfer that is otherwise fine.
    if (!decoded.ok) return;
    const packet = decoded.packet;
    if (packet.type === 'ack') this.onAck(packet.block);
    else if (packet.type === 'error') this.fail({ kind: 'client-abort', code: packet.code, message: packet.message }, false);
  }

  private onAck(wire: number): void {
    if (this.awaitingOackAck) {
      if (wire !== 0) return;
      this.awaitingOackAck = false;
      this.retriesLeft = this.context.parameters.retries;
      this.sendWindow();
      return;
    }
    const acked = absoluteAckedBlock(wire, this.lastAcked, this.lastSent);
    if (acked === undefined || acked === this.lastAcked) return;
    for (let block = this.lastAcked + 1; block <= acked; block++) this.unacked.delete(block);
    this.lastAcked = acked;
    this.retriesLeft = this.context.parameters.retries;
    if (acked === this.totalBlocks) {
      this.finish();
      return;
    }
    // A full window acknowledged moves on; a partial one means the client saw a gap and
    // wants everything after `acked` again (RFC 7440 section 4).
    this.sendWindow();
  }

  private sendOack(): void {
    this.context.socket.send(encodeOack(this.context.parameters.oack));
    this.armTimer();
  }

  private sendWindow(): void {
    this.stopTimer();
    const epoch = ++this.windowEpoch;
    this.sendWindowFrom(epoch).catch((error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      this.fail({ kind: 'read-failed', message }, true);
    });
  }

  private async sendWindowFrom(epoch: number): Promise<void> {
    const last = Math.min(this.lastAcked + this.context.parameters.windowSize, this.totalBlocks);
    for (let block = this.lastAcked + 1; block <= last; block++) {
      const packet = this.unacked.get(block) ?? (await this.makePacket(block));
      if (this.finished || epoch !== this.windowEpoch) return;
      this.context.socket.send(packet);
      if (block > this.lastSent) this.lastSent = block;
    }
    this.armTimer();
  }

  private async makePacket(block: number): Promise<Buffer> {
    const { blockSize } = this.context.parameters;
    const position = (block - 1) * blockSize;
    const length = Math.min(blockSize, this.context.source.size - position);
    for (;;) {
      const { start, data } = this.chunk;
      if (position >= start && position + length <= start + data.length) {
        const packet = encodeData(wireBlock(block), data.subarray(position - start, position - start + length));
        this.unacked.set(block, packet);
        return packet;
      }
      this.filling ??= this.fill(position).finally(() => {
        this.filling = undefined;
      });
      await this.filling;
    }
  }

  private async fill(position: number): Promise<void> {
    const { source } = this.context;
    const data = Buffer.allocUnsafe(Math.min(this.chunkBytes, source.size - position));
    let filled = 0;
    while (filled < data.length) {
      const read = await source.read(data, filled, data.length - filled, position + filled);
      if (read === 0) throw new Error(`file ended at ${position + filled} bytes, before its size ${source.size}: it changed while being served`);
      filled += read;
    }
    this.chunk = { start: position, data };
  }

  private armTimer(): void {
    this.stopTimer();
    this.timer = setTimeout(() => this.onTimeout(), this.context.parameters.timeoutMs);
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private onTimeout(): void {
    this.timer = undefined;
    if (this.finished) return;
    if (this.retriesLeft === 0) {
      const waitingFor = this.awaitingOackAck ? 'the OACK' : `block ${this.lastAcked + 1}`;
      this.fail({ kind: 'timeout', message: `no acknowledgement of ${waitingFor} after ${this.context.parameters.retries} retransmissions` }, true);
      return;
    }
    this.retriesLeft--;
    if (this.awaitingOackAck) this.sendOack();
    else this.sendWindow();
  }

  private fail(failure: TransferFailure, tellClient: boolean): void {
    if (this.finished) return;
    this.close('error', failure, tellClient ? encodeError(ErrorCode.NOT_DEFINED, failure.message) : undefined);
  }

  private finish(): void {
    this.close('complete');
  }

  private close(event: 'complete' | 'error', failure?: TransferFailure, lastWords?: Buffer): void {
    this.finished = true;
    this.windowEpoch++;
    this.stopTimer();
    this.unacked.clear();
    this.observe(event, failure);
    const { socket, source } = this.context;
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
