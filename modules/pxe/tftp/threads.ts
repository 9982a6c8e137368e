// Transfer threads: transfers of files held in memory (the content cache) run on a few worker
// threads, each with its own event loop and its own transfer sockets, instead of all on the
// thread that also runs the engine, the API and DHCP. Sending a block is a system call of tens
// of microseconds; one thread serialises every client's, while threads use every core (as
// tftpd-hpa's process per transfer does) and keep a boot storm off the main event loop.
//
// The file bytes are shared, not copied: the cache keeps them in SharedArrayBuffers. The
// listening socket, resolution, the cache and option negotiation stay on the main thread.
// Threads start with the first transfer that could use one; until one is ready (or if none
// can start) the server runs transfers itself, so a slow or broken thread start costs speed,
// never service.
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import type { TftpPeer } from './resolver.js';
import type { TransferObservation, TransferParameters } from './transfer.js';

export interface ThreadTransferRequest {
  /** The server's address: the thread binds the transfer socket there. */
  address: string;
  client: TftpPeer;
  path: string;
  /** performance.timeOrigin + performance.now() when the request arrived. */
  requestedAtEpochMs: number;
  parameters: TransferParameters;
  /** The whole file, backed by a SharedArrayBuffer. */
  contents: Uint8Array;
}

export type ThreadInbound = { type: 'start'; id: number; request: ThreadTransferRequest } | { type: 'abort'; id: number };

export type ThreadOutbound =
  | { type: 'ready' }
  | { type: 'started'; id: number }
  | { type: 'open-failed'; id: number; message: string }
  | { type: 'observation'; id: number; observation: TransferObservation }
  | { type: 'done'; id: number };

/** A transfer in progress, wherever it runs. */
export interface RunningTransfer {
  abort(): void;
  readonly done: Promise<void>;
}

export type ThreadStart = { ok: true; transfer: RunningTransfer } | { ok: false; message: string };

interface Remote {
  readonly id: number;
  readonly request: ThreadTransferRequest;
  readonly observe: (observation: TransferObservation) => void;
  readonly transfer: RunningTransfer;
  /** Settles start()'s promise: the thread opened the socket, or could not. */
  readonly settleStart: (result: ThreadStart) => void;
  readonly resolveDone: () => void;
  started: boolean;
  /** A terminal observation (complete, probe, error) was reported. */
  ended: boolean;
}

interface Thread {
  readonly worker: Worker;
  /** Resolves when the thread can take transfers, or when it exits without getting there. */
  readonly settled: Promise<void>;
  ready: boolean;
  readonly remotes: Map<number, Remote>;
}

/** True when `data` can be handed to a thread without a copy. */
export function isShared(data: Uint8Array): boolean {
  return data.buffer instanceof SharedArrayBuffer;
}

function spawnWorker(): Worker {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    // A source checkout (tsx, vitest): the thread registers tsx before loading worker.ts.
    return new Worker(new URL('./worker-entry.mjs', here), { workerData: { entry: new URL('./worker.ts', here).href } });
  }
  return new Worker(new URL('./worker.js', here));
}

export class TransferThreads {
  private readonly threads: Thread[] = [];
  private spawned = false;
  private closing = false;
  /** Set when a thread died before it was ready: the server runs every transfer itself from then on. */
  private broken = false;
  private nextId = 1;

  constructor(
    private readonly count: number,
    private readonly onThreadError: (message: string) => void,
  ) {}

  /** Threads ready to take transfers. */
  get readyThreads(): number {
    return this.threads.filter((t) => t.ready).length;
  }

  /** Starts the threads now and resolves once each is ready (or gave up); for callers that want threads from the first transfer. */
  async warmUp(): Promise<void> {
    this.spawnAll();
    await Promise.all(this.threads.map((t) => t.settled));
  }

  /**
   * Starts a transfer on the least busy ready thread. Undefined when no thread is ready: the
   * caller runs the transfer itself. The result says whether the thread could open the socket.
   */
  start(request: ThreadTransferRequest, observe: (observation: TransferObservation) => void): Promise<ThreadStart> | undefined {
    if (this.closing || this.broken) return undefined;
    this.spawnAll();
    let thread: Thread | undefined;
    for (const candidate of this.threads) {
      if (candidate.ready && (thread === undefined || candidate.remotes.size < thread.remotes.size)) thread = candidate;
    }
    if (thread === undefined) return undefined;
    const chosen = thread;
    const id = this.nextId++;
    let resolveDone!: () => void;
    const done = new Promise<void>((resolve) => {
      resolveDone = resolve;
    });
    return new Promise<ThreadStart>((settleStart) => {
      const transfer: RunningTransfer = { abort: () => chosen.worker.postMessage({ type: 'abort', id } satisfies ThreadInbound), done };
      chosen.remotes.set(id, { id, request, observe, transfer, settleStart, resolveDone, started: false, ended: false });
      chosen.worker.postMessage({ type: 'start', id, request } satisfies ThreadInbound);
    });
  }

  /** Aborts every transfer, waits for them to close, and stops the threads. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(
      [...this.threads].map(async (thread) => {
        const remotes = [...thread.remotes.values()];
        for (const remote of remotes) remote.transfer.abort();
        await Promise.all(remotes.map((remote) => remote.transfer.done));
        await thread.worker.terminate();
      }),
    );
  }

  private spawnAll(): void {
    if (this.spawned) return;
    this.spawned = true;
    for (let i = 0; i < this.count; i++) this.spawn();
  }

  private spawn(): void {
    const worker = spawnWorker();
    let markSettled!: () => void;
    const thread: Thread = { worker, ready: false, remotes: new Map(), settled: new Promise((resolve) => (markSettled = resolve)) };
    this.threads.push(thread);
    let lastError: Error | undefined;
    worker.on('message', (message: ThreadOutbound) => {
      if (message.type === 'ready') {
        thread.ready = true;
        markSettled();
      } else this.onMessage(thread, message);
    });
    worker.on('error', (error) => {
      lastError = error;
    });
    worker.on('exit', (code) => {
      markSettled();
      this.threads.splice(this.threads.indexOf(thread), 1);
      const why = lastError ? lastError.message : `exit code ${code}`;
      for (const remote of thread.remotes.values()) this.lose(remote, why);
      thread.remotes.clear();
      if (this.closing) return;
      this.onThreadError(`TFTP transfer thread stopped: ${why}`);
      // A thread that never came up will not the next time either: run transfers on the main thread.
      if (thread.ready) this.spawn();
      else this.broken = true;
    });
  }

  private onMessage(thread: Thread, message: Exclude<ThreadOutbound, { type: 'ready' }>): void {
    const remote = thread.remotes.get(message.id);
    if (remote === undefined) return;
    switch (message.type) {
      case 'started':
        remote.started = true;
        remote.settleStart({ ok: true, transfer: remote.transfer });
        break;
      case 'open-failed':
        thread.remotes.delete(remote.id);
        remote.settleStart({ ok: false, message: message.message });
        remote.resolveDone();
        break;
      case 'observation':
        if (message.observation.event !== 'start') remote.ended = true;
        remote.observe(message.observation);
        break;
      case 'done':
        thread.remotes.delete(remote.id);
        remote.resolveDone();
        break;
    }
  }

  /** A thread died under a transfer: it ends as failed, as it would have had it failed on its own. */
  private lose(remote: Remote, why: string): void {
    const message = `transfer thread stopped: ${why}`;
    if (!remote.started) remote.settleStart({ ok: false, message });
    else if (!remote.ended) {
      const { path, client, contents, requestedAtEpochMs } = remote.request;
      remote.observe({
        event: 'error',
        path,
        client,
        bytes: 0,
        size: contents.byteLength,
        ms: Math.round(performance.timeOrigin + performance.now() - requestedAtEpochMs),
        failure: { kind: 'internal', message },
      });
    }
    remote.resolveDone();
  }
}
