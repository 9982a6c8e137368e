// The standard facets of a node: power, boot, run and image. Modules own them per node (the IPMI,
// Redfish or sim module owns power; pxe owns boot; the agent module owns run and image) and drive
// them through these machines, so every node is planned by the same rules whoever owns its facets.
// Each reads as data: values, steps, named guards, transitions, and what a desired value asks for.
import { and, not, or, stateIn } from 'xstate';
import { defineFacet, type FacetDefinition, type Target } from '../engine/facet.js';

const inRun = (...values: string[]) => or(values.map((v) => stateIn({ run: v })));
const inBoot = (...values: string[]) => or(values.map((v) => stateIn({ boot: v })));

/** The boot values of a network boot under way or done, in the order the boot facet observes them. */
export const NETWORK_BOOT_STAGES = ['armed', 'dhcp', 'loader', 'kernel'] as const;
/**
 * The boot values of a network boot of the deploy environment (the RAM image whose agent writes a
 * disk, src/facets/disk.ts): `deploy` while it is armed or under way (the stage is the detail),
 * `deployed` once its kernel was served. Kept apart from the image's own network boot because
 * what that boot runs is not the desired image: the planner must not count it as current.
 */
export const DEPLOY_BOOT_STAGES = ['deploy', 'deployed'] as const;

const SECOND = 1000;

export const powerFacet = defineFacet({
  name: 'power',
  values: ['unknown', 'off', 'on', 'error'],
  initial: 'unknown',
  failureValues: ['error'],
  observedOnly: ['unknown'],
  // Guards are named after what they say of the facet that declares them; any facet's transitions may use them.
  guards: {
    powerOff: stateIn({ power: 'off' }),
    powerOn: stateIn({ power: 'on' }),
  },
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
    on: { on: { 'power.off': { target: 'off', guard: 'workloadNotUp' } } },
  },
  desired: {
    accepts: ['on', 'off'],
    target: (value) => ({ power: [value] }),
  },
});

// `kexec`: the running OS loaded the armed boot and kexec'd into it (run.kexec); a boot done, like `kernel`.
const idleStates = ['unknown', 'idle', 'kernel', 'kexec', 'disk', 'deployed'] as const;
const bootDone = new Set<string>(['kernel', 'kexec', 'deployed']);
export const bootFacet = defineFacet({
  name: 'boot',
  values: ['unknown', 'idle', 'armed', 'dhcp', 'loader', 'kernel', 'kexec', 'disk', 'deploy', 'deployed'],
  initial: 'unknown',
  failureValues: ['unknown'],
  // kexec is also reached by run.kexec, but only where a module declares the kexec facet.
  observedOnly: ['dhcp', 'loader', 'kexec'],
  guards: {
    bootReached: inBoot(...NETWORK_BOOT_STAGES, ...DEPLOY_BOOT_STAGES, 'kexec', 'disk'),
    networkBooted: inBoot(...NETWORK_BOOT_STAGES),
    diskBooted: inBoot('disk'),
    deployBooted: inBoot(...DEPLOY_BOOT_STAGES),
    kexecBooted: inBoot('kexec'),
  },
  steps: {
    'boot.arm': { kind: 'action', confirms: ['armed'], timeoutMs: 30 * SECOND, failsTo: 'unknown', serialize: 'bmc', explain: 'prepare a network boot of the desired image (DHCP reservation, iPXE script, next boot device PXE)' },
    'boot.disk': { kind: 'action', confirms: ['disk'], timeoutMs: 30 * SECOND, failsTo: 'unknown', serialize: 'bmc', explain: 'make the next boot go to the local disk' },
    'boot.deploy': { kind: 'action', confirms: ['deploy'], timeoutMs: 30 * SECOND, failsTo: 'unknown', serialize: 'bmc', explain: 'prepare a network boot of the deploy environment, whose agent writes the disk (next boot device PXE)' },
  },
  states: {
    ...Object.fromEntries(
      idleStates.map((value) => [
        value,
        {
          on: {
            'boot.arm': { target: 'armed', guard: 'notBooting' },
            'boot.deploy': { target: 'deploy', guard: 'notBooting' },
            ...(value === 'disk' ? {} : { 'boot.disk': { target: 'disk', guard: 'notBooting' } }),
            ...(bootDone.has(value) ? { 'run.reboot': { target: 'idle', guard: 'runIsDrained' } } : {}),
          },
          // A boot that was under way or done is over once the node is off: the one-time arming is spent.
          ...(bootDone.has(value) ? { always: { guard: 'powerOff', target: 'idle' } } : {}),
        },
      ]),
    ),
    // The armed boot is started by firmware (run.boot after a reboot or power-on) or by the running OS (run.kexec).
    armed: { on: { 'run.boot': { target: 'kernel', guard: 'runIsBooting' }, 'run.kexec': { target: 'kexec', guard: 'kexecTaken' }, 'boot.disk': { target: 'disk', guard: 'notBooting' } } },
    dhcp: { on: { 'run.boot': { target: 'kernel', guard: 'runIsBooting' }, 'run.reboot': { target: 'idle', guard: 'runIsDrained' } }, always: { guard: 'powerOff', target: 'idle' } },
    loader: { on: { 'run.boot': { target: 'kernel', guard: 'runIsBooting' }, 'run.reboot': { target: 'idle', guard: 'runIsDrained' } }, always: { guard: 'powerOff', target: 'idle' } },
    // Armed like `armed`, its stages (dhcp, loader) in the detail: a deploy boot is one value until its kernel is served.
    deploy: { on: { 'run.boot': { target: 'deployed', guard: 'runIsBooting' }, 'boot.disk': { target: 'disk', guard: 'notBooting' } } },
  },
  abstract(observation, desired) {
    if (!observation) return 'unknown';
    // Armed for another image than the one desired now is as good as not armed.
    if (observation.value === 'armed' && desired.image && observation.detail !== desired.image) return 'idle';
    return observation.value as 'unknown';
  },
  desired: {
    accepts: ['network', 'disk'],
    // A kexec'd boot is a boot of what the appliance served, as a network boot is.
    target: (value) => ({ boot: value === 'disk' ? ['disk'] : [...NETWORK_BOOT_STAGES, 'kexec'] }),
  },
});

export const runFacet = defineFacet({
  name: 'run',
  values: ['unknown', 'off', 'booting', 'ready', 'draining', 'drained', 'lost', 'hung'],
  initial: 'unknown',
  failureValues: ['lost', 'hung'],
  observedOnly: ['unknown', 'lost', 'draining'],
  // Regions see every event; the `runIs…` guards make a region follow a run step only when that
  // step is really taken (xstate would otherwise let the image region alone accept run.boot).
  guards: {
    runIsBooting: stateIn({ run: 'booting' }),
    runIsDrained: stateIn({ run: 'drained' }),
    notBooting: not(inRun('booting')),
    workloadNotUp: not(inRun('ready', 'draining')),
    // The kexec facet (src/facets/kexec.ts) is declared by the modules whose agents report it; without it this is never true.
    // A disk written with the desired image is booted from, not kexec'd past (boot=disk would otherwise end on a kexec'd network image).
    kexecTaken: and([stateIn({ run: 'drained' }), stateIn({ boot: 'armed' }), stateIn({ kexec: 'available' }), not(stateIn({ disk: 'written' }))]),
  },
  steps: {
    'run.boot': { kind: 'await', confirms: ['ready'], timeoutMs: 300 * SECOND, failsTo: 'hung', explain: 'wait for the node to boot and its agent to say hello' },
    'run.drain': { kind: 'action', confirms: ['drained'], progress: ['draining'], timeoutMs: 600 * SECOND, failsTo: 'hung', explain: 'ask the agent to stop the workload and report drained' },
    // Before run.reboot, so it wins the tie: both take the node from drained to its armed boot.
    // One deadline from the ask to the new kernel's hello (booting shows it under way), so a kexec'd kernel that never speaks fails here, not after a firmware boot's allowance.
    'run.kexec': { kind: 'action', confirms: ['ready'], progress: ['booting'], timeoutMs: 300 * SECOND, failsTo: 'hung', explain: "ask the agent to fetch and check the armed boot's kernel and initrd, load them and kexec into them (no firmware, no PXE); the new kernel's hello confirms it" },
    'run.reboot': { kind: 'action', confirms: ['booting'], timeoutMs: 120 * SECOND, failsTo: 'hung', explain: 'ask the agent to reboot the node' },
  },
  states: {
    unknown: { always: { guard: 'powerOff', target: 'off' } },
    // Power on and nothing reported yet: the node is booting.
    off: { always: { guard: 'powerOn', target: 'booting' } },
    booting: { on: { 'run.boot': { target: 'ready', guard: 'bootReached' } }, always: { guard: 'powerOff', target: 'off' } },
    ready: { on: { 'run.drain': 'drained' }, always: { guard: 'powerOff', target: 'off' } },
    draining: { on: { 'run.drain': 'drained' }, always: { guard: 'powerOff', target: 'off' } },
    drained: { on: { 'run.kexec': { target: 'ready', guard: 'kexecTaken' }, 'run.reboot': 'booting' }, always: { guard: 'powerOff', target: 'off' } },
    lost: { always: { guard: 'powerOff', target: 'off' } },
    hung: { always: { guard: 'powerOff', target: 'off' } },
  },
  desired: {
    accepts: ['ready'],
    target: () => ({ run: ['ready'] }),
    conflict: (_, desired) => (desired.power === 'off' ? 'power=off contradicts run=ready' : undefined),
  },
});

const IMAGE_REF = /^[a-z0-9][a-z0-9._-]{0,62}@[a-z0-9][a-z0-9._-]{0,31}$/;

export const imageFacet = defineFacet({
  name: 'image',
  values: ['unknown', 'stale', 'current'],
  initial: 'unknown',
  failureValues: [],
  observedOnly: ['stale'],
  guards: {
    networkBootDone: and(['runIsBooting', 'networkBooted']),
    kexecBootDone: and(['runIsBooting', 'kexecBooted']),
    diskBootDone: and(['runIsBooting', 'diskBooted']),
    deployBootDone: and(['runIsBooting', 'deployBooted']),
    // The disk facet (src/facets/disk.ts) is declared by the module that writes disks; without it this is never true.
    diskHoldsImage: stateIn({ disk: 'written' }),
    diskBootOfImage: and(['diskBootDone', 'diskHoldsImage']),
  },
  steps: {},
  states: Object.fromEntries(
    (['unknown', 'stale', 'current'] as const).map((value) => [
      value,
      {
        on: {
          // The armed boot a kexec starts is of the desired image.
          'run.kexec': { guard: 'kexecTaken', target: 'current' },
          'run.boot': [
            { guard: 'networkBootDone', target: 'current' },
            // A kexec'd boot still booting (the appliance restarted while it did) is of the armed image too.
            { guard: 'kexecBootDone', target: 'current' },
            // A disk written with the desired image boots it; any other disk boots something Shoal cannot vouch for.
            { guard: 'diskBootOfImage', target: 'current' },
            { guard: 'diskBootDone', target: 'unknown' },
            // The deploy environment runs, not the desired image.
            { guard: 'deployBootDone', target: 'stale' },
          ],
        },
      },
    ]),
  ),
  abstract(observation, desired) {
    if (!observation) return 'unknown';
    if (!desired.image) return 'current';
    return observation.value === desired.image ? 'current' : 'stale';
  },
  desired: {
    accepts: { pattern: IMAGE_REF, describe: 'an image is name@version, e.g. compute@2' },
    // An image implies a boot to ready: from the network, or with boot=disk from a disk written with
    // it (the disk facet's `written` is relative to the desired image); nothing when the node is to be off.
    target: (_, desired): Target => (desired.power === 'off' ? {} : desired.boot === 'disk' ? { image: ['current'], run: ['ready'], disk: ['written'] } : { image: ['current'], run: ['ready'] }),
  },
});

export const standardFacets: FacetDefinition[] = [powerFacet, bootFacet, runFacet, imageFacet];
