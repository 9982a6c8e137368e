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

export interface StateStore {
  /** Every current fact, and the last revision written. */
  load(): Promise<{ facts: Fact[]; rev: number }>;
  /** Writes the changes atomically, in order; returns their events. A removed node loses all its facts. */
  commit(changes: Change[]): Promise<ShoalEvent[]>;
  events(query: EventQuery): Promise<ShoalEvent[]>;
  close(): Promise<void>;
}

export const REDACTED = '(set)';
