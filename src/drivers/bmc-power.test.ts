// The shared BMC power driver against a fake BMC that is slow to change state, counting the
// requests it gets: power-off is forced once and then waited for, transitions are waited out,
// and a request that timed out is repeated only after a fresh reading still says on.
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../log.js';
import type { NodeRecord } from '../domain/node.js';
import type { ObservedState } from '../domain/state.js';
import { BmcPowerModule, type BmcConnector, type BmcPowerState, type BmcSession } from './bmc-power.js';
import type { ModuleHost, StepRequest } from '../engine/module.js';

const node: NodeRecord = {
  id: 'n1',
  name: 'slow-1',
  macs: ['52:54:00:ee:00:01'],
  bmc: { scheme: 'ipmi', host: '127.0.0.1', username: 'admin' },
  arch: 'x86_64',
  firmware: 'bios',
  labels: {},
};

interface SlowBmcBehaviour {
  /** How long after an accepted forced off the machine is off. */
  offAfterMs: number;
  /** Whether the BMC says PoweringOff meanwhile (else it keeps saying On). */
  reportsTransition: boolean;
  /** The first forced-off requests that time out (no reply); `carriedOut`: the BMC did it anyway. */
  timeouts?: { count: number; carriedOut: boolean };
}

/** A BMC whose OS ignores the power button and whose forced off takes effect `offAfterMs` later. */
class SlowBmc implements BmcConnector {
  power: 'on' | 'off' = 'on';
  private offAt: number | undefined;
  readonly requests: string[] = [];
  private timeoutsLeft: number;

  constructor(private readonly behaviour: SlowBmcBehaviour) {
    this.timeoutsLeft = behaviour.timeouts?.count ?? 0;
  }

  claims(): boolean {
    return true;
  }

  private read(): BmcPowerState {
    if (this.offAt !== undefined && Date.now() >= this.offAt) {
      this.power = 'off';
      this.offAt = undefined;
    }
    if (this.offAt !== undefined && this.behaviour.reportsTransition) return 'powering-off';
    return this.power;
  }

  async connect(): Promise<BmcSession> {
    return {
      powerState: async () => this.read(),
      powerOn: async () => {
        this.requests.push('powerOn');
        this.power = 'on';
      },
      softOff: async () => void this.requests.push('softOff'),
      forceOff: async () => {
        this.requests.push('forceOff');
        const timesOut = this.timeoutsLeft > 0;
        if (timesOut) this.timeoutsLeft--;
        if (!timesOut || this.behaviour.timeouts?.carriedOut) this.offAt ??= Date.now() + this.behaviour.offAfterMs;
        if (timesOut) throw new Error('Chassis Control: no reply after 3 attempt(s)');
      },
      setNextBoot: async (device) => void this.requests.push(`setNextBoot ${device}`),
      close: async () => undefined,
    };
  }
}

/** Just enough of the appliance for one node: observations are recorded, nothing else happens. */
function hostFor(observations: { value: string; detail: string | undefined }[], run?: string, boot?: string): ModuleHost {
  const host: Pick<ModuleHost, 'nodes' | 'node' | 'byMac' | 'desired' | 'observed' | 'bmcPassword' | 'observe' | 'onNodeChange' | 'log'> = {
    nodes: () => [node],
    node: () => node,
    byMac: () => undefined,
    desired: () => ({}),
    observed: () => ({ ...(run ? { run: { value: run } } : {}), ...(boot ? { boot: { value: boot } } : {}) }) as unknown as ObservedState,
    bmcPassword: () => 'secret',
    observe: (_id, facet, value, detail) => {
      if (facet === 'power') observations.push({ value, detail });
    },
    onNodeChange: () => () => undefined,
    log: createLogger('silent'),
  };
  return host as ModuleHost;
}

const modules: BmcPowerModule[] = [];
const controllers: AbortController[] = [];
afterEach(async () => {
  for (const controller of controllers.splice(0)) controller.abort();
  for (const module of modules.splice(0)) await module.stop();
});

/** Starts `step` on the slow BMC and resolves once the driver observed the node `want`. */
async function runStep(bmc: SlowBmc, step: 'power.on' | 'power.off', options: { gracefulOffMs: number; forcedOffMs: number }, run?: string, boot?: string) {
  const want = step === 'power.on' ? 'on' : 'off';
  const observations: { value: string; detail: string | undefined }[] = [];
  // A background poll far off, so only the step's own polling reads the BMC.
  const module = new BmcPowerModule('slow', bmc, { pollMs: 60_000, fastPollMs: 10, maxConcurrent: 4, ...options });
  modules.push(module);
  module.start(hostFor(observations, run, boot));
  const controller = new AbortController();
  controllers.push(controller);
  const request: StepRequest = { step, node, desired: { power: want }, bmcPassword: 'secret', signal: controller.signal };
  await module.drivers[0]!.steps[step]!(request);
  const deadline = Date.now() + 5_000;
  while (observations.at(-1)?.value !== want) {
    if (Date.now() > deadline) throw new Error(`not observed ${want}; requests: ${bmc.requests.join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return observations;
}

describe('power.off against a BMC slow to change state', () => {
  it('forces off once after the graceful deadline and waits for it, while the BMC still says On', async () => {
    const bmc = new SlowBmc({ offAfterMs: 400, reportsTransition: false });
    await runStep(bmc, 'power.off', { gracefulOffMs: 50, forcedOffMs: 2_000 });
    expect(bmc.requests).toEqual(['softOff', 'forceOff']);
  });

  it('forces off once and waits while the BMC says PoweringOff', async () => {
    const bmc = new SlowBmc({ offAfterMs: 400, reportsTransition: true });
    await runStep(bmc, 'power.off', { gracefulOffMs: 50, forcedOffMs: 100 });
    expect(bmc.requests).toEqual(['softOff', 'forceOff']);
  });

  it('forces a node that stopped answering (run=lost) off once, without the graceful request', async () => {
    const bmc = new SlowBmc({ offAfterMs: 400, reportsTransition: false });
    await runStep(bmc, 'power.off', { gracefulOffMs: 50, forcedOffMs: 2_000 }, 'lost');
    expect(bmc.requests).toEqual(['forceOff']);
  });

  it('does not repeat a forced off that timed out but was carried out: the next reading says so', async () => {
    const bmc = new SlowBmc({ offAfterMs: 50, reportsTransition: false, timeouts: { count: 1, carriedOut: true } });
    await runStep(bmc, 'power.off', { gracefulOffMs: 50, forcedOffMs: 300 });
    expect(bmc.requests).toEqual(['softOff', 'forceOff']);
  });

  it('repeats a forced off that timed out and was not carried out, once its deadline passed and a fresh reading still says On', async () => {
    const bmc = new SlowBmc({ offAfterMs: 50, reportsTransition: false, timeouts: { count: 1, carriedOut: false } });
    await runStep(bmc, 'power.off', { gracefulOffMs: 50, forcedOffMs: 300 });
    expect(bmc.requests).toEqual(['softOff', 'forceOff', 'forceOff']);
  });

  it('does not power off a node that already reads off, and says so by observing off', async () => {
    const bmc = new SlowBmc({ offAfterMs: 0, reportsTransition: false });
    bmc.power = 'off';
    const observations = await runStep(bmc, 'power.off', { gracefulOffMs: 50, forcedOffMs: 300 });
    expect(bmc.requests).toEqual([]);
    expect(observations).toEqual([{ value: 'off', detail: undefined }]);
  });
});

describe('power readings', () => {
  it('observes a BMC that answers without a power state as unknown, with that reason', async () => {
    const observations: { value: string; detail: string | undefined }[] = [];
    const connector: BmcConnector = {
      claims: () => true,
      connect: async () => ({ ...(await new SlowBmc({ offAfterMs: 0, reportsTransition: false }).connect()), powerState: async () => 'unknown' }),
    };
    const module = new BmcPowerModule('mute', connector, { pollMs: 60_000, fastPollMs: 10 });
    modules.push(module);
    module.start(hostFor(observations));
    const controller = new AbortController();
    controllers.push(controller);
    await module.drivers[0]!.steps['power.probe']!({ step: 'power.probe', node, desired: {}, bmcPassword: 'secret', signal: controller.signal });
    expect(observations.at(-1)).toEqual({ value: 'unknown', detail: 'the BMC answered without a power state' });
  });
});

describe('power.on sets the boot the plan prepared', () => {
  it('PXE for an armed boot of an image and for a deploy boot, the disk for a disk boot, nothing otherwise', async () => {
    const options = { gracefulOffMs: 1_000, forcedOffMs: 1_000 };
    for (const [boot, want] of [['armed', 'setNextBoot pxe'], ['deploy', 'setNextBoot pxe'], ['disk', 'setNextBoot disk'], ['idle', undefined]] as const) {
      const bmc = new SlowBmc({ offAfterMs: 0, reportsTransition: false });
      bmc.power = 'off';
      await runStep(bmc, 'power.on', options, undefined, boot);
      expect(bmc.requests, boot).toEqual(want ? [want, 'powerOn'] : ['powerOn']);
    }
  });
});
