// The store contract: an append-only event log with a monotonic revision, and the current facts it
// implies. SQLite (sqlite-store.ts) and PostgreSQL (postgres-store.ts) implement it, which is why
// every call is async even though better-sqlite3 is not; README.md says which to choose.
import type { NodeId } from '../domain/node.js';

/**
 * - `node`: facet `spec`, the node's enrolled spec as JSON (null: removed).
 * - `desired` / `observed`: a facet's value.
 * - `secret`: a node's BMC password; its value never enters the event log.
 * - `engine`: what the executor holds about a node (`hold`: the reason it stopped trying).
 * - `appliance`: appliance-wide settings (`freeze`).
 * - records (`RecordKind`): facts the state layer keeps for a component that interprets them; facet
 *   is the record's key. `rollout` (src/engine/rollout.ts): facet is the rollout id; without a node,
 *   its status with its spec as JSON in detail; with a node, that node's progress and why it failed.
 *   `user` (src/state/users.ts): an API user; facet is the user's name, value the SHA-256 of its
 *   token (kept out of the event log like a `secret`: the log says only that one was set), detail
 *   its role as JSON; null removes the user.
 *   `profile` (src/state/profiles.ts): without a node, a profile: facet is its name, value its
 *   settings as JSON; with a node, facet `node`, value that node's own overrides as JSON.
 */
export type RecordKind = 'rollout' | 'user' | 'profile';
export type FactKind = 'node' | 'desired' | 'observed' | 'secret' | 'engine' | 'appliance' | RecordKind;

export interface Change {
  nodeId: NodeId | null;
  kind: FactKind;
  facet: string;
  /** null removes the fact. */
  value: string | null;
  /** The value this change replaces: the caller holds current state, so the store need not look it up. */
  old: string | null;
  detail?: string | null;
  writer: string;
  at?: number;
}

export interface ShoalEvent {
  rev: number;
  at: number;
  nodeId: NodeId | null;
  kind: FactKind;
  facet: string;
  old: string | null;
  new: string | null;
  detail: string | null;
  writer: string;
}

/** An events table row as a backend's driver returns it: `rev` and `at` are numbers from SQLite, strings (bigint) from PostgreSQL. */
export interface EventRow<Int extends number | string> {
  rev: Int;
  at: Int;
  node_id: string | null;
  kind: ShoalEvent['kind'];
  facet: string;
  old: string | null;
  new: string | null;
  detail: string | null;
  writer: string;
}

export interface Fact {
  nodeId: NodeId | null;
  kind: FactKind;
  facet: string;
  value: string;
  detail: string | null;
  rev: number;
  at: number;
  /** Who wrote the event this fact comes from. */
  writer: string;
}

export interface EventQuery {
  /** Events with a revision greater than this. */
  afterRev?: number;
  nodeId?: NodeId;
  limit?: number;
}

/** What a feed hands over: the next events of the log, and the values the log leaves out. */
export interface FeedBatch {
  /** Gap-free and in revision order, each after the revision the last batch ended with. */
  events: ShoalEvent[];
  /**
   * For the `secret` and `user` events among them that set a value (the log says only REDACTED):
   * the value, by the event's revision, as the store holds it when the batch is read. A later
   * change may have replaced it (that change comes in this batch or a later one); a value removed
   * since is missing.
   */
  values: Map<number, string>;
}

/** Where a feed says what happens to it (a pino logger is one). */
export interface FeedLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface FollowOptions {
  log: FeedLog;
  /** The wait before reconnecting, doubling from `minMs` up to `maxMs` while the server stays away (default 250 ms to 10 s). */
  reconnect?: { minMs: number; maxMs: number };
  /** The feed lost its connection to the database (why), or listens again (undefined): the first news of a server going or coming back. */
  connection?: (lost: StoreUnavailableError | undefined) => void;
}

export interface Feed {
  /** Stops following: no batch is handed over once this resolves. */
  close(): Promise<void>;
}

/** A lease as its holder knows it: the lease of appliance `name`'s nodes, held by `holder` since the takeover that made `epoch`. */
export interface LeaseClaim {
  name: string;
  holder: string;
  epoch: number;
}

/** A lease row as every appliance reads it. */
export interface LeaseRow extends LeaseClaim {
  /** The provisioning networks (CIDRs) of appliance `name`, as it last wrote them. */
  networks: string[];
  /** The appliance `name` stands by for, if any. */
  standbyFor: string | null;
  /** Until expiry by the database's clock; negative: expired this long ago. */
  expiresInMs: number;
}

export interface CommitOptions {
  /**
   * The leases the writer holds (or held and has not learned it lost): the commit is refused whole
   * with a FencedError unless each lease row still has that holder and epoch.
   */
  fence?: readonly LeaseClaim[];
}

/** A commit refused because the writer's lease was taken over: it must stop acting on that lease's nodes. */
export class FencedError extends Error {
  constructor(
    /** The lease the writer thought it held. */
    readonly claim: LeaseClaim,
    /** Who holds it now, at which epoch (undefined: the row is gone). */
    readonly current: { holder: string; epoch: number } | undefined,
  ) {
    super(
      `fenced: ${claim.holder} wrote with epoch ${claim.epoch} of the lease on ${claim.name}'s nodes, but ${current ? `${current.holder} holds it at epoch ${current.epoch}` : 'that lease no longer exists'}; the whole commit was refused`,
    );
    this.name = 'FencedError';
  }
}

/**
 * The store cannot reach its database now (a server restarting, a connection cut): the call wrote
 * nothing, and the same call may succeed later. The state layer keeps what it could not commit and
 * refuses operators' writes until a commit goes through again.
 */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/**
 * Leases (PostgreSQL only: SQLite has one appliance, which owns every node). Expiry is by the
 * database's clock, never an appliance's.
 */
export interface LeaseStore {
  /**
   * Takes the lease on `name`'s nodes for `holder` in one transaction: creates it (epoch 1) when
   * `own` and there is none, or takes it over (epoch + 1) once it has expired; records the takeover
   * in the event log. Undefined when another holds it unexpired (or, not `own`, when it does not exist).
   */
  acquire(name: string, holder: string, ttlMs: number, own?: { networks: string[]; standbyFor: string | null }): Promise<LeaseClaim | undefined>;
  /** Extends a lease still held at this epoch to now + ttl; false when it was lost (taken over). */
  renew(claim: LeaseClaim, ttlMs: number): Promise<boolean>;
  /** Lets a lease still held at this epoch expire now (a clean stop), so a standby need not wait the TTL. */
  release(claim: LeaseClaim): Promise<void>;
  list(): Promise<LeaseRow[]>;
}

export interface StateStore {
  /** Every current fact, and the last revision written. */
  load(): Promise<{ facts: Fact[]; rev: number }>;
  /**
   * Writes the changes atomically, in order; returns their events. A removed node loses all its
   * facts. With `options.fence` on a store that has leases, throws a FencedError and writes nothing
   * if a lease is no longer the writer's at that epoch (a store without leases ignores it).
   */
  commit(changes: Change[], options?: CommitOptions): Promise<ShoalEvent[]>;
  /** Only a store several appliances share (PostgreSQL) has leases. */
  readonly leases?: LeaseStore;
  events(query: EventQuery): Promise<ShoalEvent[]>;
  /**
   * Only a store other appliances write to has it (PostgreSQL; not SQLite, which one appliance
   * owns): hands every event after `afterRev` to `onBatch`, whoever wrote it, once each, in
   * revision order, one batch at a time (the next waits for the last to settle), and goes on as
   * events commit. Resolves once it listens and the events up to now have been handed over.
   */
  follow?(afterRev: number, onBatch: (batch: FeedBatch) => Promise<void>, options: FollowOptions): Promise<Feed>;
  close(): Promise<void>;
}

export const REDACTED = '(set)';
