// Runs one DhcpServer as a process, for the conformance tests and the benchmark (which run
// it inside a network namespace). Not the appliance's entry point: the engine embeds
// DhcpServer itself.
//
//   npx tsx test/support/dhcp-serve.ts SPEC.json
//
// SPEC.json: { config: DhcpServerConfigInput, reservations?: {mac: {ip, hostname?}},
//              leaseDb?: path of a SQLite file (in-memory store without it), events?: boolean }
// Prints `{"ready":true}` once bound, one JSON line per event when `events` is set, and
// `{"counters":{...}}` on SIGTERM before exiting.
import { readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { z } from 'zod';
import { parseDhcpServerConfig } from '../../modules/pxe/dhcp/config.js';
import { MemoryLeaseStore, SqliteLeaseStore, type LeaseStore } from '../../modules/pxe/dhcp/leases.js';
import type { AddressBook, Reservation } from '../../modules/pxe/dhcp/handler.js';
import { DhcpServer } from '../../modules/pxe/dhcp/server.js';

const SpecSchema = z.object({
  config: z.unknown(),
  reservations: z.record(z.string(), z.object({ ip: z.string(), hostname: z.string().optional() })).default({}),
  leaseDb: z.string().optional(),
  events: z.boolean().default(false),
});

function print(line: unknown): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function main(): Promise<void> {
  const specPath = process.argv[2];
  if (!specPath) throw new Error('usage: dhcp-serve.ts SPEC.json');
  const spec = SpecSchema.parse(JSON.parse(readFileSync(specPath, 'utf8')));
  const reservations = new Map<string, Reservation>(Object.entries(spec.reservations));
  const reservedIps = new Set([...reservations.values()].map((r) => r.ip));
  const addressBook: AddressBook = {
    reservationFor: (mac) => reservations.get(mac),
    isReserved: (ip) => reservedIps.has(ip),
  };
  let leases: LeaseStore = new MemoryLeaseStore();
  if (spec.leaseDb) {
    const db = new Database(spec.leaseDb);
    db.pragma('journal_mode = WAL');
    // A lease lost in a power cut is re-requested by its client; a sync per ACK would cap the rate.
    db.pragma('synchronous = NORMAL');
    leases = new SqliteLeaseStore(db);
  }
  const server = new DhcpServer(parseDhcpServerConfig(spec.config), {
    addressBook,
    leases,
    ...(spec.events
      ? {
          onEvent: (event) => print({ event }),
          onUnknownClient: (mac, info) => print({ unknown: { mac, ...info } }),
        }
      : {}),
  });
  await server.start();
  print({ ready: true });
  const shutdown = async () => {
    await server.stop();
    print({ counters: server.counters });
    process.exit(0);
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
