// Rolling changes: one desired-state patch applied over a group of nodes (a label selector) a few
// nodes at a time, so that at most `maxUnavailable` nodes of the group are unavailable at once.
//
// A node of the group is unavailable while the rollout has changed it and it has not yet converged
// on the new desired state (engine phase `converged`), and also whenever the engine does not call it
// converged for another reason (converging, failed, lost, blocked; frozen with steps to take): as
// with Kubernetes' maxUnavailable, nodes already down use up the budget. Changing a node that is
// already down costs nothing, so those are changed first. A node held as failed fails the rollout:
// no new node starts until the operator resumes it (after `shoal retry`). Nodes already at the
// target are done at once. The group is the nodes the selector matched when the rollout started;
// nodes of another rollout still under way (running, paused or failed) cannot be in it.
//
// Progress is driven by the executor's phase changes, which it emits once it has evaluated a node,
// so the controller reads a settled status and never polls. Everything the rollout decides is a
// `rollout` record in the event log (so it is on the event stream, and the rollout picks up where it
// was after a restart); starting a node writes its `in-progress` record and its new desired state in
// one transaction.
import type { Logger } from 'pino';
import { z } from 'zod';
import type { NodeId, NodeRecord } from '../domain/node.js';
import { parseSelector } from '../domain/selector.js';
import type { DesiredPatch, DesiredState } from '../domain/state.js';
import { ConflictError, NotFoundError, type ClusterState } from '../state/cluster-state.js';
import type { DesiredVocabulary } from './desired.js';
import type { Executor, NodePhase, NodeStatus } from './executor.js';

export const MaxUnavailableSchema = z.union([
  z.number().int().min(1, 'maxUnavailable is at least 1'),
  z.string().regex(/^(100|[1-9][0-9]?)%$/, 'maxUnavailable is a node count (an integer ≥ 1) or a percentage of the group, from "1%" to "100%"'),
]);

/** A rollout request, with the desired patch checked against the facets that can be desired. */
export function rolloutInputSchema(desired: DesiredVocabulary) {
  return z
    .object({
      selector: z.string().trim().min(1, 'a rollout needs a label selector, e.g. role=compute,rack=r1'),
      desired: desired.patchSchema,
      maxUnavailable: MaxUnavailableSchema,
    })
    .strict();
}
export type RolloutInput = z.infer<ReturnType<typeof rolloutInputSchema>>;

export type RolloutStatus = 'running' | 'paused' | 'failed' | 'done' | 'cancelled';
export type RolloutNodeState = 'pending' | 'in-progress' | 'done' | 'failed';
const TERMINAL: RolloutStatus[] = ['done', 'cancelled'];

/** The request cannot be carried out as asked (nothing selected, a patch some nodes refuse): 422. */
export class RolloutRejected extends Error {}

interface RolloutSpec {
  selector: string;
  desired: DesiredPatch;
  maxUnavailable: number | string;
  /** maxUnavailable resolved against the group's size when the rollout was created. */
  limit: number;
  createdAt: number;
  createdBy: string;
}

interface Member {
  id: NodeId;
  name: string;
  state: RolloutNodeState;
  reason?: string;
}

interface Rollout {
  id: string;
  spec: RolloutSpec;
  status: RolloutStatus;
  /** In rollout order (by node name). */
  members: Map<NodeId, Member>;
  order: NodeId[];
  /** Every node before it in `order` has been started or is done. */
  cursor: number;
  /** Members that use up the budget, as of their last evaluation. */
  unavailable: Set<NodeId>;
  /** Members not done yet: the rollout is done at 0. */
  notDone: number;
  /** Members to evaluate on the next pass; `everyone` evaluates them all. */
  dirty: Set<NodeId>;
  everyone: boolean;
}

export interface RolloutNodeView {
  id: NodeId;
  name: string;
  state: RolloutNodeState;
  reason?: string;
  /** The node's engine phase now. */
  phase: NodePhase;
}

export interface RolloutView {
  id: string;
  status: RolloutStatus;
  /** Why the rollout failed: its failed nodes and their reasons. */
  reason?: string;
  selector: string;
  desired: DesiredPatch;
  maxUnavailable: number | string;
  limit: number;
  createdAt: string;
  createdBy: string;
  counts: Record<RolloutNodeState, number> & { total: number };
  /**
   * While under way: members changed and not yet converged, or down for another reason. At most
   * `limit`, unless more were down already.
   */
  unavailable?: number;
  nodes?: RolloutNodeView[];
}

export class RolloutController {
  private readonly rollouts = new Map<string, Rollout>();
  /** The rollouts still under way (running, paused, failed) that each node belongs to. */
  private readonly memberOf = new Map<NodeId, Set<Rollout>>();
  private pass: NodeJS.Immediate | undefined;
  private running = false;
  private seq = 0;

  constructor(
    private readonly state: ClusterState,
    private readonly executor: Executor,
    private readonly desired: DesiredVocabulary,
    private readonly log: Logger,
  ) {
    this.load();
  }

  /** Starts following the executor's phase changes; rollouts still under way go on. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.executor.on('phase', this.onPhase);
    for (const r of this.underWay()) r.everyone = true;
    if (this.underWay().length > 0) this.schedulePass();
  }

  /** Stops following the executor; nothing is decided until start() again. */
  stop(): void {
    this.running = false;
    this.executor.off('phase', this.onPhase);
    if (this.pass) clearImmediate(this.pass);
    this.pass = undefined;
  }

  private readonly onPhase = (id: NodeId): void => {
    const rollouts = this.memberOf.get(id);
    if (!rollouts) return;
    for (const r of rollouts) r.dirty.add(id);
    this.schedulePass();
  };

  // ---- operator calls

  async create(input: RolloutInput, writer: string): Promise<RolloutView> {
    const selects = parseSelector(input.selector);
    const nodes = this.state.selectNodes(selects).sort(byName);
    if (nodes.length === 0) {
      throw new RolloutRejected(`the selector "${input.selector}" matches no node; nothing to roll out (see which nodes it selects with GET /api/v1/nodes?selector=…)`);
    }
    const busy = new Map<Rollout, NodeRecord[]>();
    for (const n of nodes) for (const r of this.memberOf.get(n.id) ?? []) busy.set(r, [...(busy.get(r) ?? []), n]);
    if (busy.size > 0) {
      const [r, clash] = [...busy][0]!;
      throw new ConflictError(
        `${clash.length} of the ${nodes.length} selected nodes (${listNames(clash)}) are in rollout ${r.id}, which is ${r.status}; wait until it is done or cancel it`,
      );
    }
    const refused = nodes.flatMap((n) => {
      try {
        this.desired.apply(this.state.desired(n.id), input.desired);
        return [];
      } catch (err) {
        return [`${n.name}: ${(err as Error).message}`];
      }
    });
    if (refused.length > 0) throw new RolloutRejected(`the change cannot apply to ${refused.length} of the selected nodes: ${refused.slice(0, 5).join('; ')}${refused.length > 5 ? '; …' : ''}`);

    const id = `ro-${++this.seq}`;
    const spec: RolloutSpec = {
      selector: input.selector,
      desired: input.desired,
      maxUnavailable: input.maxUnavailable,
      limit: resolveMaxUnavailable(input.maxUnavailable, nodes.length),
      createdAt: Date.now(),
      createdBy: writer,
    };
    const r = newRollout(id, spec, 'running');
    this.state.record('rollout', null, id, null, 'running', JSON.stringify(spec), writer);
    for (const n of nodes) {
      const member: Member = { id: n.id, name: n.name, state: 'pending' };
      const status = this.executor.status(n.id);
      if (this.hasChange(r, n.id) && status.phase === 'converged') {
        member.state = 'done';
        member.reason = 'already at the target';
      }
      if (!isUp(status)) r.unavailable.add(n.id);
      r.members.set(n.id, member);
      r.order.push(n.id);
      if (member.state !== 'done') r.notDone++;
      this.state.record('rollout', n.id, id, null, member.state, member.reason ?? null, writer);
    }
    // Claimed now, so that a second request in the meantime sees the conflict; driven once durable.
    this.claim(r);
    try {
      await this.state.flush();
    } catch (err) {
      this.release(r);
      throw err;
    }
    this.rollouts.set(id, r);
    this.log.info({ rollout: id, selector: spec.selector, desired: spec.desired, limit: spec.limit, nodes: nodes.length }, 'rollout started');
    r.everyone = true;
    this.schedulePass();
    return this.view(r, true);
  }

  list(): RolloutView[] {
    return [...this.rollouts.values()].map((r) => this.view(r, false));
  }

  get(id: string): RolloutView {
    return this.view(this.find(id), true);
  }

  /** No new node starts; nodes under way go on converging. */
  async pause(id: string, writer: string): Promise<RolloutView> {
    const r = this.find(id);
    if (r.status !== 'paused') {
      if (r.status !== 'running') throw new ConflictError(`rollout ${id} is ${r.status}; only a running rollout can be paused`);
      this.setStatus(r, 'paused', writer);
      await this.state.flush();
    }
    return this.view(r, true);
  }

  /** Goes on from a pause, or from a failure once its failed nodes are released (`shoal retry`). */
  async resume(id: string, writer: string): Promise<RolloutView> {
    const r = this.find(id);
    if (r.status === 'running') return this.view(r, true);
    if (r.status !== 'paused' && r.status !== 'failed') throw new ConflictError(`rollout ${id} is ${r.status}; only a paused or failed rollout can be resumed`);
    const failed = [...r.members.values()].filter((m) => m.state === 'failed');
    const held = failed.filter((m) => this.state.hold(m.id) !== undefined);
    if (held.length > 0) {
      throw new ConflictError(
        `${listNames(held)} ${held.length === 1 ? 'is' : 'are'} still held as failed (${held[0]!.name}: ${this.state.hold(held[0]!.id)}); release ${held.length === 1 ? 'it' : 'them'} with POST /nodes/{ref}/retry (shoal retry NODE), then resume`,
      );
    }
    // A failed node tries again: still carrying the change, it is under way; otherwise it is changed again.
    for (const m of failed) this.setMember(r, m, this.hasChange(r, m.id) ? 'in-progress' : 'pending', undefined, writer);
    this.setStatus(r, 'running', writer);
    r.cursor = 0;
    r.everyone = true;
    await this.state.flush();
    this.schedulePass();
    return this.view(r, true);
  }

  /** Stops the rollout for good: pending nodes keep their desired state; nodes under way go on converging. */
  async cancel(id: string, writer: string): Promise<RolloutView> {
    const r = this.find(id);
    if (r.status !== 'cancelled') {
      if (r.status === 'done') throw new ConflictError(`rollout ${id} is already done`);
      this.setStatus(r, 'cancelled', writer);
      await this.state.flush();
    }
    return this.view(r, true);
  }

  // ---- the control loop

  private schedulePass(): void {
    if (this.pass || !this.running) return;
    // Once per turn, for all the turn's phase changes.
    this.pass = setImmediate(() => this.runPass());
  }

  private runPass(): void {
    this.pass = undefined;
    for (const r of this.underWay()) {
      try {
        this.advance(r);
      } catch (err) {
        this.log.error({ rollout: r.id, err }, 'rollout pass failed');
      }
    }
  }

  private advance(r: Rollout): void {
    const ids = r.everyone ? [...r.order] : [...r.dirty];
    r.everyone = false;
    r.dirty.clear();
    for (const id of ids) this.evaluate(r, id);
    if (r.status === 'running') this.startNodes(r);
    if (r.notDone === 0) this.setStatus(r, 'done', `rollout:${r.id}`);
  }

  /** Brings one member's record up to date with the engine's view of the node. */
  private evaluate(r: Rollout, id: NodeId): void {
    const m = r.members.get(id);
    if (!m) return;
    if (!this.state.node(id)) {
      // Removed from the inventory: no longer part of the group (its records went with it).
      r.members.delete(id);
      r.unavailable.delete(id);
      if (m.state !== 'done') r.notDone--;
      this.memberOf.get(id)?.delete(r);
      return;
    }
    const status = this.executor.status(id);
    const converged = status.phase === 'converged';
    const hasChange = this.hasChange(r, id);
    const writer = `rollout:${r.id}`;
    switch (m.state) {
      case 'in-progress':
        if (!hasChange) this.setMember(r, m, 'failed', `its desired state was changed outside the rollout and no longer asks for ${describePatch(r.spec.desired)}`, writer);
        else if (status.phase === 'failed') this.setMember(r, m, 'failed', status.reason ?? 'held as failed', writer);
        else if (converged) this.setMember(r, m, 'done', undefined, writer);
        break;
      case 'failed':
        // Released and converged on the change after all (e.g. `shoal retry`).
        if (hasChange && converged) this.setMember(r, m, 'done', undefined, writer);
        break;
      case 'pending':
        if (hasChange && converged) this.setMember(r, m, 'done', 'already at the target', writer);
        break;
      case 'done':
        break;
    }
    if (m.state === 'in-progress' || m.state === 'failed' || !isUp(status)) r.unavailable.add(id);
    else r.unavailable.delete(id);
  }

  private startNodes(r: Rollout): void {
    // Nodes down already cost nothing to change: they count against the budget either way.
    for (const id of [...r.unavailable]) {
      const m = r.members.get(id);
      if (m?.state === 'pending') this.startMember(r, m);
      if (r.status !== 'running') return;
    }
    while (r.unavailable.size < r.spec.limit && r.cursor < r.order.length) {
      const id = r.order[r.cursor]!;
      const m = r.members.get(id);
      if (m?.state === 'pending') {
        this.evaluate(r, id);
        if (m.state === 'pending') this.startMember(r, m);
        if (r.status !== 'running') return;
      }
      if (m?.state !== 'pending') r.cursor++;
    }
  }

  private startMember(r: Rollout, m: Member): void {
    const writer = `rollout:${r.id}`;
    const desired = this.state.desired(m.id);
    try {
      this.desired.apply(desired, r.spec.desired);
    } catch (err) {
      this.setMember(r, m, 'failed', `the change cannot apply: ${(err as Error).message}`, writer);
      return;
    }
    // Recorded first: the desired change below joins the same transaction.
    this.setMember(r, m, 'in-progress', undefined, writer);
    r.unavailable.add(m.id);
    if (!includesPatch(desired, r.spec.desired)) {
      this.state.setDesired(m.id, r.spec.desired, writer).catch((err: unknown) => this.log.error({ rollout: r.id, node: m.name, err }, 'rollout could not write desired state'));
    }
  }

  // ---- records

  private setMember(r: Rollout, m: Member, state: RolloutNodeState, reason: string | undefined, writer: string): void {
    if (m.state === state && m.reason === reason) return;
    this.state.record('rollout', m.id, r.id, m.state, state, reason ?? null, writer);
    r.notDone += (m.state === 'done' ? 1 : 0) - (state === 'done' ? 1 : 0);
    m.state = state;
    if (reason === undefined) delete m.reason;
    else m.reason = reason;
    if (state === 'failed') this.log.warn({ rollout: r.id, node: m.name, reason }, 'rollout node failed');
    else this.log.debug({ rollout: r.id, node: m.name, state, reason }, 'rollout node');
    if (state === 'failed' && (r.status === 'running' || r.status === 'paused')) this.setStatus(r, 'failed', writer);
  }

  private setStatus(r: Rollout, status: RolloutStatus, writer: string): void {
    if (r.status === status) return;
    this.state.record('rollout', null, r.id, r.status, status, JSON.stringify(r.spec), writer);
    r.status = status;
    this.log.info({ rollout: r.id, status }, 'rollout status');
    if (TERMINAL.includes(status)) this.release(r);
  }

  private load(): void {
    const byNode: { nodeId: NodeId; rollout: string; state: RolloutNodeState; reason: string | null }[] = [];
    for (const f of this.state.loadedRecords('rollout')) {
      this.seq = Math.max(this.seq, Number(/^ro-(\d+)$/.exec(f.facet)?.[1] ?? 0));
      if (f.nodeId === null) this.rollouts.set(f.facet, newRollout(f.facet, JSON.parse(f.detail!) as RolloutSpec, f.value as RolloutStatus));
      else byNode.push({ nodeId: f.nodeId, rollout: f.facet, state: f.value as RolloutNodeState, reason: f.detail });
    }
    for (const { nodeId, rollout, state, reason } of byNode) {
      const r = this.rollouts.get(rollout);
      const node = this.state.node(nodeId);
      if (!r || !node) continue;
      r.members.set(nodeId, { id: nodeId, name: node.name, state, ...(reason !== null ? { reason } : {}) });
    }
    for (const r of this.rollouts.values()) {
      const members = [...r.members.values()].sort(byName);
      r.members = new Map(members.map((m) => [m.id, m]));
      r.order = members.map((m) => m.id);
      r.notDone = members.filter((m) => m.state !== 'done').length;
      if (TERMINAL.includes(r.status)) continue;
      this.claim(r);
      r.everyone = true;
    }
    if (this.underWay().length > 0) this.log.info({ rollouts: this.underWay().map((r) => `${r.id} (${r.status})`) }, 'rollouts resumed from the store');
  }

  // ---- helpers

  private find(id: string): Rollout {
    const r = this.rollouts.get(id);
    if (!r) throw new NotFoundError(`no rollout "${id}"`);
    return r;
  }

  private underWay(): Rollout[] {
    return [...this.rollouts.values()].filter((r) => !TERMINAL.includes(r.status));
  }

  private claim(r: Rollout): void {
    for (const id of r.order) {
      let set = this.memberOf.get(id);
      if (!set) this.memberOf.set(id, (set = new Set()));
      set.add(r);
    }
  }

  private release(r: Rollout): void {
    for (const id of r.order) {
      const set = this.memberOf.get(id);
      set?.delete(r);
      if (set?.size === 0) this.memberOf.delete(id);
    }
  }

  private hasChange(r: Rollout, id: NodeId): boolean {
    return includesPatch(this.state.desired(id), r.spec.desired);
  }

  private view(r: Rollout, withNodes: boolean): RolloutView {
    const counts = { pending: 0, 'in-progress': 0, done: 0, failed: 0, total: r.members.size };
    const nodes: RolloutNodeView[] = [];
    for (const m of r.members.values()) {
      counts[m.state]++;
      if (withNodes) nodes.push({ id: m.id, name: m.name, state: m.state, ...(m.reason ? { reason: m.reason } : {}), phase: this.executor.status(m.id).phase });
    }
    const failed = [...r.members.values()].filter((m) => m.state === 'failed');
    return {
      id: r.id,
      status: r.status,
      ...(r.status === 'failed' && failed.length > 0 ? { reason: failed.map((m) => `${m.name}: ${m.reason ?? 'failed'}`).join('; ') } : {}),
      selector: r.spec.selector,
      desired: r.spec.desired,
      maxUnavailable: r.spec.maxUnavailable,
      limit: r.spec.limit,
      createdAt: new Date(r.spec.createdAt).toISOString(),
      createdBy: r.spec.createdBy,
      counts,
      ...(TERMINAL.includes(r.status) ? {} : { unavailable: r.unavailable.size }),
      ...(withNodes ? { nodes } : {}),
    };
  }
}

/**
 * Whether a node that the rollout has not changed (or is done with) is available: converged, or
 * frozen with nothing to do (in maintenance, but up; a frozen appliance must not look like a rack
 * that is all down, whose nodes would then all be changed at once).
 */
function isUp(status: NodeStatus): boolean {
  return status.phase === 'converged' || (status.phase === 'frozen' && status.plan.reachable && status.plan.steps.length === 0);
}

/** `5` stays 5; `"10%"` of 30 nodes is 3 (rounded down, as Kubernetes does), and never less than 1. */
export function resolveMaxUnavailable(value: number | string, groupSize: number): number {
  if (typeof value === 'number') return value;
  const percent = Number(value.slice(0, -1));
  return Math.max(1, Math.floor((groupSize * percent) / 100));
}

/** Whether the desired state already says what the patch says (null: the facet is unset). */
export function includesPatch(desired: DesiredState, patch: DesiredPatch): boolean {
  return Object.entries(patch).every(([facet, value]) =>
    value === null ? desired[facet] === undefined : value === undefined || desired[facet] === value,
  );
}

export function describePatch(patch: DesiredPatch): string {
  return Object.entries(patch)
    .map(([facet, value]) => `${facet}=${value ?? '-'}`)
    .join(' ');
}

function newRollout(id: string, spec: RolloutSpec, status: RolloutStatus): Rollout {
  return { id, spec, status, members: new Map(), order: [], cursor: 0, unavailable: new Set(), notDone: 0, dirty: new Set(), everyone: false };
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name.localeCompare(b.name, 'en', { numeric: true });
}

function listNames(nodes: { name: string }[]): string {
  return nodes.length > 5 ? `${nodes.slice(0, 5).map((n) => n.name).join(', ')}, …` : nodes.map((n) => n.name).join(', ');
}
