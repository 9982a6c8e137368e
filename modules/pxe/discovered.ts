// Machines that network-booted but are not in the inventory. They are kept (in the pxe module's
// SQLite file, beside the leases) until an operator enrolls them as nodes or dismisses them, so a
// rack cabled before its inventory was written shows up by itself.
import type { Database } from 'better-sqlite3';
import type { UnknownClientInfo } from './dhcp/index.js';

export interface DiscoveredMachine {
  mac: string;
  /** RFC 4578 client architecture, when the firmware sent one. */
  arch: number | undefined;
  firmware: 'bios' | 'uefi' | undefined;
  /** The address it was given from the dynamic pool, when it got one. */
  ip: string | undefined;
  vendorClassId: string | undefined;
  hostname: string | undefined;
  uuid: string | undefined;
  relay: string | undefined;
  firstSeen: string;
  lastSeen: string;
  /** How many DHCP requests it sent; a count that keeps growing means it is still trying. */
  requests: number;
}

/** Architecture 0 is legacy BIOS; 6, 7, 9 (x86) and 10, 11 (ARM) and the HTTP-boot types are UEFI. */
export function firmwareOf(arch: number | undefined): 'bios' | 'uefi' | undefined {
  if (arch === undefined) return undefined;
  return arch === 0 ? 'bios' : 'uefi';
}

interface Row {
  mac: string;
  arch: number | null;
  ip: string | null;
  vendor_class_id: string | null;
  hostname: string | null;
  uuid: string | null;
  relay: string | null;
  first_seen: string;
  last_seen: string;
  requests: number;
}

export class DiscoveredStore {
  private readonly upsert;
  private readonly setIp;

  constructor(private readonly db: Database) {
    db.exec(`CREATE TABLE IF NOT EXISTS discovered (
      mac TEXT PRIMARY KEY,
      arch INTEGER,
      ip TEXT,
      vendor_class_id TEXT,
      hostname TEXT,
      uuid TEXT,
      relay TEXT,
      first_seen TEXT NOT NULL,
      last_seen TEXT NOT NULL,
      requests INTEGER NOT NULL
    )`);
    this.upsert = db.prepare(`INSERT INTO discovered (mac, arch, vendor_class_id, hostname, uuid, relay, first_seen, last_seen, requests)
      VALUES (@mac, @arch, @vendorClassId, @hostname, @uuid, @relay, @now, @now, 1)
      ON CONFLICT (mac) DO UPDATE SET
        arch = COALESCE(excluded.arch, arch),
        vendor_class_id = COALESCE(excluded.vendor_class_id, vendor_class_id),
        hostname = COALESCE(excluded.hostname, hostname),
        uuid = COALESCE(excluded.uuid, uuid),
        relay = COALESCE(excluded.relay, relay),
        last_seen = excluded.last_seen,
        requests = requests + 1`);
    this.setIp = db.prepare('UPDATE discovered SET ip = ? WHERE mac = ?');
  }

  /** Records one DHCP request of a machine the inventory does not know. */
  seen(mac: string, info: UnknownClientInfo, now = new Date()): void {
    this.upsert.run({
      mac,
      arch: info.arch ?? null,
      vendorClassId: info.vendorClassId ?? null,
      hostname: info.hostname ?? null,
      uuid: info.uuid ?? null,
      relay: info.relay ?? null,
      now: now.toISOString(),
    });
  }

  /** Records the address the dynamic pool bound to it (no-op for machines not discovered). */
  leased(mac: string, ip: string): void {
    this.setIp.run(ip, mac);
  }

  get(mac: string): DiscoveredMachine | undefined {
    const row = this.db.prepare('SELECT * FROM discovered WHERE mac = ?').get(mac) as Row | undefined;
    return row && toMachine(row);
  }

  list(): DiscoveredMachine[] {
    return (this.db.prepare('SELECT * FROM discovered ORDER BY first_seen, mac').all() as Row[]).map(toMachine);
  }

  /** Forgets a machine: enrolled as a node, or dismissed by the operator. Returns whether it was there. */
  remove(mac: string): boolean {
    return this.db.prepare('DELETE FROM discovered WHERE mac = ?').run(mac).changes > 0;
  }
}

function toMachine(row: Row): DiscoveredMachine {
  const arch = row.arch ?? undefined;
  return {
    mac: row.mac,
    arch,
    firmware: firmwareOf(arch),
    ip: row.ip ?? undefined,
    vendorClassId: row.vendor_class_id ?? undefined,
    hostname: row.hostname ?? undefined,
    uuid: row.uuid ?? undefined,
    relay: row.relay ?? undefined,
    firstSeen: row.first_seen,
    lastSeen: row.last_seen,
    requests: row.requests,
  };
}
