// Per-boot tokens in two kinds. A *bootstrap* token is minted when a boot is armed and travels in
// the iPXE script and on the kernel command line, where anyone on the provisioning network or the
// node can read it; it is good for one hello while that boot is armed. That hello spends it and
// gets the boot's *boot token*, which only the agent keeps (a root-only file) and which every later
// report carries. Only sha256 hashes of either are kept (in memory and on disk), so neither a log
// nor the data directory ever holds a token an agent could be impersonated with.
//
// A hello repeated with the bootstrap by the same boot before its boot token was ever presented
// is a lost reply, not a replay: it is answered with a new boot token that replaces the first.
//
// Supersession: a newer bootstrap for a node retires the node's earlier ones for any *new* boot at
// once. A boot token already bound to the boot that is running keeps serving that boot (and only
// it) until the newer bootstrap's boot says hello: the appliance arms the next boot before it asks
// the running agent to drain and reboot, and that agent must still be heard to be asked.
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { NodeId } from '../../src/domain/node.js';

const SHA256_HEX = z.string().regex(/^[0-9a-f]{64}$/);

/** One armed boot: its bootstrap, and once a hello spent that, the boot it bound and the boot token handed to it. */
const BootRecordSchema = z.object({
  bootstrapHash: SHA256_HEX,
  imageRef: z.string().min(1),
  issuedAt: z.number().int(),
  bootId: z.string().nullable(),
  boundAt: z.number().int().nullable(),
  tokenHash: SHA256_HEX.nullable(),
  /** When the boot token was first presented: from then on no hello can spend the bootstrap again. */
  confirmedAt: z.number().int().nullable(),
});
export type BootRecord = z.infer<typeof BootRecordSchema>;

const NodeTokensSchema = z.object({
  /** The boot armed last. */
  current: BootRecordSchema,
  /** The running boot, kept until `current` is bound; always bound itself. */
  running: BootRecordSchema.nullable(),
});
type NodeTokens = z.infer<typeof NodeTokensSchema>;
type Slot = keyof NodeTokens;

/** Who a presented token belongs to, which of the node's boots it is of, and which kind it is. */
export interface TokenMatch {
  nodeId: NodeId;
  record: BootRecord;
  slot: Slot;
  kind: 'bootstrap' | 'boot';
}

/** Why a presented token is not accepted, for the log (never the token itself). */
export type TokenMiss = { reason: 'superseded'; nodeId: NodeId } | { reason: 'unknown' };

// Retired hashes are remembered only to tell "stale" from "never issued" in the log.
const RETIRED_REMEMBERED = 100_000;

const newToken = () => randomBytes(32).toString('base64url');

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

  /** A bootstrap token for the node's newly armed boot of `imageRef`. */
  issue(nodeId: NodeId, imageRef: string): string {
    const bootstrap = newToken();
    const record: BootRecord = { bootstrapHash: hashToken(bootstrap), imageRef, issuedAt: Date.now(), bootId: null, boundAt: null, tokenHash: null, confirmedAt: null };
    const previous = this.byNode.get(nodeId);
    // The running boot is whichever earlier token was bound last; an unbound earlier token dies.
    const running = previous ? (previous.current.bootId !== null ? previous.current : previous.running) : null;
    const next: NodeTokens = { current: record, running };
    this.save(nodeId, next);
    if (previous) {
      this.unindex(previous);
      if (previous.current !== running) this.retire([previous.current.bootstrapHash], nodeId);
    }
    this.index(nodeId, next);
    return bootstrap;
  }

  match(token: string): TokenMatch | TokenMiss {
    const hash = hashToken(token);
    const nodeId = this.byHash.get(hash);
    const tokens = nodeId === undefined ? undefined : this.byNode.get(nodeId);
    if (nodeId !== undefined && tokens) {
      for (const slot of ['current', 'running'] as const) {
        const record = tokens[slot];
        if (record?.tokenHash === hash) return { nodeId, record, slot, kind: 'boot' };
        if (record?.bootstrapHash === hash) return { nodeId, record, slot, kind: 'bootstrap' };
      }
    }
    const retiredFor = this.retired.get(hash);
    return retiredFor === undefined ? { reason: 'unknown' } : { reason: 'superseded', nodeId: retiredFor };
  }

  /**
   * Spends the current boot's bootstrap for `bootId` and returns that boot's new boot token. The
   * first time it binds the boot, which replaces the running one; again (the same boot, its boot
   * token never presented: the reply was lost) it replaces the boot token handed out before.
   */
  spendBootstrap(nodeId: NodeId, bootId: string): string {
    const tokens = this.byNode.get(nodeId);
    const current = tokens?.current;
    if (!tokens || !current || current.confirmedAt !== null || (current.bootId !== null && current.bootId !== bootId)) {
      throw new Error(`node ${nodeId} has no bootstrap that boot ${bootId} may spend`);
    }
    const token = newToken();
    const next: NodeTokens = { current: { ...current, bootId, boundAt: current.boundAt ?? Date.now(), tokenHash: hashToken(token) }, running: null };
    this.save(nodeId, next);
    this.unindex(tokens);
    if (tokens.running) this.retire([tokens.running.bootstrapHash, tokens.running.tokenHash], nodeId);
    this.retire([current.tokenHash], nodeId);
    this.index(nodeId, next);
    return token;
  }

  /** Records that a boot's token was presented (once): its bootstrap can no longer be spent. */
  confirm(match: TokenMatch): void {
    if (match.kind !== 'boot' || match.record.confirmedAt !== null) return;
    const tokens = this.byNode.get(match.nodeId)!;
    const next: NodeTokens = { ...tokens, [match.slot]: { ...match.record, confirmedAt: Date.now() } };
    this.save(match.nodeId, next);
    this.byNode.set(match.nodeId, next);
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
    for (const hash of hashesOf(tokens)) this.byHash.set(hash, nodeId);
  }

  private unindex(tokens: NodeTokens): void {
    for (const hash of hashesOf(tokens)) this.byHash.delete(hash);
  }

  private retire(hashes: (string | null)[], nodeId: NodeId): void {
    for (const hash of hashes) if (hash) this.retired.set(hash, nodeId);
    while (this.retired.size > RETIRED_REMEMBERED) this.retired.delete(this.retired.keys().next().value!);
  }
}

function hashesOf(tokens: NodeTokens): string[] {
  return [tokens.current, tokens.running].flatMap((r) => (r ? [r.bootstrapHash, ...(r.tokenHash ? [r.tokenHash] : [])] : []));
}
