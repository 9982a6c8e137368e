// The appliance's view of its cluster, held in memory and written through the store. Operators
// write desired state and inventory (durable before the call returns); modules write observations
// (batched into one transaction per turn of the event loop, so thousands of polls cost one commit).
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { FacetName, NodeId, NodeRecord, NodeSpec } from '../domain/node.js';
import { applyDesiredPatch, type DesiredPatch, type DesiredState, type Observation, type ObservedState } from '../domain/state.js';
import type { Change, Fact, RecordKind, ShoalEvent, StateStore } from './store.js';
import { HARDWARE_FACET, parseHardware } from '../contracts/hardware.js';
import type { Selector } from '../domain/selector.js';

export class ConflictError extends Error {}

/**
 * Writes arriving within this window share one transaction (group commit): a durable write waits
 * at most this long, and a burst of thousands of observations costs one commit, not thousands.
 */
const GROUP_COMMIT_MS = 10;
export class NotFoundError extends Error {}

export interface ClusterStateEvents {
  /** Committed events, in revision order. */
  events: [ShoalEvent[]];
  /** Something about the node changed in memory (before commit): re-plan it. */
  node: [NodeId];
  /** Appliance-wide setting changed (freeze). */
  appliance: [];
  /** A batch of observations failed to commit. */
  error: [unknown];
}

export interface ClusterStateOptions {
  /** Refuses a desired state whose facets contradict each other (throws); given by whoever knows the facets. */
  checkDesired?: (next: DesiredState) => void;
}

/** Fact kinds kept as opaque records for the components that own them. */
const RECORD_KINDS = new Set<string>(['rollout', 'user', 'profile'] satisfies RecordKind[]);

export class ClusterState extends EventEmitter<ClusterStateEvents> {
  private readonly nodes = new Map<NodeId, NodeRecord>();
  private readonly ids = new Map<string, NodeId>();
  private readonly macs = new Map<string, NodeId>();
  private readonly desiredByNode = new Map<NodeId, DesiredState>();
  private readonly observedByNode = new Map<NodeId, ObservedState>();
  private readonly holds = new Map<NodeId, string>();
  private readonly frozenNodes = new Set<NodeId>();
  private readonly secrets = new Map<NodeId, string>();
  private frozen = false;
  /** Records of kinds the state layer does not interpret (e.g. rollouts), by kind, as loaded at start-up. */
  private readonly records = new Map<string, Fact[]>();
  private pending: Change[] = [];
  private flushing: Promise<ShoalEvent[]> | undefined;
  /** Settles when the last batch taken has been committed (or has failed). */
  private committed: Promise<void> = Promise.resolve();
  revision = 0;

  private constructor(
    private readonly store: StateStore,
    private readonly options: ClusterStateOptions,
  ) {
    super();
    this.setMaxListeners(0);
  }

  static async open(store: StateStore, options: ClusterStateOptions = {}): Promise<ClusterState> {
    const state = new ClusterState(store, options);
    const { facts, rev } = await store.load();
    state.revision = rev;
    for (const f of facts) {
      if (f.kind === 'node') state.index({ id: f.nodeId!, ...(JSON.parse(f.value) as NodeSpec) });
    }
    for (const f of facts) {
      const id = f.nodeId;
      if (f.kind === 'appliance' && f.facet === 'freeze') state.frozen = f.value === 'true';
      if (RECORD_KINDS.has(f.kind) && (!id || state.nodes.has(id))) {
        const records = state.records.get(f.kind);
        if (records) records.push(f);
        else state.records.set(f.kind, [f]);
      }
      if (!id || !state.nodes.has(id)) continue;
      if (f.kind === 'desired') state.desiredOf(id)[f.facet] = f.value;
      if (f.kind === 'observed') state.observedOf(id)[f.facet] = { value: f.value, ...(f.detail ? { detail: f.detail } : {}), at: f.at, source: 'store' };
      if (f.kind === 'secret') state.secrets.set(id, f.value);
      if (f.kind === 'engine' && f.facet === 'hold') state.holds.set(id, f.value);
      if (f.kind === 'engine' && f.facet === 'frozen') state.frozenNodes.add(id);
    }
    return state;
  }

  // ---- reads

  list(): NodeRecord[] {
    return [...this.nodes.values()];
  }
  /** The nodes `selector` matches; a hardware term reads the report the node's agent made. */
  selectNodes(selector: Selector): NodeRecord[] {
    const hardwareOf = (id: NodeId) => (selector.usesHardware ? parseHardware(this.observed(id)[HARDWARE_FACET]?.detail) : undefined);
    return this.list().filter((n) => selector({ labels: n.labels, hardware: hardwareOf(n.id) }));
  }


  get size(): number {
    return this.nodes.size;
  }

  node(id: NodeId): NodeRecord | undefined {
    return this.nodes.get(id);
  }

  /** By id or by name, as an operator types it. */
  resolve(ref: string): NodeRecord {
    const node = this.nodes.get(ref) ?? this.nodes.get(this.ids.get(ref) ?? '');
    if (!node) throw new NotFoundError(`no node named or with id "${ref}"`);
    return node;
  }

  byMac(mac: string): NodeRecord | undefined {
    return this.nodes.get(this.macs.get(mac.toLowerCase()) ?? '');
  }

  desired(id: NodeId): DesiredState {
    return this.desiredByNode.get(id) ?? {};
  }

  observed(id: NodeId): ObservedState {
    return this.observedByNode.get(id) ?? {};
  }

  hold(id: NodeId): string | undefined {
    return this.holds.get(id);
  }

  isFrozen(id?: NodeId): boolean {
    return this.frozen || (id !== undefined && this.frozenNodes.has(id));
  }

  bmcPassword(id: NodeId): string | undefined {
    return this.secrets.get(id);
  }

  /** The records of one kind as loaded at start-up; their owner (e.g. the rollout controller) rebuilds its state from them. */
  loadedRecords(kind: RecordKind): readonly Fact[] {
    return this.records.get(kind) ?? [];
  }

  /**
   * Pages of the event log, including every change already applied in memory: a reader that saw a
   * node's state (which is ahead of the store by up to one group commit) finds its events here.
   */
  async events(query: Parameters<StateStore['events']>[0]): Promise<ShoalEvent[]> {
    if (this.pending.length > 0 || this.flushing) await this.flush();
    await this.committed;
    return this.store.events(query);
  }

  // ---- operator writes: durable when the promise resolves

  /** Enrolls nodes all together or not at all. */
  async addNodes(entries: { spec: NodeSpec; bmcPassword?: string }[], writer: string): Promise<NodeRecord[]> {
    const names = new Set<string>();
    const macs = new Set<string>();
    for (const { spec } of entries) {
      if (this.ids.has(spec.name) || names.has(spec.name)) throw new ConflictError(`a node named ${spec.name} already exists`);
      names.add(spec.name);
      for (const mac of spec.macs) {
        const owner = this.macs.get(mac);
        if (owner || macs.has(mac)) throw new ConflictError(`MAC ${mac} of ${spec.name} already belongs to ${owner ? this.nodes.get(owner)!.name : 'another node in this request'}`);
        macs.add(mac);
      }
    }
    const records = entries.map(({ spec, bmcPassword }) => {
      const node: NodeRecord = { id: randomUUID(), ...spec };
      this.index(node);
      this.pending.push({ nodeId: node.id, kind: 'node', facet: 'spec', old: null, value: JSON.stringify(spec), writer });
      if (bmcPassword !== undefined) {
        this.secrets.set(node.id, bmcPassword);
        this.pending.push({ nodeId: node.id, kind: 'secret', facet: 'bmc', old: null, value: bmcPassword, writer });
      }
      return node;
    });
    await this.flush();
    for (const node of records) this.emit('node', node.id);
    return records;
  }

  async updateNode(id: NodeId, spec: NodeSpec, bmcPassword: string | undefined, writer: string): Promise<NodeRecord> {
    const current = this.resolve(id);
    const otherName = this.ids.get(spec.name);
    if (otherName && otherName !== current.id) throw new ConflictError(`a node named ${spec.name} already exists`);
    for (const mac of spec.macs) {
      const owner = this.macs.get(mac);
      if (owner && owner !== current.id) throw new ConflictError(`MAC ${mac} already belongs to ${this.nodes.get(owner)!.name}`);
    }
    this.unindex(current);
    const node: NodeRecord = { id: current.id, ...spec };
    this.index(node);
    this.pending.push({ nodeId: node.id, kind: 'node', facet: 'spec', old: specJson(current), value: JSON.stringify(spec), writer });
    if (bmcPassword !== undefined) {
      this.pending.push({ nodeId: node.id, kind: 'secret', facet: 'bmc', old: this.secrets.get(node.id) ?? null, value: bmcPassword, writer });
      this.secrets.set(node.id, bmcPassword);
    }
    await this.flush();
    this.emit('node', node.id);
    return node;
  }

  async removeNode(id: NodeId, writer: string): Promise<void> {
    const node = this.resolve(id);
    this.unindex(node);
    this.desiredByNode.delete(node.id);
    this.observedByNode.delete(node.id);
    this.holds.delete(node.id);
    this.frozenNodes.delete(node.id);
    this.secrets.delete(node.id);
    this.pending.push({ nodeId: node.id, kind: 'node', facet: 'spec', old: specJson(node), value: null, writer });
    await this.flush();
    this.emit('node', node.id);
  }

  async setDesired(id: NodeId, patch: DesiredPatch, writer: string): Promise<DesiredState> {
    const before = this.desired(id);
    const after = applyDesiredPatch(before, patch);
    this.options.checkDesired?.(after);
    for (const facet of new Set([...Object.keys(before), ...Object.keys(after)])) {
      if (before[facet] !== after[facet]) this.pending.push({ nodeId: id, kind: 'desired', facet, old: before[facet] ?? null, value: after[facet] ?? null, writer });
    }
    this.desiredByNode.set(id, after);
    // A new wish is a fresh start: a node held as failed tries again.
    if (this.holds.has(id)) this.setHold(id, null, writer);
    await this.flush();
    this.emit('node', id);
    return after;
  }

  async setFrozen(id: NodeId | null, frozen: boolean, writer: string): Promise<void> {
    const flag = (on: boolean) => (on ? 'true' : null);
    if (id === null) {
      this.pending.push({ nodeId: null, kind: 'appliance', facet: 'freeze', old: flag(this.frozen), value: flag(frozen), writer });
      this.frozen = frozen;
    } else {
      this.pending.push({ nodeId: id, kind: 'engine', facet: 'frozen', old: flag(this.frozenNodes.has(id)), value: flag(frozen), writer });
      if (frozen) this.frozenNodes.add(id);
      else this.frozenNodes.delete(id);
    }
    await this.flush();
    if (id === null) this.emit('appliance');
    else this.emit('node', id);
  }

  // ---- module and engine writes: applied now, committed with the next batch

  /** Records what a module discovered. Repeating the current value is not news and writes nothing. */
  observe(id: NodeId, facet: FacetName, value: string, source: string, detail?: string): void {
    if (!this.nodes.has(id)) return;
    const observed = this.observedOf(id);
    const current = observed[facet];
    if (current && current.value === value && current.detail === detail) return;
    const observation: Observation = { value, at: Date.now(), source };
    if (detail !== undefined) observation.detail = detail;
    observed[facet] = observation;
    this.pending.push({ nodeId: id, kind: 'observed', facet, old: current?.value ?? null, value, detail: detail ?? null, writer: source, at: observation.at });
    this.scheduleFlush();
    this.emit('node', id);
  }

  /** The executor's verdict that a node is held (null: released). */
  setHold(id: NodeId, reason: string | null, writer: string): void {
    const old = this.holds.get(id) ?? null;
    if (old === reason) return;
    this.pending.push({ nodeId: id, kind: 'engine', facet: 'hold', old, value: reason, writer });
    if (reason === null) this.holds.delete(id);
    else this.holds.set(id, reason);
    this.scheduleFlush();
  }

  /**
   * A record the state layer keeps but does not interpret (node null: about no one node), keyed by
   * `key` within its kind (value null: removed); committed with the next batch, so a desired change
   * written right after it in the same turn joins the same transaction.
   */
  record(kind: RecordKind, nodeId: NodeId | null, key: string, old: string | null, value: string | null, detail: string | null, writer: string): void {
    this.pending.push({ nodeId, kind, facet: key, old, value, detail, writer });
    this.scheduleFlush();
  }

  /** Commits everything pending (within the group-commit window) in one transaction; resolves when it is durable. */
  flush(): Promise<ShoalEvent[]> {
    if (!this.flushing) {
      this.flushing = new Promise((resolve, reject) => {
        setTimeout(() => {
          const batch = this.pending;
          this.pending = [];
          this.flushing = undefined;
          if (batch.length === 0) return resolve([]);
          // Batches commit one after another, in the order they were taken, whatever the store's latency.
          const commit = this.committed.then(() => this.store.commit(batch));
          this.committed = commit.then(
            () => undefined,
            () => undefined,
          );
          commit.then((events) => {
            this.revision = events.at(-1)?.rev ?? this.revision;
            this.emit('events', events);
            resolve(events);
          }, reject);
        }, GROUP_COMMIT_MS);
      });
    }
    return this.flushing;
  }

  private scheduleFlush(): void {
    void this.flush().catch((err: unknown) => this.emit('error', err));
  }

  private desiredOf(id: NodeId): DesiredState {
    let d = this.desiredByNode.get(id);
    if (!d) this.desiredByNode.set(id, (d = {}));
    return d;
  }

  private observedOf(id: NodeId): ObservedState {
    let o = this.observedByNode.get(id);
    if (!o) this.observedByNode.set(id, (o = {}));
    return o;
  }

  private index(node: NodeRecord): void {
    this.nodes.set(node.id, node);
    this.ids.set(node.name, node.id);
    for (const mac of node.macs) this.macs.set(mac, node.id);
  }

  private unindex(node: NodeRecord): void {
    this.nodes.delete(node.id);
    this.ids.delete(node.name);
    for (const mac of node.macs) this.macs.delete(mac);
  }
}

/** The node's spec as the log stores it (the id is the event's node). */
function specJson(node: NodeRecord): string {
  const { id: _id, ...spec } = node;
  return JSON.stringify(spec);
}
