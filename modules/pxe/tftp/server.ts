// The read-only TFTP server: one listening socket takes requests; each read that resolves
// to a file gets its own socket on a fresh port (its TID, RFC 1350 section 4) and runs as
// a ReadTransfer. Writes are refused. Requests that end before a transfer starts (not found,
// denied, malformed, write) are answered from the listening socket, so a boot loader
// probing dozens of absent files costs no sockets.
//
// netascii requests are served byte for byte like octet: boot files are binary, and
// translating line ends would make tsize lie.
//
// Files up to `cacheMaxFileBytes` are read once into a bounded content cache and served to
// every client from memory (cache.ts); the cache checks each file's version on every request.
// Transfers of those files run on transfer threads (threads.ts) when there are any.
import type { Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { decodePacket, encodeError, ErrorCode, Opcode, type RequestPacket } from './codec.js';
import { ContentCache } from './cache.js';
import { parseTftpServerConfig, type TftpServerConfig, type TftpServerConfigInput } from './config.js';
import { describeIgnored, negotiateOptions } from './options.js';
import { bufferSource, directoryResolver, openRegularFile, type TftpPeer, type TftpResolver, type TftpSource } from './resolver.js';
import { bindUdp, openTransferSocket } from './socket.js';
import { isShared, TransferThreads, type RunningTransfer } from './threads.js';
import { ReadTransfer, type TransferObservation } from './transfer.js';

export { TftpBindError } from './socket.js';

export type TftpLogEvent =
  /** Refused with access violation: traversal, a symlink out of the root, permissions, a write request. */
  | 'denied'
  | 'not-found'
  | 'malformed'
  /** Refused for another reason: unsupported mode, server busy. */
  | 'refused'
  | 'option-ignored'
  /** A transfer ended without the file delivered: timeout, client gone or aborting, read failure, shutdown. */
  | 'transfer-failed'
  /** A client read the OACK's tsize and ended the transfer there (OVMF does, then asks again): not a failure. */
  | 'probe'
  /** A resolver or socket failed; the client got error 0. */
  | 'internal';

export interface TftpLogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  event: TftpLogEvent;
  message: string;
  client: TftpPeer;
  path?: string;
}

export interface TftpServerHooks {
  /** Defaults to a directory resolver over `config.root`. */
  resolver?: TftpResolver;
  /** Every transfer reports `start`, then exactly one of `complete`, `probe` or `error`. */
  onTransfer?: (observation: TransferObservation) => void;
  onLog?: (entry: TftpLogEntry) => void;
}

export class TftpServer {
  readonly config: TftpServerConfig;
  private readonly resolver: TftpResolver;
  private listener: Socket | undefined;
  private readonly transfers = new Set<RunningTransfer>();
  private readonly cache: ContentCache | undefined;
  private readonly threads: TransferThreads | undefined;
  private readonly started = { mainThread: 0, threads: 0 };
  /** Requests between arrival and their transfer's start; they count against maxTransfers too. */
  private resolving = 0;
  private closing = false;

  /** Throws TftpConfigError when the configuration is invalid. */
  constructor(
    config: TftpServerConfigInput,
    private readonly hooks: TftpServerHooks = {},
  ) {
    this.config = parseTftpServerConfig(config);
    if (hooks.resolver) this.resolver = hooks.resolver;
    else if (this.config.root !== undefined) this.resolver = directoryResolver(this.config.root);
    else throw new TypeError('TftpServer needs config.root or a resolver');
    if (this.config.cacheMaxBytes > 0) this.cache = new ContentCache(this.config.cacheMaxBytes, this.config.cacheMaxFileBytes);
    if (this.config.transferThreads > 0) {
      this.threads = new TransferThreads(this.config.transferThreads, (message) =>
        this.log({ level: 'error', event: 'internal', message, client: { address: '', port: 0 } }),
      );
    }
  }

  /**
   * Starts the transfer threads now rather than with the first transfer, and waits until they
   * are ready (or failed to start, leaving transfers on the main thread).
   */
  async warmUp(): Promise<void> {
    await this.threads?.warmUp();
  }

  /** Binds the listening socket; rejects with TftpBindError. Resolves to the bound address (the real port when 0 was asked). */
  async start(): Promise<TftpPeer> {
    if (this.listener) throw new Error('TFTP server already started');
    const listener = await bindUdp(this.config.address, this.config.port);
    this.listener = listener;
    listener.on('message', (message, remote) => {
      void this.onRequest(message, { address: remote.address, port: remote.port });
    });
    listener.on('error', (error) => {
      this.log({ level: 'error', event: 'internal', message: `listening socket: ${error.message}`, client: { address: '', port: 0 } });
    });
    const { address, port } = listener.address();
    return { address, port };
  }

  /** Transfers in progress, including requests still being resolved. */
  get activeTransfers(): number {
    return this.transfers.size + this.resolving;
  }

  /** Stops listening, tells every client in a transfer that the server is going away, and waits for all of them to close. */
  async close(): Promise<void> {
    this.closing = true;
    const listener = this.listener;
    this.listener = undefined;
    const listenerClosed = listener ? new Promise<void>((resolve) => listener.close(() => resolve())) : Promise.resolve();
    const transfers = [...this.transfers];
    for (const transfer of transfers) transfer.abort();
    await Promise.all([listenerClosed, ...transfers.map((t) => t.done), this.threads?.close()]);
  }

  private log(entry: TftpLogEntry): void {
    try {
      this.hooks.onLog?.(entry);
    } catch {
      // A broken log hook must not take transfers down with it.
    }
  }

  /** Transfers started so far, by where they ran; and transfer threads ready now. */
  get transferStats(): { mainThread: number; threads: number; threadsReady: number } {
    return { ...this.started, threadsReady: this.threads?.readyThreads ?? 0 };
  }

  /** Files in the content cache, their bytes, and how often a request found its file there. */
  get cacheStats() {
    return this.cache?.stats() ?? { entries: 0, bytes: 0, hits: 0, misses: 0 };
  }

  private observe(observation: TransferObservation): void {
    const { client, path } = observation;
    if (observation.event === 'probe') {
      const { code, message } = observation.clientError ?? { code: 0, message: '' };
      this.log({ level: 'debug', event: 'probe', message: `client read the size (${observation.size} bytes) and ended with error ${code} ${JSON.stringify(message)}`, client, path });
    } else if (observation.event === 'error' && observation.failure) {
      const { kind, message } = observation.failure;
      this.log({ level: kind === 'shutdown' ? 'info' : 'warn', event: 'transfer-failed', message: `${kind}: ${message} (${observation.bytes} of ${observation.size} bytes acknowledged)`, client, path });
    }
    try {
      this.hooks.onTransfer?.(observation);
    } catch (error) {
      this.log({ level: 'error', event: 'internal', message: `onTransfer hook threw: ${String(error)}`, client: observation.client, path: observation.path });
    }
  }

  private refuse(client: TftpPeer, code: ErrorCode, message: string): void {
    this.listener?.send(encodeError(code, message), client.port, client.address);
  }

  private async onRequest(message: Buffer, client: TftpPeer): Promise<void> {
    const requestedAt = performance.now();
    const decoded = decodePacket(message);
    if (!decoded.ok) {
      const isRequest = decoded.opcode === Opcode.RRQ || decoded.opcode === Opcode.WRQ;
      this.log({ level: 'debug', event: 'malformed', message: decoded.message, client });
      // Only a request deserves an answer; stray garbage on port 69 gets none.
      if (isRequest) this.refuse(client, ErrorCode.ILLEGAL_OPERATION, decoded.message);
      return;
    }
    const request = decoded.packet;
    if (request.type !== 'rrq' && request.type !== 'wrq') {
      this.log({ level: 'debug', event: 'malformed', message: `${request.type.toUpperCase()} sent to the listening port`, client });
      return;
    }
    if (request.type === 'wrq') {
      this.log({ level: 'warn', event: 'denied', message: 'write request refused: the server is read-only', client, path: request.filename });
      this.refuse(client, ErrorCode.ACCESS_VIOLATION, 'Access violation: server is read-only');
      return;
    }
    if (request.mode === 'mail') {
      this.log({ level: 'info', event: 'refused', message: 'mail mode is not supported', client, path: request.filename });
      this.refuse(client, ErrorCode.ILLEGAL_OPERATION, 'mail mode not supported');
      return;
    }
    if (this.closing) return;
    if (this.activeTransfers >= this.config.maxTransfers) {
      this.log({ level: 'warn', event: 'refused', message: `busy: ${this.activeTransfers} transfers in progress`, client, path: request.filename });
      this.refuse(client, ErrorCode.NOT_DEFINED, 'Server busy, try again');
      return;
    }
    this.resolving++;
    try {
      await this.serve(request, client, requestedAt);
    } finally {
      this.resolving--;
    }
  }

  /** Resolves the file, then starts its transfer; any refusal is answered and logged here. */
  private async serve(request: RequestPacket, client: TftpPeer, requestedAt: number): Promise<void> {
    const path = request.filename;
    let source: TftpSource;
    try {
      const answer = await this.resolver.resolve({ path, client });
      const resolution = answer.kind === 'file' ? await openRegularFile(answer.path) : answer;
      if (resolution.kind === 'not-found') {
        this.log({ level: 'info', event: 'not-found', message: 'file not found', client, path });
        this.refuse(client, ErrorCode.FILE_NOT_FOUND, 'File not found');
        return;
      }
      if (resolution.kind === 'denied') {
        this.log({ level: 'warn', event: 'denied', message: resolution.reason, client, path });
        this.refuse(client, ErrorCode.ACCESS_VIOLATION, 'Access violation');
        return;
      }
      source = resolution.source;
    } catch (error) {
      this.log({ level: 'error', event: 'internal', message: `resolving failed: ${String(error)}`, client, path });
      this.refuse(client, ErrorCode.NOT_DEFINED, 'Internal error');
      return;
    }
    const cached = source.contents === undefined ? this.cache?.contents(source) : undefined;
    if (cached !== undefined) {
      try {
        const contents = await cached;
        await source.close().catch(() => undefined);
        source = bufferSource(contents);
      } catch (error) {
        await source.close().catch(() => undefined);
        this.log({ level: 'error', event: 'internal', message: `reading failed: ${String(error)}`, client, path });
        this.refuse(client, ErrorCode.NOT_DEFINED, 'Internal error');
        return;
      }
    }

    const negotiated = negotiateOptions(request.options, this.config, source.size);
    // One entry per request, however many options it carried: a request of thousands once wrote as many entries.
    if (negotiated.ignored.length > 0) {
      this.log({ level: 'info', event: 'option-ignored', message: describeIgnored(negotiated.ignored), client, path });
    }
    const parameters = {
      blockSize: negotiated.blockSize,
      windowSize: negotiated.windowSize,
      timeoutMs: negotiated.timeoutMs ?? this.config.timeoutMs,
      retries: this.config.retries,
      oack: negotiated.accepted,
    };
    if (this.closing) {
      await source.close().catch(() => undefined);
      return;
    }
    const onThread =
      source.contents !== undefined && isShared(source.contents)
        ? this.threads?.start(
            { address: this.config.address, client, path, requestedAtEpochMs: performance.timeOrigin + requestedAt, parameters, contents: source.contents },
            (observation) => this.observe(observation),
          )
        : undefined;
    if (onThread !== undefined) {
      const started = await onThread;
      if (!started.ok) {
        if (this.closing) return;
        this.log({ level: 'error', event: 'internal', message: `no transfer socket: ${started.message}`, client, path });
        this.refuse(client, ErrorCode.NOT_DEFINED, 'Internal error');
        return;
      }
      this.started.threads++;
      this.track(started.transfer);
      return;
    }
    let socket: Socket;
    try {
      if (this.closing) throw new Error('server is shutting down');
      socket = await openTransferSocket(this.config.address, client);
    } catch (error) {
      await source.close().catch(() => undefined);
      this.log({ level: 'error', event: 'internal', message: `no transfer socket: ${String(error)}`, client, path });
      this.refuse(client, ErrorCode.NOT_DEFINED, 'Internal error');
      return;
    }
    const transfer = new ReadTransfer({
      socket,
      source,
      path,
      client,
      requestedAt,
      parameters,
      observe: (observation) => this.observe(observation),
    });
    this.started.mainThread++;
    this.track(transfer);
    transfer.start();
  }

  private track(transfer: RunningTransfer): void {
    this.transfers.add(transfer);
    void transfer.done.then(() => this.transfers.delete(transfer));
  }
}
