// Where bound leases live. The server owns allocation; a store only keeps what was bound,
// so it survives a restart (SQLite) or a test (memory). Offers are not stored: they are
// short-lived promises held in the server's memory.
import type { Database } from 'better-sqlite3';

export interface Lease {
  /** Colon-separated lower-case hardware address. */
  mac: string;
  ip: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  hostname?: string;
}

/**
 * Keyed by MAC; an IP belongs to at most one lease, so `put` replaces any lease held by
 * the same MAC or for the same IP. `putMany` stores several at once, atomically where the
 * store can: the server batches the ACKs of one event-loop turn into one call.
 */
export interface LeaseStore {
  get(mac: string): Lease | undefined;
  getByIp(ip: string): Lease | undefined;
  put(lease: Lease): void;
  putMany(leases: Lease[]): void;
  delete(mac: string): void;
  list(): Lease[];
}

export class MemoryLeaseStore implements LeaseStore {
  private readonly byMac = new Map<string, Lease>();
  private readonly macByIp = new Map<string, string>();

  get(mac: string): Lease | undefined {
    const lease = this.byMac.get(mac);
    return lease && { ...lease };
  }

  getByIp(ip: string): Lease | undefined {
    const mac = this.macByIp.get(ip);
    return mac === undefined ? undefined : this.get(mac);
  }

  put(lease: Lease): void {
    const previousHolder = this.macByIp.get(lease.ip);
    if (previousHolder !== undefined && previousHolder !== lease.mac) this.byMac.delete(previousHolder);
    this.delete(lease.mac);
    this.byMac.set(lease.mac, { ...lease });
    this.macByIp.set(lease.ip, lease.mac);
  }

  putMany(leases: Lease[]): void {
    for (const lease of leases) this.put(lease);
  }

  delete(mac: string): void {
    const lease = this.byMac.get(mac);
    if (!lease) return;
    this.byMac.delete(mac);
    this.macByIp.delete(lease.ip);
  }

  list(): Lease[] {
    return [...this.byMac.values()].map((l) => ({ ...l }));
  }
}

interface LeaseRow {
  mac: string;
  ip: string;
  expires_at: number;
  hostname: string | null;
}

function fromRow(row: LeaseRow): Lease {
  const lease: Lease = { mac: row.mac, ip: row.ip, expiresAt: row.expires_at };
  if (row.hostname !== null) lease.hostname = row.hostname;
  return lease;
}

/**
 * Leases in a table of the caller's database; the caller owns the handle and its pragmas.
 * The table is this store's alone: it is read once at construction and mirrored in memory,
 * so lookups on the packet path cost no query; every change is written through.
 */
export class SqliteLeaseStore implements LeaseStore {
  private readonly mirror = new MemoryLeaseStore();
  private readonly upsert;
  private readonly remove;
  private readonly upsertAll;

  constructor(db: Database, table = 'dhcp_leases') {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(table)) throw new Error(`invalid lease table name ${JSON.stringify(table)}`);
    db.exec(
      `CREATE TABLE IF NOT EXISTS ${table} (
         mac TEXT PRIMARY KEY,
         ip TEXT NOT NULL UNIQUE,
         expires_at INTEGER NOT NULL,
         hostname TEXT
       )`,
    );
    // REPLACE deletes whichever rows conflict on mac or on ip, which is the contract above.
    const upsert = db.prepare<[string, string, number, string | null]>(
      `INSERT OR REPLACE INTO ${table} (mac, ip, expires_at, hostname) VALUES (?, ?, ?, ?)`,
    );
    this.upsert = (lease: Lease) => upsert.run(lease.mac, lease.ip, lease.expiresAt, lease.hostname ?? null);
    this.upsertAll = db.transaction((leases: Lease[]) => {
      for (const lease of leases) this.upsert(lease);
    });
    this.remove = db.prepare<[string]>(`DELETE FROM ${table} WHERE mac = ?`);
    const rows = db.prepare<[], LeaseRow>(`SELECT mac, ip, expires_at, hostname FROM ${table}`).all();
    for (const row of rows) this.mirror.put(fromRow(row));
  }

  get(mac: string): Lease | undefined {
    return this.mirror.get(mac);
  }

  getByIp(ip: string): Lease | undefined {
    return this.mirror.getByIp(ip);
  }

  put(lease: Lease): void {
    this.upsert(lease);
    this.mirror.put(lease);
  }

  putMany(leases: Lease[]): void {
    this.upsertAll(leases);
    this.mirror.putMany(leases);
  }

  delete(mac: string): void {
    this.remove.run(mac);
    this.mirror.delete(mac);
  }

  list(): Lease[] {
    return this.mirror.list().sort((a, b) => (a.mac < b.mac ? -1 : a.mac > b.mac ? 1 : 0));
  }
}
