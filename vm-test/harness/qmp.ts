// A minimal QMP client: QEMU's JSON machine protocol on a unix socket, one JSON object a line.
// Enough to reset, power down, quit and query a VM, and to wait for its events.
import { connect, type Socket } from 'node:net';
import { sleep } from './processes.js';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export interface QmpStatus {
  running: boolean;
  status: string;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    description: string,
  ) {
    super(`QMP ${command} failed: ${errorClass}: ${description}`);
  }
}

export class Qmp {
  private buffered = '';
  private nextId = 1;
  private readonly pending = new Map<number, Pending & { command: string }>();
  private readonly eventListeners = new Set<(event: QmpEvent) => void>();
  private greeting?: Pending;
  /** Every event received since connecting, oldest first. */
  readonly events: QmpEvent[] = [];

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('close', () => this.failAll(new Error('QMP connection closed')));
    socket.on('error', (error) => this.failAll(error));
  }

  /**
   * Connects to a QMP socket, retrying until QEMU has created it, and leaves capabilities
   * negotiation mode so commands can be executed.
   */
  static async connect(socketPath: string, timeoutMs = 10_000): Promise<Qmp> {
    const deadline = Date.now() + timeoutMs;
    const socket = await pollUntilAsync(`QMP socket ${socketPath}`, timeoutMs, () => tryConnect(socketPath));
    const qmp = new Qmp(socket);
    await withDeadline(
      new Promise((resolve, reject) => (qmp.greeting = { resolve, reject })),
      Math.max(0, deadline - Date.now()),
      'QMP greeting',
    );
    await qmp.execute('qmp_capabilities');
    return qmp;
  }

  /** Executes a command and resolves with its `return` value; rejects with QmpError on `error`. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, resolve: resolve as (value: unknown) => void, reject });
      this.socket.write(`${JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id })}\n`);
    });
  }

  queryStatus(): Promise<QmpStatus> {
    return this.execute<QmpStatus>('query-status');
  }

  /** Calls `listener` for every event from now on; returns a function that stops it. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Resolves with the first event named `name` received from now on. */
  waitForEvent(name: string, timeoutMs: number): Promise<QmpEvent> {
    let stop = (): void => {};
    const event = new Promise<QmpEvent>((resolve) => {
      stop = this.onEvent((received) => {
        if (received.event === name) resolve(received);
      });
    });
    return withDeadline(event, timeoutMs, `QMP event ${name}`).finally(stop);
  }

  close(): void {
    this.socket.destroy();
  }

  private receive(chunk: string): void {
    this.buffered += chunk;
    let newline: number;
    while ((newline = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, newline).trim();
      this.buffered = this.buffered.slice(newline + 1);
      if (line) this.dispatch(JSON.parse(line) as Record<string, unknown>);
    }
  }

  private dispatch(message: Record<string, unknown>): void {
    if ('QMP' in message) {
      this.greeting?.resolve(message);
      this.greeting = undefined;
    } else if ('event' in message) {
      const event = message as unknown as QmpEvent;
      this.events.push(event);
      for (const listener of this.eventListeners) listener(event);
    } else if (typeof message.id === 'number') {
      const pending = this.pending.get(message.id);
      if (!pending) return;
      this.pending.delete(message.id);
      if ('error' in message) {
        const error = message.error as { class: string; desc: string };
        pending.reject(new QmpError(pending.command, error.class, error.desc));
      } else {
        pending.resolve(message.return);
      }
    }
  }

  private failAll(error: Error): void {
    this.greeting?.reject(error);
    this.greeting = undefined;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}

function tryConnect(socketPath: string): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.once('connect', () => resolve(socket));
    socket.once('error', () => {
      socket.destroy();
      resolve(undefined);
    });
  });
}

async function pollUntilAsync<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

function withDeadline<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
