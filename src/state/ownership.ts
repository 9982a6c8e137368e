// Which nodes this appliance acts on (the NodeOwnership contract, src/contracts/ownership.ts).
//
// On SQLite one appliance owns the file and every node (SoleOwnership). On PostgreSQL each
// appliance holds leases (LeaseOwnership): its own, and, as a standby, the one of the appliance it
// stands by for once that one expired. A node belongs to one appliance (homeOf): the one whose
// networks contain its address (the longest prefix; on a tie, an appliance over its standby, then
// by name), or, for a node without an address, the one it was enrolled through; one enrolled
// before that was recorded belongs to the first appliance by name that stands by for no one. This
// appliance acts on a node while it holds the lease of the node's home: renewed on a heartbeat,
// valid by this appliance's clock until its last successful renewal's start plus the TTL (the
// database's expiry is later still: it counts from when the renewal ran), so it stops acting
// before anyone may take the lease over. src/state/README.md says more.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { NodeOwnership } from '../contracts/ownership.js';
import type { NodeRecord, NodeId } from '../domain/node.js';
import type { ClusterState } from './cluster-state.js';
import type { FencedError, LeaseClaim, LeaseRow, LeaseStore } from './store.js';

export interface ApplianceIdentity {
  name: string;
  networks: string[];
  standbyFor?: string | undefined;
  leaseTtlMs: number;
}

/** One appliance as `shoal appliances` lists it. */
export interface ApplianceInfo {
  name: string;
  networks: string[];
  standbyFor: string | null;
  /** Who holds the lease on its nodes, at which epoch, expiring in how long (by the database's clock); null: no lease (SQLite, or never started). */
  lease: { holder: string; epoch: number; expiresInMs: number } | null;
  /** Nodes whose home it is. */
  nodes: number;
}

export interface Ownership extends NodeOwnership {
  /** Takes the leases it can (the first heartbeat), then keeps them. */
  start(): Promise<void>;
  /** Stops the heartbeat and lets its leases expire now, so a standby need not wait the TTL. */
  stop(): Promise<void>;
  /** The leases the next commit carries. */
  fence(): readonly LeaseClaim[];
  /** A commit was refused: the lease it names is lost. */
  fenced(err: FencedError): void;
  appliances(): Promise<ApplianceInfo[]>;
}

/** SQLite: the one appliance acts on every node. */
export class SoleOwnership implements Ownership {
  constructor(
    private readonly state: ClusterState,
    private readonly identity: ApplianceIdentity,
  ) {}
  get appliance(): string {
    return this.identity.name;
  }
  owns(nodeId: NodeId): boolean {
    return this.state.node(nodeId) !== undefined;
  }
  onChange(): () => void {
    return () => undefined;
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  fence(): readonly LeaseClaim[] {
    return [];
  }
  fenced(): void {}
  async appliances(): Promise<ApplianceInfo[]> {
    return [{ name: this.identity.name, networks: this.identity.networks, standbyFor: null, lease: null, nodes: this.state.size }];
  }
}

interface HeldLease {
  claim: LeaseClaim;
  /** performance.now() until which this appliance may act under it. */
  validUntil: number;
}

export class LeaseOwnership implements Ownership {
  private readonly held = new Map<string, HeldLease>();
  /** Leases lost while changes made under them may still be queued: the next batch carries them, and is refused. */
  private readonly lostClaims = new Set<LeaseClaim>();
  /** The leases valid now: what `owns` answers from. */
  private acting = new Set<string>();
  private rows: LeaseRow[] = [];
  private readonly events = new EventEmitter<{ change: [] }>();
  private heartbeat: NodeJS.Timeout | undefined;
  private expiry: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly state: ClusterState,
    private readonly leases: LeaseStore,
    private readonly identity: ApplianceIdentity,
    private readonly log: Logger,
  ) {
    this.events.setMaxListeners(0);
  }

  get appliance(): string {
    return this.identity.name;
  }

  owns(nodeId: NodeId): boolean {
    const node = this.state.node(nodeId);
    return node !== undefined && this.acting.has(this.homeOf(node));
  }

  onChange(listener: () => void): () => void {
    this.events.on('change', listener);
    return () => this.events.off('change', listener);
  }

  async start(): Promise<void> {
    await this.tick();
    const every = Math.max(100, Math.floor(this.identity.leaseTtlMs / 3));
    this.heartbeat = setInterval(() => {
      if (!this.ticking) this.ticking = this.tick().finally(() => (this.ticking = undefined));
    }, every);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.expiry);
    await this.ticking;
    const claims = [...this.held.values()].map((h) => h.claim);
    this.held.clear();
    this.refresh();
    await Promise.all(claims.map((claim) => this.leases.release(claim).catch((err: unknown) => this.log.warn({ err, lease: claim }, 'could not release a lease; it expires by itself'))));
  }

  fence(): readonly LeaseClaim[] {
    return [...[...this.held.values()].map((h) => h.claim), ...this.lostClaims];
  }

  fenced(err: FencedError): void {
    const held = this.held.get(err.claim.name);
    if (held && held.claim.epoch === err.claim.epoch && held.claim.holder === err.claim.holder) this.lost(held.claim, err.current);
  }

  async appliances(): Promise<ApplianceInfo[]> {
    this.rows = await this.leases.list();
    const counts = new Map<string, number>();
    for (const node of this.state.list()) {
      const home = this.homeOf(node);
      counts.set(home, (counts.get(home) ?? 0) + 1);
    }
    return this.rows.map((r) => ({
      name: r.name,
      networks: r.networks,
      standbyFor: r.standbyFor,
      lease: { holder: r.holder, epoch: r.epoch, expiresInMs: r.expiresInMs },
      nodes: counts.get(r.name) ?? 0,
    }));
  }

  /** The appliance whose nodes this node is (see the header). */
  homeOf(node: NodeRecord): string {
    const appliances = this.known();
    if (node.ipv4) {
      const address = ipv4(node.ipv4);
      let best: { name: string; prefix: number; standbyFor: string | null } | undefined;
      for (const a of appliances) {
        for (const network of a.networks) {
          const prefix = containsIpv4(network, address);
          if (prefix === undefined) continue;
          const better =
            !best ||
            prefix > best.prefix ||
            (prefix === best.prefix && (best.standbyFor === a.name || (a.standbyFor !== best.name && a.name < best.name)));
          if (better) best = { name: a.name, prefix, standbyFor: a.standbyFor };
        }
      }
      if (best) return best.name;
    }
    const home = this.state.home(node.id);
    if (home !== undefined) return home;
    return appliances.filter((a) => a.standbyFor === null).map((a) => a.name).sort()[0] ?? this.identity.name;
  }

  /** The appliances the lease table names, with this one as its configuration says. */
  private known(): { name: string; networks: string[]; standbyFor: string | null }[] {
    const self = { name: this.identity.name, networks: this.identity.networks, standbyFor: this.identity.standbyFor ?? null };
    return [self, ...this.rows.filter((r) => r.name !== self.name)];
  }

  /** One heartbeat: renew what it holds, try to take what it may, read the lease table. */
  private async tick(): Promise<void> {
    const { name, standbyFor, leaseTtlMs: ttl, networks } = this.identity;
    for (const lease of standbyFor ? [name, standbyFor] : [name]) {
      if (this.stopped) return;
      const started = performance.now();
      const held = this.held.get(lease);
      try {
        if (held) {
          if (await this.leases.renew(held.claim, ttl)) held.validUntil = started + ttl;
          else this.lost(held.claim, undefined);
        } else {
          const claim = await this.leases.acquire(lease, name, ttl, lease === name ? { networks, standbyFor: standbyFor ?? null } : undefined);
          if (claim && !this.stopped) {
            this.held.set(lease, { claim, validUntil: started + ttl });
            if (lease === name) this.log.info({ lease: claim }, `holds the lease on its own nodes (epoch ${claim.epoch})`);
            else this.log.warn({ lease: claim }, `took over the nodes of ${lease}, whose lease expired (epoch ${claim.epoch}); re-planning them from their observed state`);
          }
        }
      } catch (err) {
        this.log.warn({ err, lease }, `the lease heartbeat for ${lease} failed; acting on its nodes only until the lease runs out`);
      }
    }
    try {
      this.rows = await this.leases.list();
    } catch (err) {
      this.log.warn({ err }, 'could not read the lease table');
    }
    this.refresh();
  }

  private lost(claim: LeaseClaim, current: { holder: string; epoch: number } | undefined): void {
    if (this.held.get(claim.name)?.claim !== claim) return;
    this.held.delete(claim.name);
    this.log.error(
      { lease: claim, current },
      `FENCED: ${claim.holder} lost the lease on ${claim.name}'s nodes (epoch ${claim.epoch})${current ? ` to ${current.holder} (epoch ${current.epoch})` : ''}; it stops acting on them`,
    );
    // What was queued under the lease is refused with the next batch; later batches carry it no more.
    this.lostClaims.add(claim);
    void this.state.flush().catch(() => undefined).finally(() => this.lostClaims.delete(claim));
    this.refresh();
  }

  /** Recomputes the leases valid now; tells listeners when that changed, and looks again when the next one runs out. */
  private refresh(): void {
    const now = performance.now();
    const acting = new Set([...this.held].filter(([, h]) => h.validUntil > now).map(([name]) => name));
    const changed = acting.size !== this.acting.size || [...acting].some((n) => !this.acting.has(n));
    for (const [lease] of this.held) {
      if (this.acting.has(lease) && !acting.has(lease)) this.log.error({ lease }, `the lease on ${lease}'s nodes ran out unrenewed: not acting on them until it is renewed`);
    }
    this.acting = acting;
    clearTimeout(this.expiry);
    const next = Math.min(...[...this.held.values()].map((h) => h.validUntil).filter((t) => t > now));
    if (Number.isFinite(next) && !this.stopped) this.expiry = setTimeout(() => this.refresh(), next - now + 1);
    if (changed) this.events.emit('change');
  }
}

function ipv4(address: string): number {
  return address.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

/** The prefix length of `cidr` when it contains the IPv4 address; undefined otherwise (an IPv6 network never does). */
function containsIpv4(cidr: string, address: number): number | undefined {
  const [base, bits] = cidr.split('/');
  if (!base || base.includes(':')) return undefined;
  const prefix = Number(bits);
  const size = 2 ** (32 - prefix);
  return Math.floor(ipv4(base) / size) === Math.floor(address / size) ? prefix : undefined;
}
