// Which appliance a node belongs to (LeaseOwnership.homeOf), over a lease table given by hand: the
// longest network containing its address, an appliance over its standby on a tie, the appliance it
// was enrolled through when no network contains it or it has no address.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../log.js';
import { ClusterState } from './cluster-state.js';
import { LeaseOwnership } from './ownership.js';
import { SqliteStore } from './sqlite-store.js';
import type { LeaseRow, LeaseStore } from './store.js';
import type { NodeSpec } from '../domain/node.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

const row = (name: string, networks: string[], standbyFor: string | null = null): LeaseRow => ({ name, holder: name, epoch: 1, networks, standbyFor, expiresInMs: 10_000 });

/** Leases held by others: this appliance takes none, and reads the table it is given. */
const othersLeases = (rows: LeaseRow[]): LeaseStore => ({
  acquire: async () => undefined,
  renew: async () => false,
  release: async () => undefined,
  list: async () => rows,
});

const spec = (name: string, i: number, ipv4?: string): NodeSpec => ({
  name,
  macs: [`52:54:00:00:00:0${i}`],
  bmc: { scheme: 'sim', host: name },
  arch: 'x86_64',
  firmware: 'auto',
  labels: {},
  ...(ipv4 ? { ipv4 } : {}),
});

describe('the home of a node', () => {
  it('is the appliance with the longest network holding its address, the primary over its standby, else the appliance it was enrolled through', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-own-'));
    dirs.push(dir);
    const store = new SqliteStore(join(dir, 'shoal.db'), { keyFile: join(dir, 'secret.key') });
    const state = await ClusterState.open(store, { enrolledBy: 'b' });
    const ownership = new LeaseOwnership(
      state,
      othersLeases([row('a', ['10.0.0.0/16']), row('b', ['10.0.0.0/16', 'fd00::/64'], 'a'), row('c', ['10.0.5.0/24'])]),
      { name: 'z', networks: ['192.0.2.0/24'], leaseTtlMs: 3_000 },
      createLogger('silent'),
    );
    await ownership.start();
    try {
      const [inC, inA, noAddress, nowhere, inZ] = await state.addNodes(
        [spec('in-c', 1, '10.0.5.3'), spec('in-a', 2, '10.0.1.1'), spec('no-address', 3), spec('nowhere', 4, '198.51.100.7'), spec('in-z', 5, '192.0.2.9')].map((s) => ({ spec: s })),
        'test',
      );
      expect([inC, inA, noAddress, nowhere, inZ].map((n) => ownership.homeOf(n!))).toEqual(['c', 'a', 'b', 'b', 'z']);
      // This appliance holds no lease (all are others'): it acts on none, its own network's node included.
      expect([inC, inA, noAddress, nowhere, inZ].some((n) => ownership.owns(n!.id))).toBe(false);
      const counts = Object.fromEntries((await ownership.appliances()).map((a) => [a.name, a.nodes]));
      expect(counts).toEqual({ a: 1, b: 2, c: 1 });
    } finally {
      await ownership.stop();
      await store.close();
    }
  });
});
