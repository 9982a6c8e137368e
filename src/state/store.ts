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
}

export interface Feed {
  /** Stops following: no batch is handed over once this resolves. */
  close(): Promise<void>;
}

export interface StateStore {
  /** Every current fact, and the last revision written. */
  load(): Promise<{ facts: Fact[]; rev: number }>;
  /** Writes the changes atomically, in order; returns their events. A removed node loses all its facts. */
  commit(changes: Change[]): Promise<ShoalEvent[]>;
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
