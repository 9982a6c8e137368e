// Runs each node's plan one step at a time. A step is done when an observation confirms it, not
// when its command returns. Every change to a node re-plans it; a step already under way is kept
// when the new plan still starts with it. A step not confirmed in time is recorded as its failure
// value (silence is an observation), and the node follows the plan from there (the recovery path)
// after an exponential backoff, until its retry budget is spent and it is held with the reason.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { FacetValue, NodeId, NodeRecord } from '../domain/node.js';
import type { DesiredState } from '../domain/state.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { NodeOwnership } from '../contracts/ownership.js';
import type { StepName, Target, FacetDefinition } from './facet.js';
import type { FacetGraph } from './graph.js';
import type { EngineMetrics } from './metrics.js';
import type { FacetDriver } from './module.js';
import type { Plan, Planner, PlanStep } from './planner.js';
import { Slots } from './slots.js';

export interface ExecutorOptions {
  /** Failed steps a node may take before it is held as failed. */
  retryBudget: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Concurrent actions per step name (e.g. `power.on: 20`); unnamed steps are unlimited. */
  limits: Record<StepName, number>;
  /** Per-step timeout overrides (tests and simulations run on shorter clocks). */
  timeouts: Partial<Record<StepName, number>>;
}

export const DEFAULT_EXECUTOR_OPTIONS: ExecutorOptions = {
  retryBudget: 5,
  backoffBaseMs: 2_000,
  backoffMaxMs: 300_000,
  limits: { 'power.on': 50 },
  timeouts: {},
};

export type NodePhase = 'converged' | 'converging' | 'failed' | 'frozen' | 'blocked';

export interface NodeStatus {
  phase: NodePhase;
  /** Why the node is failed or blocked. */
  reason?: string;
  step?: { name: StepName; startedAt: number; deadline: number; attempt: number; waiting?: 'limit' | 'backoff' };
  failures: number;
  lastError?: string;
  plan: Plan;
}

interface InFlight {
  step: StepName;
  startedAt: number;
  deadline: number;
  timer: NodeJS.Timeout;
  abort: AbortController;
  /** Slot keys held while the module's action runs. */
  slots: string[] | undefined;
}

interface Runtime {
  inflight?: InFlight;
  failures: number;
  notBefore: number;
  retryTimer?: NodeJS.Timeout;
  waitingForSlot?: StepName;
  lastError?: string;
  desiredKey: string;
  phase: NodePhase;
  /** The plan had no step left when last evaluated. */
  idle: boolean;
}

export interface DriverRegistry {
  driverFor(node: NodeRecord, facet: string): FacetDriver | undefined;
}

export interface ExecutorEvents {
  /**
   * A node's phase changed, or whether it has steps left to take (a frozen node with nothing to do
   * is up; one with steps is not); undefined when the node left the inventory. Emitted after the
   * node was evaluated, so `status()` already says what changed.
   */
  phase: [NodeId, NodePhase | undefined];
}

export class Executor extends EventEmitter<ExecutorEvents> {
  private readonly runtimes = new Map<NodeId, Runtime>();
  private readonly dirty = new Set<NodeId>();
  private drainScheduled = false;
  private running = false;
  private readonly slots: Slots;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    private readonly state: ClusterState,
    private readonly graph: FacetGraph,
    private readonly planner: Planner,
    private readonly definitions: FacetDefinition[],
    private readonly target: (desired: DesiredState) => Target,
    private readonly drivers: DriverRegistry,
    private readonly options: ExecutorOptions,
    private readonly metrics: EngineMetrics,
    private readonly log: Logger,
    /** Which nodes this appliance acts on; without it, every node (one appliance). */
    private readonly ownership?: NodeOwnership,
  ) {
    super();
    this.setMaxListeners(0);
    this.slots = new Slots((key) => (key.startsWith('bmc:') ? 1 : (options.limits[key.slice('step:'.length)] ?? Infinity)));
  }

  start(): void {
    this.running = true;
    const onNode = (id: NodeId) => this.schedule(id);
    const onAppliance = () => this.state.list().forEach((n) => this.schedule(n.id));
    this.state.on('node', onNode);
    this.state.on('appliance', onAppliance);
    this.unsubscribe.push(() => this.state.off('node', onNode), () => this.state.off('appliance', onAppliance));
    // A lease taken, lost or run out: every node may have changed hands.
    if (this.ownership) this.unsubscribe.push(this.ownership.onChange(onAppliance));
    for (const node of this.state.list()) this.schedule(node.id);
  }

  stop(): void {
    this.running = false;
    this.unsubscribe.splice(0).forEach((off) => off());
    for (const rt of this.runtimes.values()) {
      if (rt.inflight) {
        clearTimeout(rt.inflight.timer);
        rt.inflight.abort.abort(new Error('appliance stopping'));
      }
      if (rt.retryTimer) clearTimeout(rt.retryTimer);
    }
    this.runtimes.clear();
  }

  /** The node's standing and the plan it follows, for the API, the CLI and metrics. */
  status(id: NodeId): NodeStatus {
    const rt = this.runtimes.get(id);
    let plan = this.planFor(id);
    // A step kept under way while the plan only waits (evaluate) stands for that wait, so the plan shown starts with it.
    const first = plan.steps[0];
    if (rt?.inflight && first && first.step !== rt.inflight.step && this.keptWhilePlanWaits(id, rt.inflight, first)) {
      const info = this.graph.step(rt.inflight.step);
      plan = { ...plan, steps: [{ step: info.name, facet: info.facet, kind: info.kind, expect: first.expect, explain: info.explain }, ...plan.steps.slice(1)] };
    }
    const status: NodeStatus = { phase: this.phaseOf(id, plan, rt), failures: rt?.failures ?? 0, plan };
    const hold = this.state.hold(id);
    if (hold) status.reason = hold;
    else if (!plan.reachable) status.reason = `no sequence of steps reaches ${describeTarget(plan.target)} from ${describeVector(plan.from)}`;
    if (rt?.lastError) status.lastError = rt.lastError;
    if (rt?.inflight) {
      status.step = { name: rt.inflight.step, startedAt: rt.inflight.startedAt, deadline: rt.inflight.deadline, attempt: rt.failures + 1 };
    } else if (rt?.waitingForSlot) {
      status.step = { name: rt.waitingForSlot, startedAt: 0, deadline: 0, attempt: rt.failures + 1, waiting: 'limit' };
    } else if (rt && rt.notBefore > Date.now() && plan.steps[0]) {
      status.step = { name: plan.steps[0].step, startedAt: 0, deadline: rt.notBefore, attempt: rt.failures + 1, waiting: 'backoff' };
    }
    return status;
  }

  /**
   * A step whose progress shows (a kexec'd kernel booting) is kept while the plan from here only
   * waits: the await step would be confirmed by what the step under way brings about.
   */
  private keptWhilePlanWaits(id: NodeId, inflight: InFlight, first: PlanStep): boolean {
    if (first.kind !== 'await') return false;
    const running = this.graph.step(inflight.step);
    const seen = this.state.observed(id)[running.facet];
    return seen !== undefined && running.progress?.includes(seen.value) === true && seen.at >= inflight.startedAt;
  }

  phaseCounts(): Record<NodePhase, number> {
    const counts: Record<NodePhase, number> = { converged: 0, converging: 0, failed: 0, frozen: 0, blocked: 0 };
    for (const node of this.state.list()) if (!this.ownership || this.ownership.owns(node.id)) counts[this.runtimes.get(node.id)?.phase ?? 'converging']++;
    return counts;
  }

  /** The abstract state the planner reasons with, one value per facet. */
  vectorOf(id: NodeId): FacetValue[] {
    const observed = this.state.observed(id);
    const desired = this.state.desired(id);
    return this.definitions.map((d) => {
      const o = observed[d.name];
      const value = d.abstract ? d.abstract(o, desired) : (o?.value ?? d.initial);
      return d.values.includes(value) ? value : d.initial;
    });
  }

  planFor(id: NodeId): Plan {
    return this.planner.plan(this.vectorOf(id), this.target(this.state.desired(id)));
  }

  /** Lets a held node try again with a fresh budget. */
  retry(id: NodeId): void {
    const rt = this.runtimes.get(id);
    if (rt) {
      rt.failures = 0;
      rt.notBefore = 0;
    }
    this.state.setHold(id, null, 'operator');
    this.schedule(id);
  }

  schedule(id: NodeId): void {
    this.dirty.add(id);
    // Until it is evaluated again, a changed node cannot be called converged.
    const rt = this.runtimes.get(id);
    if (rt?.phase === 'converged') rt.phase = 'converging';
    if (!this.drainScheduled && this.running) {
      this.drainScheduled = true;
      setImmediate(() => this.drain());
    }
  }

  private drain(): void {
    this.drainScheduled = false;
    // Evaluating a node can dirty it again (an implied observation); that waits for the next turn.
    const batch = [...this.dirty];
    this.dirty.clear();
    for (const id of batch) {
      try {
        this.evaluate(id);
      } catch (err) {
        this.log.error({ node: id, err }, 'evaluating node failed');
      }
    }
  }

  private runtime(id: NodeId): Runtime {
    let rt = this.runtimes.get(id);
    if (!rt) {
      rt = { failures: 0, notBefore: 0, desiredKey: '', phase: 'converging', idle: false };
      this.runtimes.set(id, rt);
    }
    return rt;
  }

  private evaluate(id: NodeId): void {
    if (!this.running) return;
    const node = this.state.node(id);
    if (!node) {
      const rt = this.runtimes.get(id);
      if (rt?.inflight) this.finish(id, rt, 'superseded');
      if (rt?.retryTimer) clearTimeout(rt.retryTimer);
      if (this.runtimes.delete(id)) this.emit('phase', id, undefined);
      return;
    }
    if (this.ownership && !this.ownership.owns(id)) {
      this.letGo(id);
      return;
    }
    const rt = this.runtime(id);
    const desired = this.state.desired(id);
    const desiredKey = JSON.stringify(desired);
    if (desiredKey !== rt.desiredKey) {
      // A new wish starts with a fresh retry budget.
      rt.desiredKey = desiredKey;
      rt.failures = 0;
      rt.notBefore = 0;
    }

    const vector = this.vectorOf(id);
    this.recordImplied(id, vector);
    const plan = this.planner.plan(vector, this.target(desired));
    this.metrics.plans.inc();

    const first = plan.steps[0];
    if (rt.inflight) {
      // A module that observes the step's failure value while it runs (an agent reporting a failed
      // disk write) has failed it: now, with its reason, rather than at the deadline.
      const running = this.graph.step(rt.inflight.step);
      const seen = this.state.observed(id)[running.facet];
      if (seen?.value === running.failsTo && seen.at >= rt.inflight.startedAt && !running.confirms.includes(running.failsTo)) {
        this.fail(id, rt.inflight, 'failed', seen.detail ?? `${running.facet} was observed ${running.failsTo}`);
        return;
      }
      if (first?.step === rt.inflight.step || (first && this.keptWhilePlanWaits(id, rt.inflight, first))) {
        this.setPhase(id, rt, plan);
        return;
      }
      const info = this.graph.step(rt.inflight.step);
      const confirmed = info.confirms.includes(this.state.observed(id)[info.facet]?.value ?? '');
      this.finish(id, rt, confirmed ? 'confirmed' : 'superseded');
    }
    this.setPhase(id, rt, plan);
    if (rt.phase !== 'converging' || !first) {
      if (rt.phase === 'converged') {
        rt.failures = 0;
        delete rt.lastError;
      }
      rt.waitingForSlot = undefined;
      return;
    }

    const now = Date.now();
    if (now < rt.notBefore) {
      if (!rt.retryTimer) rt.retryTimer = setTimeout(() => ((rt.retryTimer = undefined), this.schedule(id)), rt.notBefore - now);
      return;
    }
    this.fire(node, rt, first.step);
  }

  /**
   * Another appliance acts on the node now (or none: this one's lease ran out): its step under way
   * is aborted, its retry dropped, and what this appliance knew of it forgotten, so that if the
   * node comes back it is planned afresh from its observed state.
   */
  private letGo(id: NodeId): void {
    const rt = this.runtimes.get(id);
    if (!rt) return;
    if (rt.inflight) this.finish(id, rt, 'superseded');
    if (rt.retryTimer) clearTimeout(rt.retryTimer);
    this.runtimes.delete(id);
    this.log.debug({ node: id }, 'not this appliance\'s node now: stopped acting on it');
  }

  private fire(node: NodeRecord, rt: Runtime, step: StepName): void {
    const info = this.graph.step(step);
    let driver: FacetDriver | undefined;
    let slots: string[] | undefined;
    if (info.kind === 'action') {
      driver = this.drivers.driverFor(node, info.facet);
      if (!driver) {
        this.state.setHold(node.id, `no module owns the ${info.facet} facet of this node (BMC ${node.bmc.scheme}://)`, 'engine');
        this.setPhase(node.id, rt, undefined, 'failed');
        return;
      }
      slots = [`step:${step}`];
      if (info.serialize === 'bmc') slots.push(`bmc:${node.bmc.scheme}://${node.bmc.host}:${node.bmc.port ?? ''}`);
      if (!this.slots.tryAcquire(slots, node.id)) {
        rt.waitingForSlot = step;
        return;
      }
    }
    rt.waitingForSlot = undefined;
    const startedAt = Date.now();
    const timeoutMs = this.options.timeouts[step] ?? info.timeoutMs;
    const abort = new AbortController();
    const inflight: InFlight = {
      step,
      startedAt,
      deadline: startedAt + timeoutMs,
      abort,
      slots,
      timer: setTimeout(() => this.fail(node.id, inflight, 'timeout', `${step} not confirmed within ${formatMs(timeoutMs)}`), timeoutMs),
    };
    rt.inflight = inflight;
    if (!driver) return;
    this.metrics.actionsInFlight.inc({ step });
    const release = () => {
      if (!inflight.slots) return;
      this.metrics.actionsInFlight.dec({ step });
      for (const waiter of this.slots.release(inflight.slots)) this.schedule(waiter);
      inflight.slots = undefined;
    };
    // The start-up lint guarantees a handler for every action step a driver's facet owns.
    driver.steps[step]!({ step, node, desired: this.state.desired(node.id), bmcPassword: this.state.bmcPassword(node.id), signal: abort.signal })
      .then(release, (err: unknown) => {
        release();
        this.fail(node.id, inflight, 'failed', err instanceof Error ? err.message : String(err));
      });
  }

  private fail(id: NodeId, inflight: InFlight, outcome: 'failed' | 'timeout', reason: string): void {
    const rt = this.runtimes.get(id);
    if (!rt || rt.inflight !== inflight) return;
    const info = this.graph.step(inflight.step);
    this.finish(id, rt, outcome);
    rt.failures++;
    rt.lastError = `${inflight.step}: ${reason}`;
    this.log.warn({ node: id, step: inflight.step, outcome, failures: rt.failures, reason }, 'step failed');
    if (rt.failures > this.options.retryBudget) {
      this.state.setHold(id, `${inflight.step} failed ${rt.failures} times; last: ${reason}`, 'engine');
    } else {
      rt.notBefore = Date.now() + Math.min(this.options.backoffMaxMs, this.options.backoffBaseMs * 2 ** (rt.failures - 1));
    }
    // Recorded last: the observation re-plans the node, from the failure value, along the recovery path.
    this.state.observe(id, info.facet, info.failsTo, `engine:${outcome}`, reason);
    this.schedule(id);
  }

  private finish(id: NodeId, rt: Runtime, outcome: 'confirmed' | 'superseded' | 'failed' | 'timeout'): void {
    const inflight = rt.inflight!;
    clearTimeout(inflight.timer);
    // Also when confirmed: a module's follow-up work for the step (a poll loop, a forced power-off
    // after a grace period) must not act on a node that has moved on to its next step.
    inflight.abort.abort(new Error(`step ${outcome}`));
    rt.inflight = undefined;
    this.metrics.steps.inc({ step: inflight.step, outcome });
    this.metrics.stepSeconds.observe({ step: inflight.step, outcome }, (Date.now() - inflight.startedAt) / 1000);
    this.log.debug({ node: id, step: inflight.step, outcome }, 'step finished');
  }

  /** Writes what the facet machines' reactions imply (power off ⇒ run off), so it is on record. */
  private recordImplied(id: NodeId, vector: FacetValue[]): void {
    const settled = this.planner.settle(vector);
    const observed = this.state.observed(id);
    this.definitions.forEach((d, i) => {
      const raw = observed[d.name]?.value ?? d.initial;
      // Only facets whose stored value is what the planner sees; abstracted values are not facts.
      if (settled[i] !== vector[i] && raw === vector[i]) this.state.observe(id, d.name, settled[i]!, 'implied');
    });
  }

  /** Records the node's phase (from `plan`, unless given) and tells listeners when it or the node's idleness changed. */
  private setPhase(id: NodeId, rt: Runtime, plan: Plan | undefined, phase: NodePhase = this.phaseOf(id, plan!, rt)): void {
    const idle = plan ? plan.steps.length === 0 : rt.idle;
    if (rt.phase === phase && rt.idle === idle) return;
    rt.phase = phase;
    rt.idle = idle;
    this.emit('phase', id, phase);
  }

  private phaseOf(id: NodeId, plan: Plan, rt: Runtime | undefined): NodePhase {
    if (this.state.hold(id)) return 'failed';
    if (this.state.isFrozen(id)) return 'frozen';
    if (!plan.reachable) return 'blocked';
    if (plan.steps.length === 0 && !rt?.inflight) return 'converged';
    return 'converging';
  }
}

export function describeTarget(target: Target): string {
  const parts = Object.entries(target).map(([f, v]) => `${f}=${v!.join('|')}`);
  return parts.length ? parts.join(' ') : '(nothing)';
}

function describeVector(named: Record<string, string>): string {
  return Object.entries(named)
    .map(([f, v]) => `${f}=${v}`)
    .join(' ');
}

function formatMs(ms: number): string {
  return ms >= 1000 ? `${ms / 1000} s` : `${ms} ms`;
}
