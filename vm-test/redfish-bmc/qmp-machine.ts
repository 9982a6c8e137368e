// A machine that is a QEMU process, driven over its QMP unix socket. Power on is the
// harness's job (it knows the VM's disks, network and firmware), so it is a callback;
// everything else is QMP: `query-status`, `system_powerdown`, `system_reset`, `quit`.
import { createConnection } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { noBootOverride, type BootOverride, type EmulatedMachine, type MachinePowerState } from './machine.js';

export interface QmpMachineOptions {
  /** The socket QEMU serves QMP on: `-qmp unix:PATH,server=on,wait=off`. */
  qmpSocketPath: string;
  /**
   * Starts QEMU in the background, booting from `bootOverride` (e.g. `-boot once=n` for Pxe),
   * with QMP on `qmpSocketPath`. May resolve before QMP answers; `powerOn` waits for it.
   */
  startQemu(bootOverride: BootOverride): Promise<void>;
  /** Deadline of one QMP exchange. */
  commandTimeoutMs?: number;
  /** Deadline for a started QEMU to answer QMP, and for a quit QEMU to stop answering. */
  transitionTimeoutMs?: number;
}

export class QmpError extends Error {
  override name = 'QmpError';
}

/** QMP could not be reached at all: no QEMU is serving the socket. */
class QmpUnavailableError extends QmpError {
  override name = 'QmpUnavailableError';
}

/** QEMU dropped the connection after its greeting: it failed, or it is exiting (e.g. after `quit`). */
class QmpConnectionLostError extends QmpError {
  override name = 'QmpConnectionLostError';
}

const pollIntervalMs = 50;

export class QmpMachine implements EmulatedMachine {
  private pendingBootOverride: BootOverride = noBootOverride;
  /** The override QEMU was last started with; a QEMU the harness started itself is taken to have none. */
  private startedWith: BootOverride = noBootOverride;
  private readonly commandTimeoutMs: number;
  private readonly transitionTimeoutMs: number;
  /** QEMU serves one QMP client at a time; sessions wait their turn here instead of in its listen backlog. */
  private sessionQueue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: QmpMachineOptions) {
    this.commandTimeoutMs = options.commandTimeoutMs ?? 5_000;
    this.transitionTimeoutMs = options.transitionTimeoutMs ?? 30_000;
  }

  async powerState(): Promise<MachinePowerState> {
    const status = await this.status();
    // `shutdown`: the guest powered itself off but QEMU (run with -no-shutdown) is still there.
    return status === undefined || status === 'shutdown' ? 'Off' : 'On';
  }

  async powerOn(): Promise<void> {
    const status = await this.status();
    if (status !== undefined && status !== 'shutdown') return;
    if (status === 'shutdown') await this.quitAndWait();
    await this.start();
  }

  async forceOff(): Promise<void> {
    if ((await this.status()) === undefined) return;
    await this.quitAndWait();
  }

  async gracefulShutdown(): Promise<void> {
    if ((await this.status()) === undefined) return;
    await this.execute('system_powerdown');
  }

  async reset(): Promise<void> {
    if ((await this.status()) === undefined) return;
    if (this.resetInPlaceHonorsOverride()) {
      await this.execute('system_reset');
      return;
    }
    await this.quitAndWait();
    await this.start();
  }

  async setBootOverride(override: BootOverride): Promise<void> {
    this.pendingBootOverride = override;
  }

  private async start(): Promise<void> {
    const bootOverride = this.pendingBootOverride;
    await this.options.startQemu(bootOverride);
    this.startedWith = bootOverride;
    await this.waitFor('QEMU to answer QMP after start', async () => (await this.status()) !== undefined);
  }

  /**
   * QEMU's boot device is fixed by how it was started, so `system_reset` boots as the pending
   * override asks only when QEMU was started with no override and none is pending, or with the
   * same continuous one. Otherwise QEMU must be started again.
   */
  private resetInPlaceHonorsOverride(): boolean {
    const started = this.startedWith;
    const pending = this.pendingBootOverride;
    if (pending.enabled === 'Disabled') return started.enabled === 'Disabled';
    return (
      pending.enabled === 'Continuous' &&
      started.enabled === 'Continuous' &&
      started.target === pending.target &&
      started.mode === pending.mode
    );
  }

  /**
   * QEMU's run state (`running`, `paused`, `shutdown`, …), or undefined when no QEMU serves the
   * socket. A QEMU that greets and then drops the connection is on its way out (a `quit` races
   * the next poll), so that too counts as no QEMU.
   */
  private async status(): Promise<string | undefined> {
    try {
      const reply = await this.execute('query-status');
      const status = (reply as { status?: unknown } | null)?.status;
      if (typeof status !== 'string') throw new QmpError(`query-status returned ${JSON.stringify(reply)}`);
      return status;
    } catch (error) {
      if (error instanceof QmpUnavailableError || error instanceof QmpConnectionLostError) return undefined;
      throw error;
    }
  }

  private async quitAndWait(): Promise<void> {
    try {
      await this.execute('quit');
    } catch (error) {
      // QEMU may exit before its reply to `quit` is read; the wait below tells whether it went.
      if (!(error instanceof QmpError)) throw error;
    }
    await this.waitFor('QEMU to exit after quit', async () => (await this.status()) === undefined);
  }

  private async waitFor(what: string, condition: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + this.transitionTimeoutMs;
    while (!(await condition())) {
      if (Date.now() > deadline) throw new QmpError(`timed out after ${this.transitionTimeoutMs} ms waiting for ${what}`);
      await sleep(pollIntervalMs);
    }
  }

  private execute(command: string): Promise<unknown> {
    const session = this.sessionQueue.then(() => this.session(command));
    this.sessionQueue = session.catch(() => undefined);
    return session;
  }

  /** One QMP session: greeting, capabilities negotiation, one command; returns the command's `return`. */
  private session(command: string): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      const socket = createConnection(this.options.qmpSocketPath);
      let buffered = '';
      let stage: 'greeting' | 'capabilities' | 'command' = 'greeting';
      let settled = false;
      const finish = (error: Error | undefined, value?: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        if (error) reject(error);
        else resolve(value);
      };
      const timer = setTimeout(
        () => finish(new QmpError(`QMP ${command}: no reply within ${this.commandTimeoutMs} ms`)),
        this.commandTimeoutMs,
      );
      // Before the greeting, a refused, reset or closed connection means no QEMU is serving
      // the socket (not started, or exiting); later it means QEMU went away mid-command.
      socket.on('error', (error: Error) => {
        finish(
          stage === 'greeting'
            ? new QmpUnavailableError(error.message)
            : new QmpConnectionLostError(`QMP ${command}: ${error.message}`),
        );
      });
      socket.on('close', () => {
        finish(
          stage === 'greeting'
            ? new QmpUnavailableError('QEMU closed the QMP connection before its greeting')
            : new QmpConnectionLostError(`QMP ${command}: QEMU closed the connection before replying`),
        );
      });
      socket.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('utf8');
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (line === '') continue;
          let message: Record<string, unknown>;
          try {
            message = JSON.parse(line) as Record<string, unknown>;
          } catch {
            finish(new QmpError(`QMP ${command}: not JSON: ${line.slice(0, 80)}`));
            return;
          }
          if ('event' in message) continue;
          if (stage === 'greeting') {
            if (!('QMP' in message)) return finish(new QmpError(`QMP ${command}: no greeting, got ${line.slice(0, 80)}`));
            stage = 'capabilities';
            socket.write(`${JSON.stringify({ execute: 'qmp_capabilities' })}\n`);
            continue;
          }
          if ('error' in message) return finish(new QmpError(`QMP ${command}: ${JSON.stringify(message['error'])}`));
          if (!('return' in message)) return finish(new QmpError(`QMP ${command}: unexpected ${line.slice(0, 80)}`));
          if (stage === 'capabilities') {
            stage = 'command';
            socket.write(`${JSON.stringify({ execute: command })}\n`);
            continue;
          }
          return finish(undefined, message['return']);
        }
      });
    });
  }
}
