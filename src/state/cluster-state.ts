// The appliance's view of its cluster, held in memory and written through the store. Operators
// write desired state and inventory (durable before the call returns); modules write observations
// (batched into one transaction per turn of the event loop, so thousands of polls cost one commit).
// On a store other appliances write to (PostgreSQL), it also follows the store's feed and applies
// their events, through the same path that loads the facts at start-up (`apply`).
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { FacetName, NodeId, NodeRecord, NodeSpec } from '../domain/node.js';
import { applyDesiredPatch, type DesiredPatch, type DesiredState, type Observation, type ObservedState } from '../domain/state.js';
import { StoreUnavailableError, type Change, type Fact, type Feed, type FeedBatch, type FollowOptions, type LeaseClaim, type RecordKind, type ShoalEvent, type StateStore } from './store.js';
import { HARDWARE_FACET, parseHardware } from '../contracts/hardware.js';
import type { Selector } from '../domain/selector.js';

export class ConflictError extends Error {}

/**
 * Writes arriving within this window share one transaction (group commit): a durable write waits
 * at most this long, and a burst of thousands of observations costs one commit, not thousands.
 */
const GROUP_COMMIT_MS = 10;
/** While the store cannot be reached, the changes memory holds are tried again this often (doubling up to the max). */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5_000;
export class NotFoundError extends Error {}

export interface ClusterStateEvents {
  /** Committed events, in revision order. */
  events: [ShoalEvent[]];
  /** Something about the node changed in memory (before commit): re-plan it. */
  node: [NodeId];
  /** Appliance-wide setting changed (freeze). */
  appliance: [];
  /** Another appliance changed a record (fact undefined: removed it); its owner updates what it holds. */
  record: [RecordChange];
  /** A batch of observations failed to commit. */
  error: [unknown];
  /** The store could not be reached (the error), or could again (undefined); meanwhile memory keeps what it could not commit. */
  store: [StoreUnavailableError | undefined];
}

export interface ClusterStateOptions {
  /** Refuses a desired state whose facets contradict each other (throws); given by whoever knows the facets. */
  checkDesired?: (next: DesiredState) => void;
  /**
   * Follow the store's feed (a store with `follow`: other appliances write to it) from the revision
   * loaded, applying the others' events; `events` then come from the feed, this appliance's own
   * included, so they reach listeners in revision order without gaps.
   */
  follow?: FollowOptions;
  /**
   * The appliance that enrolls nodes through this state, recorded with each (`engine`/`home`):
   * a node without an address belongs to it (src/state/ownership.ts). Unset: nothing recorded.
   */
  enrolledBy?: string;
  /** The leases each commit carries (taken when its batch is), so that a store with leases refuses it once one was taken over. */
  fence?: () => readonly LeaseClaim[];
}

export interface RecordChange {
  kind: RecordKind;
  nodeId: NodeId | null;
  key: string;
  /** The record now; undefined: removed. */
  fact: Fact | undefined;
}

/** A fact as one event of the log (or one loaded fact) states it; value null removes it. */
type FactUpdate = Omit<Fact, 'value'> & { value: string | null };

/** What applying facts changed, for the listeners. */
interface Touched {
  nodes: Set<NodeId>;
  appliance: boolean;
  records: RecordChange[];
}

/** While the feed runs: this appliance's changes it has not passed yet. */
interface OwnChanges {
  /** The last revision the feed handed over (or the one loaded). */
  rev: number;
  /** Own committed events ahead of the feed, by revision: their fact's key. */
  revs: Map<number, string>;
  /** Own changes (queued, committing, or committed ahead of the feed) per fact key. */
  unpassed: Map<string, number>;
}

const factKey = (c: { nodeId: NodeId | null; kind: string; facet: string }): string => `${c.nodeId ?? ''}\0${c.kind}\0${c.facet}`;

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
  private readonly homes = new Map<NodeId, string>();
  private readonly secrets = new Map<NodeId, string>();
  private frozen = false;
  /** Records of kinds the state layer does not interpret (e.g. rollouts), by kind and key, as loaded and as other appliances changed them. */
  private readonly records = new Map<string, Map<string, Fact>>();
  private pending: Change[] = [];
  private own: OwnChanges | undefined;
  private feed: Feed | undefined;
  private flushing: Promise<ShoalEvent[]> | undefined;
  /** Settles when the last batch taken has been committed (or has failed). */
  private committed: Promise<void> = Promise.resolve();
  /** Why the last commit could not reach the store, until one does again. */
  private unreachable: StoreUnavailableError | undefined;
  /** Changes memory holds whose commit could not reach the store, in the order they were made: committed first once it answers. */
  private unsent: Change[] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = RETRY_MIN_MS;
  /** Set while the retry takes its batch: the one flush let through while the store is unreachable. */
  private probing = false;
  /** The leases held when the store went, and those of batches that could not reach it: what kept changes are fenced by. */
  private keptFence: readonly LeaseClaim[] = [];
  revision = 0;

  private constructor(
    private readonly store: StateStore,
    private readonly options: ClusterStateOptions,
  ) {
    super();
    this.setMaxListeners(0);
  }

  /** Loads the facts; with `options.follow`, follows the store's feed from there (stop it with close). */
  static async open(store: StateStore, options: ClusterStateOptions = {}): Promise<ClusterState> {
    const state = new ClusterState(store, options);
    const { facts, rev } = await store.load();
    state.revision = rev;
    // A node's spec may be newer than its other facts (an update): nodes first, then what they hold.
    const touched = noneTouched();
    for (const f of facts) if (f.kind === 'node') state.apply(f, 'store', touched);
    for (const f of facts) if (f.kind !== 'node') state.apply(f, 'store', touched);
    if (options.follow) {
      if (!store.follow) throw new Error('this store has no feed to follow: only one appliance writes to it');
      state.own = { rev, revs: new Map(), unpassed: new Map() };
      state.feed = await store.follow(rev, (batch) => state.receive(batch), { ...options.follow, connection: (lost) => state.feedConnection(lost) });
    }
    return state;
  }

  /** Stops following the feed (when it does) and trying an unreachable store again; the store stays open. */
  async close(): Promise<void> {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.feed?.close();
    this.feed = undefined;
  }

  /**
   * The one way a fact changes memory, for the facts loaded at start-up and for the events other
   * appliances wrote (this appliance's own writes change memory before they commit, in the write
   * methods, and are not applied again).
   */
  private apply(f: FactUpdate, source: string, touched: Touched): void {
    const id = f.nodeId;
    if (f.kind === 'node') {
      const current = this.nodes.get(id!);
      if (current) this.unindex(current);
      if (f.value === null) this.forget(id!);
      else this.index({ id: id!, ...(JSON.parse(f.value) as NodeSpec) });
      touched.nodes.add(id!);
      return;
    }
    if (f.kind === 'appliance') {
      if (f.facet === 'freeze') this.frozen = f.value === 'true';
      touched.appliance = true;
      return;
    }
    // A removed node's facts end with it.
    if (id !== null && !this.nodes.has(id)) return;
    if (RECORD_KINDS.has(f.kind)) {
      const kind = f.kind as RecordKind;
      let records = this.records.get(kind);
      if (!records) this.records.set(kind, (records = new Map()));
      const fact = f.value === null ? undefined : { ...f, value: f.value };
      if (fact) records.set(factKey(f), fact);
      else records.delete(factKey(f));
      touched.records.push({ kind, nodeId: id, key: f.facet, fact });
      return;
    }
    if (id === null) return;
    const { facet, value } = f;
    if (f.kind === 'desired') {
      if (value === null) delete this.desiredOf(id)[facet];
      else this.desiredOf(id)[facet] = value;
    } else if (f.kind === 'observed') {
      if (value === null) delete this.observedOf(id)[facet];
      else this.observedOf(id)[facet] = { value, ...(f.detail ? { detail: f.detail } : {}), at: f.at, source };
    } else if (f.kind === 'secret') {
      if (value === null) this.secrets.delete(id);
      else this.secrets.set(id, value);
    } else if (f.kind === 'engine' && facet === 'hold') {
      if (value === null) this.holds.delete(id);
      else this.holds.set(id, value);
    } else if (f.kind === 'engine' && facet === 'frozen') {
      if (value === null) this.frozenNodes.delete(id);
      else this.frozenNodes.add(id);
    } else if (f.kind === 'engine' && facet === 'home') {
      if (value === null) this.homes.delete(id);
      else this.homes.set(id, value);
    }
    touched.nodes.add(id);
  }

  /**
   * A batch from the feed. Own events are not applied again (memory had them before they committed)
   * and an event from elsewhere is skipped where an own change to the same fact comes later in the
   * log (it is queued, committing, or committed ahead of the feed): memory already holds the value
   * the log ends with.
   */
  private async receive({ events, values }: FeedBatch): Promise<void> {
    // Own commits settle first, so that the feed knows their revisions as own when it reaches them.
    await this.committed;
    const own = this.own!;
    const touched = noneTouched();
    const fresh: ShoalEvent[] = [];
    for (const e of events) {
      // Handed over already (a feed never repeats one, but memory must not depend on it).
      if (e.rev <= own.rev) continue;
      own.rev = e.rev;
      fresh.push(e);
      const key = own.revs.get(e.rev);
      if (key !== undefined) {
        own.revs.delete(e.rev);
        this.passed(key);
        continue;
      }
      if (own.unpassed.has(factKey(e))) continue;
      // The log holds no secret or token hash: the feed read them beside it.
      const value = e.kind === 'secret' || e.kind === 'user' ? (e.new === null ? null : (values.get(e.rev) ?? null)) : e.new;
      this.apply({ nodeId: e.nodeId, kind: e.kind, facet: e.facet, value, detail: e.detail, rev: e.rev, at: e.at, writer: e.writer }, e.writer, touched);
    }
    if (fresh.length === 0) return;
    this.revision = Math.max(this.revision, own.rev);
    this.emit('events', fresh);
    for (const change of touched.records) this.emit('record', change);
    for (const id of touched.nodes) this.emit('node', id);
    if (touched.appliance) this.emit('appliance');
  }

  /** An own change to `key` is behind the feed now (or failed to commit). */
  private passed(key: string): void {
    const unpassed = this.own!.unpassed;
    const left = (unpassed.get(key) ?? 0) - 1;
    if (left > 0) unpassed.set(key, left);
    else unpassed.delete(key);
  }

  /** Every change goes through here, so that the feed knows which facts have an own change on the way. */
  private queue(change: Change): void {
    this.pending.push(change);
    if (this.own) this.own.unpassed.set(factKey(change), (this.own.unpassed.get(factKey(change)) ?? 0) + 1);
  }

  /** Drops what memory holds of a removed node. */
  private forget(id: NodeId): void {
    this.desiredByNode.delete(id);
    this.observedByNode.delete(id);
    this.holds.delete(id);
    this.frozenNodes.delete(id);
    this.homes.delete(id);
    this.secrets.delete(id);
    for (const records of this.records.values()) for (const [key, f] of records) if (f.nodeId === id) records.delete(key);
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

  /** The appliance the node was enrolled through, where that was recorded (ClusterStateOptions.enrolledBy). */
  home(id: NodeId): string | undefined {
    return this.homes.get(id);
  }

  /**
   * The records of one kind as loaded at start-up and as other appliances changed them since (not
   * this appliance's own record writes: their owner holds those); their owner (e.g. the rollout
   * controller) rebuilds its state from them, and follows `record` after.
   */
  loadedRecords(kind: RecordKind): readonly Fact[] {
    return [...(this.records.get(kind)?.values() ?? [])];
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
      this.queue({ nodeId: node.id, kind: 'node', facet: 'spec', old: null, value: JSON.stringify(spec), writer });
      if (bmcPassword !== undefined) {
        this.secrets.set(node.id, bmcPassword);
        this.queue({ nodeId: node.id, kind: 'secret', facet: 'bmc', old: null, value: bmcPassword, writer });
      }
      if (this.options.enrolledBy !== undefined) {
        this.homes.set(node.id, this.options.enrolledBy);
        this.queue({ nodeId: node.id, kind: 'engine', facet: 'home', old: null, value: this.options.enrolledBy, writer });
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
    this.queue({ nodeId: node.id, kind: 'node', facet: 'spec', old: specJson(current), value: JSON.stringify(spec), writer });
    if (bmcPassword !== undefined) {
      this.queue({ nodeId: node.id, kind: 'secret', facet: 'bmc', old: this.secrets.get(node.id) ?? null, value: bmcPassword, writer });
      this.secrets.set(node.id, bmcPassword);
    }
    await this.flush();
    this.emit('node', node.id);
    return node;
  }

  async removeNode(id: NodeId, writer: string): Promise<void> {
    const node = this.resolve(id);
    this.unindex(node);
    this.forget(node.id);
    this.queue({ nodeId: node.id, kind: 'node', facet: 'spec', old: specJson(node), value: null, writer });
    await this.flush();
    this.emit('node', node.id);
  }

  async setDesired(id: NodeId, patch: DesiredPatch, writer: string): Promise<DesiredState> {
    const before = this.desired(id);
    const after = applyDesiredPatch(before, patch);
    this.options.checkDesired?.(after);
    for (const facet of new Set([...Object.keys(before), ...Object.keys(after)])) {
      if (before[facet] !== after[facet]) this.queue({ nodeId: id, kind: 'desired', facet, old: before[facet] ?? null, value: after[facet] ?? null, writer });
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
      this.queue({ nodeId: null, kind: 'appliance', facet: 'freeze', old: flag(this.frozen), value: flag(frozen), writer });
      this.frozen = frozen;
    } else {
      this.queue({ nodeId: id, kind: 'engine', facet: 'frozen', old: flag(this.frozenNodes.has(id)), value: flag(frozen), writer });
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
    this.queue({ nodeId: id, kind: 'observed', facet, old: current?.value ?? null, value, detail: detail ?? null, writer: source, at: observation.at });
    this.scheduleFlush();
    this.emit('node', id);
  }

  /** The executor's verdict that a node is held (null: released). */
  setHold(id: NodeId, reason: string | null, writer: string): void {
    const old = this.holds.get(id) ?? null;
    if (old === reason) return;
    this.queue({ nodeId: id, kind: 'engine', facet: 'hold', old, value: reason, writer });
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
    this.queue({ nodeId, kind, facet: key, old, value, detail, writer });
    this.scheduleFlush();
  }

  /** Commits everything pending (within the group-commit window) in one transaction; resolves when it is durable. */
  flush(): Promise<ShoalEvent[]> {
    // While the store cannot be reached, only the retry commits: what waits for a flush learns why now.
    if (!this.flushing && this.unreachable && !this.probing) return Promise.reject(this.unreachable);
    if (!this.flushing) {
      this.flushing = new Promise((resolve, reject) => {
        setTimeout(() => {
          const batch = [...this.unsent, ...this.pending];
          this.unsent = [];
          this.pending = [];
          this.flushing = undefined;
          if (batch.length === 0) return resolve([]);
          // The leases held when the batch is taken: what its changes were made under.
          // Kept changes were made under the leases held when the store went: they carry those too.
          const fence = unionOfClaims(this.keptFence, this.options.fence?.() ?? []);
          const carriesKept = this.keptFence.length > 0;
          // Batches commit one after another, in the order they were taken, whatever the store's latency.
          // Their revisions are noted before `committed` settles, which is what the feed waits for.
          const commit = this.committed.then(() => this.store.commit(batch, { fence })).then(
            (events) => {
              if (this.own) events.forEach((e, i) => this.own!.revs.set(e.rev, factKey(batch[i]!)));
              this.storeReached(carriesKept);
              return events;
            },
            (err: unknown) => {
              // Unreachable: memory has these changes, so they stay, to commit first once the store answers.
              if (err instanceof StoreUnavailableError) return this.storeUnreachable(err, batch, fence);
              // Reached, and refused (fenced, say): the batch is dropped, kept changes with it.
              this.storeReached(carriesKept);
              if (this.own) for (const c of batch) this.passed(factKey(c));
              throw err;
            },
          );
          this.committed = commit.then(
            () => undefined,
            () => undefined,
          );
          commit.then((events) => {
            this.revision = Math.max(this.revision, events.at(-1)?.rev ?? 0);
            // Following a feed, the feed emits every event, own ones too, in revision order.
            if (!this.feed) this.emit('events', events);
            resolve(events);
          }, reject);
        }, GROUP_COMMIT_MS);
      });
    }
    return this.flushing;
  }

  private scheduleFlush(): void {
    if (this.unreachable) return; // the retry takes it
    void this.flush().catch((err: unknown) => err instanceof StoreUnavailableError || this.emit('error', err));
  }

  /** Why the store cannot be written now (its last commit could not reach it); undefined while it can. */
  get storeUnavailable(): StoreUnavailableError | undefined {
    return this.unreachable;
  }

  /**
   * A batch that could not reach the store: kept (batches settle in the order they were taken, so
   * `unsent` keeps the order of the changes) and tried again with a backoff. The first loss is news
   * ('store' with the error); the first commit through again is too ('store' with undefined).
   */
  private storeUnreachable(err: StoreUnavailableError, batch: Change[], fence: readonly LeaseClaim[]): never {
    this.unsent.push(...batch);
    this.markUnreachable(err);
    this.keptFence = unionOfClaims(this.keptFence, fence);
    this.scheduleRetry();
    throw err;
  }

  private scheduleRetry(): void {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.retryUnsent();
    }, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  private markUnreachable(err: StoreUnavailableError): void {
    if (this.unreachable) return;
    // What is observed from now on is made under the leases held now, whatever the ownership learns meanwhile.
    this.keptFence = unionOfClaims(this.keptFence, this.options.fence?.() ?? []);
    this.unreachable = err;
    this.emit('store', err);
  }

  /** A commit reached the store (committed or refused): it can be written again, and kept changes carried by it are settled. */
  private storeReached(carriedKept: boolean): void {
    if (carriedKept) this.keptFence = [];
    if (!this.unreachable) return;
    this.unreachable = undefined;
    this.retryMs = RETRY_MIN_MS;
    this.emit('store', undefined);
  }

  /** Commits what could not be committed, and what came since; its success makes the store writable again. */
  private retryUnsent(): void {
    // Every batch taken before the loss has settled into `unsent` first.
    void this.committed.then(() => {
      this.probing = true;
      const retry = this.flush();
      this.probing = false;
      return retry.catch((e: unknown) => e instanceof StoreUnavailableError || this.emit('error', e));
    });
  }

  /**
   * What the feed knows first: its connection to the database went (a server shutting down cuts
   * it at once, before any commit fails), or it listens again, when what waits is committed now.
   */
  private feedConnection(lost: StoreUnavailableError | undefined): void {
    if (lost) return this.markUnreachable(lost);
    if (!this.unreachable) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.unsent.length > 0 || this.pending.length > 0) return this.retryUnsent();
    this.storeReached(true);
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

function noneTouched(): Touched {
  return { nodes: new Set(), appliance: false, records: [] };
}

/** The node's spec as the log stores it (the id is the event's node). */
function specJson(node: NodeRecord): string {
  const { id: _id, ...spec } = node;
  return JSON.stringify(spec);
}

/** Both lists of claims, each claim once. */
function unionOfClaims(a: readonly LeaseClaim[], b: readonly LeaseClaim[]): readonly LeaseClaim[] {
  if (a.length === 0) return b;
  const key = (c: LeaseClaim) => `${c.name}\u0000${c.holder}\u0000${c.epoch}`;
  const seen = new Set(a.map(key));
  return [...a, ...b.filter((c) => !seen.has(key(c)))];
}
