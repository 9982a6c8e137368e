// The machine a Redfish BMC emulator controls. The emulator owns the Redfish view
// (resources, sessions, ETags, tasks); a machine only knows how to change power and
// remember which device the next boot should use.

export type MachinePowerState = 'On' | 'Off';

export const bootOverrideTargets = ['None', 'Pxe', 'Hdd'] as const;
export type BootOverrideTarget = (typeof bootOverrideTargets)[number];

export const bootOverrideEnabledValues = ['Disabled', 'Once', 'Continuous'] as const;
export type BootOverrideEnabled = (typeof bootOverrideEnabledValues)[number];

export const bootOverrideModes = ['UEFI', 'Legacy'] as const;
export type BootOverrideMode = (typeof bootOverrideModes)[number];

export interface BootOverride {
  target: BootOverrideTarget;
  enabled: BootOverrideEnabled;
  mode: BootOverrideMode;
}

export const noBootOverride: BootOverride = { target: 'None', enabled: 'Disabled', mode: 'Legacy' };

export interface EmulatedMachine {
  powerState(): Promise<MachinePowerState>;
  /** Powers on, booting from the pending boot override if any. No-op when already on. */
  powerOn(): Promise<void>;
  /** Cuts power at once. No-op when already off. */
  forceOff(): Promise<void>;
  /** Asks the OS to shut down (ACPI power button); the machine may stay on. */
  gracefulShutdown(): Promise<void>;
  /** Hard reset while on, booting from the pending boot override if any. */
  reset(): Promise<void>;
  /** The override the next power-on or reset boots from; the emulator clears a `Once` override after using it. */
  setBootOverride(override: BootOverride): Promise<void>;
}
