// The appliance on the PostgreSQL store (state.backend: postgres): it provisions simulated nodes
// with its state in the database the config names, not in DATA/shoal.db, and an appliance started
// again on that database finds every node and revision where the first left them.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../src/appliance.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { SimRack } from '../modules/sim/sim.js';
import { skipUnless } from './support/environment.js';
import { postgresRequirement, startPostgres, type TestPostgres } from './support/postgres.js';
import { simSpecs, until } from './support/appliance.js';

const skip = skipUnless('appliance on PostgreSQL', postgresRequirement());

let server: TestPostgres | undefined;
let dataDir: string | undefined;
beforeAll(async () => {
  if (!skip) server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function start(url: string, dir: string): Promise<Appliance> {
  const config = loadConfig(undefined, { dataDir: dir, api: { listen: '127.0.0.1', port: 0 }, state: { backend: 'postgres', url } });
  return Appliance.start(config, { modules: [new SimRack({ latencies: { powerMs: 20, bootStageMs: 20 } })], log: createLogger('silent') });
}

async function stop(appliance: Appliance): Promise<void> {
  const problems = await appliance.stop();
  if (problems.length > 0) throw new Error(`the appliance did not stop cleanly: ${problems.join('; ')}`);
}

describe.skipIf(skip)('appliance on PostgreSQL', () => {
  it('keeps its state in the configured database and finds it there after a restart', async () => {
    const url = await server!.createDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'shoal-pg-appliance-'));
    const first = await start(url, dataDir);
    const nodes = await first.state.addNodes(simSpecs(5).map((spec) => ({ spec, bmcPassword: 'pw' })), 'test');
    for (const n of nodes) await first.state.setDesired(n.id, { power: 'on' }, 'test');
    await until(first, () => first.engine.executor.phaseCounts().converged === 5, 20_000, 'five converged nodes');
    // Read after the stop: the simulated boots go on observing after power is on, and the stop commits what they queued.
    await stop(first);
    const revision = first.state.revision;

    expect(existsSync(join(dataDir, 'shoal.db'))).toBe(false);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const { rows } = await client.query<{ rev: string }>('SELECT max(rev) AS rev FROM events');
    await client.end();
    expect(Number(rows[0]!.rev)).toBe(revision);

    const second = await start(url, dataDir);
    try {
      // Its start took its lease again, released by the clean stop, with the next epoch: the one event since.
      const since = await second.state.events({ afterRev: revision });
      expect(since.map((e) => [e.kind, e.facet, e.new])).toEqual([['appliance', `lease/${second.config.appliance.name}`, `${second.config.appliance.name}#2`]]);
      expect(second.state.list().map((n) => n.name)).toEqual(nodes.map((n) => n.name));
      expect(nodes.map((n) => second.state.bmcPassword(n.id))).toEqual(nodes.map(() => 'pw'));
      expect(nodes.map((n) => second.state.observed(n.id).power?.value)).toEqual(nodes.map(() => 'on'));
    } finally {
      await stop(second);
    }
  });
});
