// A simulated rack: BMCs whose power takes time, firmware that network-boots through DHCP, loader
// and kernel stages after its power-on self-test, agents that say hello with the image they booted
// and can kexec into the next one (skipping the firmware), and faults to inject. It
// owns power, boot and run of every node whose BMC is `sim://…`, through the same facets and steps
// the real modules implement, so the engine cannot tell the difference.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { diskFacet, writtenDetail } from '../../src/facets/disk.js';
import { KEXEC_FACET, KEXEC_FAILURES_MARKED, kexecFacet, kexecForbiddenDetail } from '../../src/facets/kexec.js';
import { HttpProblem } from '../../src/api/problem.js';
import { openApiParts } from '../../src/api/openapi.js';
import { stepsOf, type FacetDriver, type ModuleHost, type ShoalModule, type StepHandler } from '../../src/engine/module.js';
import type { StepName } from '../../src/engine/facet.js';
import type { NodeId, NodeRecord } from '../../src/domain/node.js';

export interface SimLatencies {
  /** A BMC answering a status read. */
  probeMs: number;
  /** A power transition. */
  powerMs: number;
  /** Preparing a boot (DHCP reservation, script, boot device). */
  armMs: number;
  /** Each boot stage: DHCP, loader, kernel, agent hello. */
  bootStageMs: number;
  /** The firmware's power-on self-test, before its DHCP: paid by every boot through the firmware, none by a kexec. */
  postMs: number;
  /** A kexec: the agent fetching, checking and loading the new kernel and initrd, then executing it (its boot's hello follows a stage later). */
  kexecMs: number;
  drainMs: number;
  /** Silence after which a dead node's agent is reported lost. */
  lostAfterMs: number;
  /** How long a BMC client waits for an answer that does not come (bmc-timeout), as a real client's own timeout. */
  bmcTimeoutMs: number;
}

export const ZERO_LATENCY: SimLatencies = { probeMs: 0, powerMs: 0, armMs: 0, bootStageMs: 0, postMs: 0, kexecMs: 0, drainMs: 0, lostAfterMs: 0, bmcTimeoutMs: 0 };
// POST is 0 here so the stage timing tests and benchmarks rely on stays what it was; a real server's is 1 to 5 minutes.
export const REALISTIC_LATENCY: SimLatencies = { probeMs: 150, powerMs: 2_000, armMs: 100, bootStageMs: 1_500, postMs: 0, kexecMs: 1_000, drainMs: 1_000, lostAfterMs: 10_000, bmcTimeoutMs: 5_000 };

const times = z.number().int().min(-1_000).max(1_000);
/** A fault to inject, as tests and the API give it; `times` counts the commands or boots it affects (negative takes back). */
export const SimFaultSchema = z.discriminatedUnion('kind', [
  /** The BMC refuses power-on `times` times. */
  z.object({ kind: z.literal('power-on-fails'), times }).strict(),
  /** The next `times` boots stop before the agent says hello. */
  z.object({ kind: z.literal('boot-hangs'), times }).strict(),
  /** The next `times` kexecs go into a kernel that never says hello (it panics). */
  z.object({ kind: z.literal('kexec-hangs'), times }).strict(),
  /** The next `times` BMC commands get no answer: each fails after bmcTimeoutMs. */
  z.object({ kind: z.literal('bmc-timeout'), times }).strict(),
  /** The next `times` BMC commands get a reply that does not answer them (another sequence, a bad completion code). */
  z.object({ kind: z.literal('bmc-wrong-reply'), times }).strict(),
  /** The OS dies: the agent goes silent, power stays on. */
  z.object({ kind: z.literal('dies') }).strict(),
  /** Someone pulls the power behind the appliance's back. */
  z.object({ kind: z.literal('power-off') }).strict(),
]);
export type SimFault = z.infer<typeof SimFaultSchema>;

/** A network boot of an image, of the deploy environment, a kexec into an armed network boot, or a boot from the local disk. */
type SimBoot = { kind: 'network' | 'deploy' | 'kexec'; image: string } | { kind: 'disk' };
/** What a simulated node's deploy boot runs, as the pxe module's deployImage default. */
const SIM_DEPLOY_IMAGE = 'deploy@1';

interface SimMachine {
  power: 'on' | 'off';
  /** What the next boot does; network boots are one-time, like IPMI's boot-once flag. */
  nextBoot: SimBoot | null;
  /** The boot under way, if any: hardware goes on booting while the appliance restarts. */
  booting: SimBoot | null;
  /** The image written to the local disk, if any (disk.write from the deploy environment). */
  disk?: string | null;
  /** What the booted node runs (an image ref, or local-disk) while its agent is up; null otherwise. */
  running: string | null;
  powerOnFailures: number;
  bootHangs: number;
  kexecHangs: number;
  /** Kexecs that never said hello; at KEXEC_FAILURES_MARKED the agent reports kexec unavailable. */
  kexecFailures: number;
  bmcTimeouts: number;
  bmcWrongReplies: number;
  /** Cancels the boot or agent timers under way. */
  generation: number;
}

type StoredMachine = Pick<SimMachine, 'power' | 'nextBoot' | 'booting' | 'running' | 'disk'>;

export interface SimOptions {
  latencies?: Partial<SimLatencies>;
  /** Power of every simulated node when the rack starts. */
  initialPower?: 'on' | 'off';
  /** Whether the simulated agents can kexec (true when unset). */
  kexec?: boolean;
  /**
   * Keep the simulated hardware's state in the module's data directory, so that it outlives an
   * appliance crash as real hardware does. Off for benchmarks: it writes on every power change.
   */
  persist?: boolean;
}

export class SimRack implements ShoalModule {
  readonly name = 'sim';
  readonly facets = [diskFacet, kexecFacet];
  readonly drivers: FacetDriver[];
  readonly openapi = {
    '/sim/nodes/{id}/faults': {
      post: {
        summary: 'Inject a fault into a simulated node (tests, the soak): {kind: power-on-fails|boot-hangs|kexec-hangs|bmc-timeout|bmc-wrong-reply, times} or {kind: dies|power-off}',
        parameters: [openApiParts.path('id', 'the node id')],
        responses: { 200: openApiParts.ok('the fault injected'), 400: openApiParts.problem, 401: openApiParts.problem, 404: openApiParts.problem },
      },
    },
  };
  private readonly latency: SimLatencies;
  private readonly machines = new Map<NodeId, SimMachine>();
  private host: ModuleHost | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private statePath: string | undefined;

  constructor(private readonly options: SimOptions = {}) {
    this.latency = { ...REALISTIC_LATENCY, ...options.latencies };
    const claims = (node: NodeRecord) => node.bmc.scheme === 'sim';
    const driver = (facet: string): FacetDriver => ({ facet, claims, steps: stepsOf(facet, this.handlers) });
    this.drivers = [driver('power'), driver('boot'), driver('run'), driver('disk')];
  }

  start(host: ModuleHost): void {
    this.host = host;
    host.api.post('/sim/nodes/:id/faults', (req, res) => {
      const node = host.node(req.params.id);
      if (!node || node.bmc.scheme !== 'sim') throw new HttpProblem(404, 'Not found', `no simulated node with id "${req.params.id}"`);
      const fault = SimFaultSchema.parse(req.body);
      this.inject(node.id, fault);
      res.json({ node: node.id, fault });
    });
    if (!this.options.persist) return;
    this.statePath = join(host.dataDir, 'machines.json');
    let stored: Record<NodeId, StoredMachine> = {};
    try {
      stored = JSON.parse(readFileSync(this.statePath, 'utf8')) as Record<NodeId, StoredMachine>;
    } catch {
      // first start: every machine as configured
    }
    for (const [id, m] of Object.entries(stored)) {
      const machine: SimMachine = { ...m, running: m.running ?? null, powerOnFailures: 0, bootHangs: 0, kexecHangs: 0, kexecFailures: 0, bmcTimeouts: 0, bmcWrongReplies: 0, generation: 0 };
      this.machines.set(id, machine);
      if (machine.power === 'on' && machine.booting) this.boot(id, machine, machine.booting);
      // A node that finished booting while the appliance was down (or before its last observations
      // were committed) is still up: its agent's next heartbeat says so.
      else if (machine.power === 'on' && machine.running) this.heartbeatAfterRestart(id, machine, machine.running);
    }
  }

  private heartbeatAfterRestart(id: NodeId, m: SimMachine, running: string): void {
    const generation = m.generation;
    this.after(this.latency.bootStageMs, () => {
      if (m.generation !== generation || m.power !== 'on') return;
      this.observe(id, 'image', running);
      this.observe(id, 'run', 'ready');
    });
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  /** Injects a fault into a simulated node, by id. */
  inject(id: NodeId, fault: SimFault): void {
    const m = this.machine(id);
    switch (fault.kind) {
      case 'power-on-fails':
        m.powerOnFailures += fault.times;
        break;
      case 'boot-hangs':
        m.bootHangs += fault.times;
        break;
      case 'kexec-hangs':
        m.kexecHangs += fault.times;
        break;
      case 'bmc-timeout':
        m.bmcTimeouts += fault.times;
        break;
      case 'bmc-wrong-reply':
        m.bmcWrongReplies += fault.times;
        break;
      case 'dies':
        m.generation++;
        m.running = null;
        this.save();
        this.after(this.latency.lostAfterMs, () => this.observe(id, 'run', 'lost', 'agent silent'));
        break;
      case 'power-off':
        m.generation++;
        m.power = 'off';
        m.booting = null;
        m.running = null;
        this.save();
        // The BMC poll notices a moment later.
        this.after(this.latency.probeMs, () => this.observe(id, 'power', 'off'));
        break;
    }
  }

  /** The simulated hardware's own truth, for tests. */
  truth(id: NodeId): Readonly<SimMachine> {
    return this.machine(id);
  }

  private machine(id: NodeId): SimMachine {
    let m = this.machines.get(id);
    if (!m) {
      m = { power: this.options.initialPower ?? 'off', nextBoot: null, booting: null, running: null, powerOnFailures: 0, bootHangs: 0, kexecHangs: 0, kexecFailures: 0, bmcTimeouts: 0, bmcWrongReplies: 0, generation: 0 };
      this.machines.set(id, m);
    }
    return m;
  }

  /** One handler per step of the facets this module drives. */
  private readonly handlers: Record<StepName, StepHandler> = {
    'power.probe': async ({ node, signal }) => {
      const m = this.machine(node.id);
      const id = node.id;
      await this.bmcAnswers(m, signal);
      await this.wait(this.latency.probeMs, signal);
      this.observe(id, 'power', m.power);
    },
    'power.on': async ({ node, signal }) => {
      const m = this.machine(node.id);
      const id = node.id;
      await this.bmcAnswers(m, signal);
      if (m.powerOnFailures > 0) {
        m.powerOnFailures--;
        await this.wait(this.latency.probeMs, signal);
        throw new Error('BMC refused Chassis Control power-on (simulated fault)');
      }
      await this.wait(this.latency.powerMs, signal);
      if (m.power === 'off') {
        m.power = 'on';
        this.save();
        this.observe(id, 'power', 'on');
        this.boot(id, m);
      } else {
        this.observe(id, 'power', 'on');
      }
    },
    'power.off': async ({ node, signal }) => {
      const m = this.machine(node.id);
      const id = node.id;
      await this.bmcAnswers(m, signal);
      await this.wait(this.latency.powerMs, signal);
      m.power = 'off';
      m.booting = null;
      m.running = null;
      m.generation++;
      this.save();
      this.observe(id, 'power', 'off');
    },
    'boot.arm': async ({ node, desired, signal }) => {
      const m = this.machine(node.id);
      const id = node.id;
      await this.bmcAnswers(m, signal);
      if (!desired.image) throw new Error('no desired image to boot: set image=NAME@VERSION');
      await this.wait(this.latency.armMs, signal);
      m.nextBoot = { kind: 'network', image: desired.image };
      this.save();
      this.observe(id, 'boot', 'armed', desired.image);
    },
    'boot.disk': async ({ node, signal }) => {
      const m = this.machine(node.id);
      const id = node.id;
      await this.bmcAnswers(m, signal);
      await this.wait(this.latency.armMs, signal);
      m.nextBoot = { kind: 'disk' };
      this.save();
      this.observe(id, 'boot', 'disk');
    },
    'boot.deploy': async ({ node, signal }) => {
      const m = this.machine(node.id);
      await this.bmcAnswers(m, signal);
      await this.wait(this.latency.armMs, signal);
      m.nextBoot = { kind: 'deploy', image: SIM_DEPLOY_IMAGE };
      this.save();
      this.observe(node.id, 'boot', 'deploy', `armed ${SIM_DEPLOY_IMAGE}`);
    },
    'disk.write': async ({ node, desired }) => {
      const image = desired.image;
      if (!image) throw new Error('no desired image to write');
      this.diskJob(node.id, 'writing', image, 'written', writtenDetail(image, createHash('sha256').update(image).digest('hex'), 'sda'));
    },
    'disk.erase': async ({ node }) => this.diskJob(node.id, 'erasing', null, 'erased', 'sda (quick)'),
    'run.drain': async ({ node }) => {
      const m = this.machine(node.id);
      const id = node.id;
      this.observe(id, 'run', 'draining');
      const generation = m.generation;
      this.after(this.latency.drainMs, () => {
        if (m.generation === generation) this.observe(id, 'run', 'drained');
      });
    },
    'run.kexec': async ({ node, signal }) => {
      const m = this.machine(node.id);
      const id = node.id;
      const armed = m.nextBoot;
      if (armed?.kind !== 'network') throw new Error('cannot kexec: no armed network boot of an image');
      if (!this.kexecAllowed(id).allowed) return void this.observeKexec(id, m);
      await this.wait(this.latency.kexecMs, signal);
      m.generation++;
      m.nextBoot = { kind: 'kexec', image: armed.image };
      this.observe(id, 'boot', 'kexec', armed.image);
      this.observe(id, 'run', 'booting');
      this.boot(id, m);
    },
    'run.reboot': async ({ node, signal }) => {
      const m = this.machine(node.id);
      const id = node.id;
      await this.wait(this.latency.probeMs, signal);
      m.generation++;
      this.observe(id, 'run', 'booting');
      this.boot(id, m);
    },
  };

  /** A simulated disk job: under way at once, done one boot stage later unless the machine restarted meanwhile. */
  private diskJob(id: NodeId, progress: 'writing' | 'erasing', holds: string | null, done: 'written' | 'erased', detail: string): void {
    const m = this.machine(id);
    this.observe(id, 'disk', progress);
    const generation = m.generation;
    this.after(this.latency.bootStageMs, () => {
      if (m.generation !== generation) return;
      m.disk = holds;
      this.save();
      this.observe(id, 'disk', done, detail);
    });
  }

  /** A BMC command's exchange: fails as a real client would when a fault says the BMC does not answer, or answers amiss. */
  private async bmcAnswers(m: SimMachine, signal: AbortSignal): Promise<void> {
    if (m.bmcTimeouts > 0) {
      m.bmcTimeouts--;
      await this.wait(this.latency.bmcTimeoutMs, signal);
      throw new Error(`BMC did not answer within ${this.latency.bmcTimeoutMs} ms (simulated fault)`);
    }
    if (m.bmcWrongReplies > 0) {
      m.bmcWrongReplies--;
      await this.wait(this.latency.probeMs, signal);
      throw new Error('BMC reply did not match the request (simulated fault)');
    }
  }

  /** Firmware to agent hello, one stage at a time, unless a hang is injected or power goes. */
  private boot(id: NodeId, m: SimMachine, resume?: SimMachine['booting']): void {
    const generation = ++m.generation;
    const plan = resume ?? m.nextBoot;
    if (plan?.kind === 'network' || plan?.kind === 'deploy' || plan?.kind === 'kexec') m.nextBoot = null;
    m.booting = plan;
    m.running = null;
    this.save();
    const kexec = plan?.kind === 'kexec';
    // A hung boot hangs whichever way it started; a kexec'd kernel that panics is one more way, and
    // either counts against the node's kexecs.
    const hangs = m.bootHangs > 0 || (kexec && m.kexecHangs > 0);
    if (hangs && kexec && m.kexecHangs > 0) m.kexecHangs--;
    else if (hangs) m.bootHangs--;
    if (hangs && kexec) m.kexecFailures++;
    const stages: [string, string, string?][] =
      plan?.kind === 'kexec'
        ? [['image', plan.image], ['run', 'ready']]
        : plan?.kind === 'network'
        ? [['boot', 'dhcp'], ['boot', 'loader'], ['boot', 'kernel'], ['image', plan.image], ['run', 'ready']]
        : plan?.kind === 'disk'
          ? [['image', m.disk ?? 'local-disk'], ['run', 'ready']]
          : plan?.kind === 'deploy'
            ? [['boot', 'deploy', `dhcp ${plan.image}`], ['boot', 'deploy', `loader ${plan.image}`], ['boot', 'deployed', plan.image], ['image', plan.image], ['run', 'ready']]
            : [];
    const next = (i: number) => {
      if (m.generation !== generation || m.power !== 'on') return;
      const stage = stages[i];
      // The boot is over when its last stage (the agent's hello) happens: saved before it is observed.
      if (!stage || i === stages.length - 1) {
        m.booting = null;
        m.running = plan?.kind === 'disk' ? (m.disk ?? 'local-disk') : (plan?.image ?? null);
        this.save();
      }
      if (!stage) return;
      if (hangs && ((stage[0] === 'boot' && stage[1] === 'kernel') || (kexec && i === 0))) return;
      // The agent's hello says whether this boot can kexec into the next one.
      if (stage[0] === 'run' && stage[1] === 'ready') this.observeKexec(id, m);
      this.observe(id, stage[0], stage[1], stage[2]);
      if (i < stages.length - 1) this.after(this.latency.bootStageMs, () => next(i + 1));
    };
    // Firmware runs its self-test first; a kexec'd kernel starts at once.
    this.after(this.latency.bootStageMs + (kexec ? 0 : this.latency.postMs), () => next(0));
  }

  /** Whether the node's profiles let it kexec, as the agent module reads them. */
  private kexecAllowed(id: NodeId): { allowed: boolean; setBy?: string } {
    return this.host?.services.get('nodeConfig')?.boot(id)?.kexec ?? { allowed: true };
  }

  /** What a simulated agent's hello says of kexec. */
  private observeKexec(id: NodeId, m: SimMachine): void {
    const config = this.kexecAllowed(id);
    if (!config.allowed) return this.observe(id, KEXEC_FACET, 'unavailable', kexecForbiddenDetail(config.setBy));
    if (this.options.kexec === false) return this.observe(id, KEXEC_FACET, 'unavailable', 'the simulated agents of this rack cannot kexec');
    if (m.kexecFailures >= KEXEC_FAILURES_MARKED) return this.observe(id, KEXEC_FACET, 'unavailable', `kexec failed ${m.kexecFailures} times (simulated)`);
    this.observe(id, KEXEC_FACET, 'available');
  }

  /** Written whole and renamed into place, so a crash leaves the old file or the new one. */
  private save(): void {
    if (!this.statePath) return;
    const stored: Record<NodeId, StoredMachine> = {};
    for (const [id, m] of this.machines) stored[id] = { power: m.power, nextBoot: m.nextBoot, booting: m.booting, running: m.running, disk: m.disk ?? null };
    writeFileSync(`${this.statePath}.tmp`, JSON.stringify(stored));
    renameSync(`${this.statePath}.tmp`, this.statePath);
  }

  private observe(id: NodeId, facet: string, value: string, detail?: string): void {
    this.host?.observe(id, facet, value, detail);
  }

  private after(ms: number, fn: () => void): void {
    if (ms <= 0) {
      setImmediate(fn);
      return;
    }
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private wait(ms: number, signal: AbortSignal): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      this.timers.add(t);
      const onAbort = () => {
        clearTimeout(t);
        this.timers.delete(t);
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
