// An in-memory machine for unit tests: power changes happen at once and every boot
// is recorded with the override it used, so tests can check what a BMC really did.
import { noBootOverride, type BootOverride, type EmulatedMachine, type MachinePowerState } from './machine.js';

export class FakeMachine implements EmulatedMachine {
  private state: MachinePowerState;
  private pendingBootOverride: BootOverride = noBootOverride;
  /** Every boot (power-on or reset), with the override it booted from. */
  readonly boots: BootOverride[] = [];
  /** Every power command received, in order, to tell e.g. a power cycle from a reset. */
  readonly commands: Array<'powerOn' | 'forceOff' | 'gracefulShutdown' | 'reset'> = [];
  private readonly ignoresGracefulShutdown: boolean;

  /** `ignoresGracefulShutdown` models an OS that does not react to the ACPI power button. */
  constructor(opts: { initialState?: MachinePowerState; ignoresGracefulShutdown?: boolean } = {}) {
    this.state = opts.initialState ?? 'Off';
    this.ignoresGracefulShutdown = opts.ignoresGracefulShutdown ?? false;
  }

  get bootOverride(): BootOverride {
    return this.pendingBootOverride;
  }

  async powerState(): Promise<MachinePowerState> {
    return this.state;
  }

  async powerOn(): Promise<void> {
    this.commands.push('powerOn');
    if (this.state === 'On') return;
    this.state = 'On';
    this.boots.push(this.pendingBootOverride);
  }

  async forceOff(): Promise<void> {
    this.commands.push('forceOff');
    this.state = 'Off';
  }

  async gracefulShutdown(): Promise<void> {
    this.commands.push('gracefulShutdown');
    if (!this.ignoresGracefulShutdown) this.state = 'Off';
  }

  async reset(): Promise<void> {
    this.commands.push('reset');
    if (this.state === 'Off') return;
    this.boots.push(this.pendingBootOverride);
  }

  async setBootOverride(override: BootOverride): Promise<void> {
    this.pendingBootOverride = override;
  }
}
