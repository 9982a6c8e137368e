// Per-boot tokens: minted when a boot is prepared, bound to the first boot that says hello with
// one, checked on every agent report. Only sha256 hashes are kept (in memory and on disk), so
// neither a log nor the data directory ever holds a token an agent could be impersonated with.
//
// Supersession: a newer token for a node retires the node's earlier ones for any *new* boot at
// once. A token already bound to the boot that is running keeps serving that boot (and only it)
// until the newer token's boot says hello: the appliance arms the next boot before it asks the
// running agent to drain and reboot, and that agent must still be heard to be asked.
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { NodeId } from '../../src/domain/node.js';

const TokenRecordSchema = z.object({
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  imageRef: z.string().min(1),
  issuedAt: z.number().int(),
  bootId: z.string().nullable(),
  boundAt: z.number().int().nullable(),
});
export type TokenRecord = z.infer<typeof TokenRecordSchema>;

const NodeTokensSchema = z.object({
  /** The token of the boot armed last. */
  current: TokenRecordSchema,
  /** The running boot's token, kept until `current` is bound; always bound itself. */
  running: TokenRecordSchema.nullable(),
});
type NodeTokens = z.infer<typeof NodeTokensSchema>;

/** Who a presented token belongs to, and which of the node's tokens it is. */
export interface TokenMatch {
  nodeId: NodeId;
  record: TokenRecord;
  slot: 'current' | 'running';
}

/** Why a presented token is not accepted, for the log (never the token itself). */
export type TokenMiss = { reason: 'superseded'; nodeId: NodeId } | { reason: 'unknown' };

// Retired hashes are remembered only to tell "stale" from "never issued" in the log.
const RETIRED_REMEMBERED = 100_000;

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export class BootTokenStore {
  private readonly db: Database.Database;
  private readonly put: Database.Statement;
  private readonly drop: Database.Statement;
  private readonly byNode = new Map<NodeId, NodeTokens>();
  private readonly byHash = new Map<string, NodeId>();
  private readonly retired = new Map<string, NodeId>();

  constructor(dataDir: string, log: Logger) {
    this.db = new Database(join(dataDir, 'boot-tokens.db'));
    // One transaction per write: a crash leaves the old record or the new one. NORMAL in WAL mode
    // survives a crash of the process; an OS crash may lose the last writes (those nodes' agents
    // are then refused and the node is re-armed), which the engine's store accepts too.
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec('CREATE TABLE IF NOT EXISTS boot_tokens (node_id TEXT PRIMARY KEY, record TEXT NOT NULL)');
    this.put = this.db.prepare('INSERT INTO boot_tokens (node_id, record) VALUES (?, ?) ON CONFLICT (node_id) DO UPDATE SET record = excluded.record');
    this.drop = this.db.prepare('DELETE FROM boot_tokens WHERE node_id = ?');
    for (const row of this.db.prepare('SELECT node_id, record FROM boot_tokens').all() as { node_id: string; record: string }[]) {
      let parsed: NodeTokens;
      try {
        parsed = NodeTokensSchema.parse(JSON.parse(row.record));
      } catch (err) {
        log.error({ node: row.node_id, err }, 'stored boot tokens unreadable; that node needs a new boot');
        continue;
      }
      this.index(row.node_id, parsed);
    }
  }

  close(): void {
    this.db.close();
  }

  /** Nodes with a bound boot: those whose agent is expected to be heartbeating. */
  *nodesWithBoundBoot(): Iterable<NodeId> {
    for (const [nodeId, tokens] of this.byNode) if (tokens.current.bootId !== null || tokens.running) yield nodeId;
  }

  issue(nodeId: NodeId, imageRef: string): string {
    const token = randomBytes(32).toString('base64url');
    const record: TokenRecord = { hash: hashToken(token), imageRef, issuedAt: Date.now(), bootId: null, boundAt: null };
    const previous = this.byNode.get(nodeId);
    // The running boot is whichever earlier token was bound last; an unbound earlier token dies.
    const running = previous ? (previous.current.bootId !== null ? previous.current : previous.running) : null;
    const next: NodeTokens = { current: record, running };
    this.save(nodeId, next);
    if (previous) {
      this.unindex(previous);
      if (previous.current !== running) this.retire(previous.current.hash, nodeId);
    }
    this.index(nodeId, next);
    return token;
  }

  match(token: string): TokenMatch | TokenMiss {
    const hash = hashToken(token);
    const nodeId = this.byHash.get(hash);
    const tokens = nodeId === undefined ? undefined : this.byNode.get(nodeId);
    if (nodeId !== undefined && tokens) {
      if (tokens.current.hash === hash) return { nodeId, record: tokens.current, slot: 'current' };
      if (tokens.running?.hash === hash) return { nodeId, record: tokens.running, slot: 'running' };
    }
    const retiredFor = this.retired.get(hash);
    return retiredFor === undefined ? { reason: 'unknown' } : { reason: 'superseded', nodeId: retiredFor };
  }

  /** Binds the node's current token to the boot that said hello with it; that boot replaces the running one. */
  bind(nodeId: NodeId, bootId: string): void {
    const tokens = this.byNode.get(nodeId);
    if (!tokens || tokens.current.bootId !== null) throw new Error(`node ${nodeId} has no unbound token`);
    const next: NodeTokens = { current: { ...tokens.current, bootId, boundAt: Date.now() }, running: null };
    this.save(nodeId, next);
    this.unindex(tokens);
    if (tokens.running) this.retire(tokens.running.hash, nodeId);
    this.index(nodeId, next);
  }

  /** Forgets a node that left the inventory. */
  forget(nodeId: NodeId): void {
    const tokens = this.byNode.get(nodeId);
    if (!tokens) return;
    this.drop.run(nodeId);
    this.unindex(tokens);
    this.byNode.delete(nodeId);
  }

  private save(nodeId: NodeId, tokens: NodeTokens): void {
    this.put.run(nodeId, JSON.stringify(tokens));
  }

  private index(nodeId: NodeId, tokens: NodeTokens): void {
    this.byNode.set(nodeId, tokens);
    this.byHash.set(tokens.current.hash, nodeId);
    if (tokens.running) this.byHash.set(tokens.running.hash, nodeId);
  }

  private unindex(tokens: NodeTokens): void {
    this.byHash.delete(tokens.current.hash);
    if (tokens.running) this.byHash.delete(tokens.running.hash);
  }

  private retire(hash: string, nodeId: NodeId): void {
    this.retired.set(hash, nodeId);
    if (this.retired.size > RETIRED_REMEMBERED) this.retired.delete(this.retired.keys().next().value!);
  }
}
