// The standard facets of a node: power, boot, run and image. Modules own them per node (the IPMI,
// Redfish or sim module owns power; pxe owns boot; the agent module owns run and image) and drive
// them through these machines, so every node is planned by the same rules whoever owns its facets.
import { and, not, or, stateIn } from 'xstate';
import type { DesiredState } from '../domain/state.js';
import type { FacetDefinition, Target } from '../engine/facet.js';

const inRun = (...values: string[]) => or(values.map((v) => stateIn({ run: v })));
const inBoot = (...values: string[]) => or(values.map((v) => stateIn({ boot: v })));
const powerOff = stateIn({ power: 'off' });
const powerOn = stateIn({ power: 'on' });
const NETWORK_BOOT = ['armed', 'dhcp', 'loader', 'kernel'];
// Regions see every event; these guards make a region follow a run step only when that step is
// really taken (xstate would otherwise let the image region alone accept run.boot).
const booting = stateIn({ run: 'booting' });
const drained = stateIn({ run: 'drained' });
const onBoot = { target: 'kernel', guard: booting };
const onReboot = { target: 'idle', guard: drained };

const SECOND = 1000;

export const powerFacet: FacetDefinition = {
  name: 'power',
  values: ['unknown', 'off', 'on', 'error'],
  initial: 'unknown',
  failureValues: ['error'],
  observedOnly: ['unknown'],
  steps: {
    'power.probe': { kind: 'action', confirms: ['off', 'on'], timeoutMs: 30 * SECOND, failsTo: 'error', serialize: 'bmc', explain: 'read the power state from the BMC' },
    'power.on': { kind: 'action', confirms: ['on'], timeoutMs: 60 * SECOND, failsTo: 'error', serialize: 'bmc', explain: 'power the node on through its BMC' },
    'power.off': { kind: 'action', confirms: ['off'], timeoutMs: 120 * SECOND, failsTo: 'error', serialize: 'bmc', explain: 'power the node off through its BMC (graceful, then forced)' },
  },
  states: {
    unknown: { on: { 'power.probe': 'off' } },
    error: { on: { 'power.probe': 'off' } },
    off: { on: { 'power.on': 'on' } },
    // A running workload is drained before its power is cut.
    on: { on: { 'power.off': { target: 'off', guard: not(inRun('ready', 'draining')) } } },
  },
};

export const bootFacet: FacetDefinition = {
  name: 'boot',
  values: ['unknown', 'idle', 'armed', 'dhcp', 'loader', 'kernel', 'disk'],
  initial: 'unknown',
  failureValues: ['unknown'],
  observedOnly: ['dhcp', 'loader'],
  steps: {
    'boot.arm': { kind: 'action', confirms: ['armed'], timeoutMs: 30 * SECOND, failsTo: 'unknown', serialize: 'bmc', explain: 'prepare a network boot of the desired image (DHCP reservation, iPXE script, next boot device PXE)' },
    'boot.disk': { kind: 'action', confirms: ['disk'], timeoutMs: 30 * SECOND, failsTo: 'unknown', serialize: 'bmc', explain: 'make the next boot go to the local disk' },
  },
  states: {
    ...Object.fromEntries(
      ['unknown', 'idle', 'kernel', 'disk'].map((value) => [
        value,
        {
          on: {
            'boot.arm': { target: 'armed', guard: not(inRun('booting')) },
            ...(value === 'disk' ? {} : { 'boot.disk': { target: 'disk', guard: not(inRun('booting')) } }),
            ...(value === 'kernel' ? { 'run.reboot': onReboot } : {}),
          },
          // A boot that was under way or done is over once the node is off: the one-time arming is spent.
          ...(value === 'kernel' ? { always: { guard: powerOff, target: 'idle' } } : {}),
        },
      ]),
    ),
    armed: { on: { 'run.boot': onBoot, 'boot.disk': { target: 'disk', guard: not(inRun('booting')) } } },
    dhcp: { on: { 'run.boot': onBoot, 'run.reboot': onReboot }, always: { guard: powerOff, target: 'idle' } },
    loader: { on: { 'run.boot': onBoot, 'run.reboot': onReboot }, always: { guard: powerOff, target: 'idle' } },
  },
  abstract(observation, desired) {
    if (!observation) return 'unknown';
    // Armed for another image than the one desired now is as good as not armed.
    if (observation.value === 'armed' && desired.image && observation.detail !== desired.image) return 'idle';
    return observation.value;
  },
};

const offWhenPowerOff = { guard: powerOff, target: 'off' };

export const runFacet: FacetDefinition = {
  name: 'run',
  values: ['unknown', 'off', 'booting', 'ready', 'draining', 'drained', 'lost', 'hung'],
  initial: 'unknown',
  failureValues: ['lost', 'hung'],
  observedOnly: ['unknown', 'lost', 'draining'],
  steps: {
    'run.boot': { kind: 'await', confirms: ['ready'], timeoutMs: 300 * SECOND, failsTo: 'hung', explain: 'wait for the node to boot and its agent to say hello' },
    'run.drain': { kind: 'action', confirms: ['drained'], progress: ['draining'], timeoutMs: 600 * SECOND, failsTo: 'hung', explain: 'ask the agent to stop the workload and report drained' },
    'run.reboot': { kind: 'action', confirms: ['booting'], timeoutMs: 120 * SECOND, failsTo: 'hung', explain: 'ask the agent to reboot the node' },
  },
  states: {
    unknown: { always: offWhenPowerOff },
    // Power on and nothing reported yet: the node is booting.
    off: { always: { guard: powerOn, target: 'booting' } },
    booting: {
      on: { 'run.boot': { target: 'ready', guard: inBoot(...NETWORK_BOOT, 'disk') } },
      always: offWhenPowerOff,
    },
    ready: { on: { 'run.drain': 'drained' }, always: offWhenPowerOff },
    draining: { on: { 'run.drain': 'drained' }, always: offWhenPowerOff },
    drained: { on: { 'run.reboot': 'booting' }, always: offWhenPowerOff },
    lost: { always: offWhenPowerOff },
    hung: { always: offWhenPowerOff },
  },
};

const imageOnBoot = [
  { guard: and([booting, inBoot(...NETWORK_BOOT)]), target: 'current' },
  { guard: and([booting, inBoot('disk')]), target: 'unknown' },
];

export const imageFacet: FacetDefinition = {
  name: 'image',
  values: ['unknown', 'stale', 'current'],
  initial: 'unknown',
  failureValues: [],
  observedOnly: ['stale'],
  steps: {},
  states: {
    unknown: { on: { 'run.boot': imageOnBoot } },
    stale: { on: { 'run.boot': imageOnBoot } },
    current: { on: { 'run.boot': imageOnBoot } },
  },
  abstract(observation, desired) {
    if (!observation) return 'unknown';
    if (!desired.image) return 'current';
    return observation.value === desired.image ? 'current' : 'stale';
  },
};

export const standardFacets: FacetDefinition[] = [powerFacet, bootFacet, runFacet, imageFacet];

/** What desired state asks of the standard facets. An image implies a network boot to ready. */
export function standardTarget(desired: DesiredState): Target {
  const target: Target = {};
  if (desired.power) target.power = [desired.power];
  if (desired.run === 'ready') target.run = ['ready'];
  if (desired.boot === 'network') target.boot = [...NETWORK_BOOT];
  if (desired.boot === 'disk') target.boot = ['disk'];
  if (desired.image && desired.power !== 'off' && desired.boot !== 'disk') {
    target.image = ['current'];
    target.run = ['ready'];
  }
  return target;
}

