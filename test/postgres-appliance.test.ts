// The appliance on the PostgreSQL store (state.backend: postgres): it provisions simulated nodes
// with its state in the database the config names, not in DATA/shoal.db, and an appliance started
// again on that database finds every node and revision where the first left them. Across a restart
// of the server (issue 16) it serves reads from memory, refuses operator writes with a 503 problem
// that changes nothing, and keeps what its modules observe; once the server is back it commits what
// it kept, in order, and takes writes again, with no restart of its own.
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
import { postgresRequirement, sql, startPostgres, type TestPostgres } from './support/postgres.js';
import { simSpecs, until } from './support/appliance.js';

const skip = skipUnless('appliance on PostgreSQL', postgresRequirement());

let server: TestPostgres | undefined;
const dataDirs: string[] = [];
beforeAll(async () => {
  if (!skip) server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

function newDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-pg-appliance-'));
  dataDirs.push(dir);
  return dir;
}

async function start(url: string, dir: string, sim = new SimRack({ latencies: { powerMs: 20, bootStageMs: 20 } })): Promise<Appliance> {
  const config = loadConfig(undefined, { dataDir: dir, api: { listen: '127.0.0.1', port: 0 }, state: { backend: 'postgres', url } });
  return Appliance.start(config, { modules: [sim], log: createLogger('silent') });
}

async function stop(appliance: Appliance): Promise<void> {
  const problems = await appliance.stop();
  if (problems.length > 0) throw new Error(`the appliance did not stop cleanly: ${problems.join('; ')}`);
}

describe.skipIf(skip)('appliance on PostgreSQL', () => {
  it('keeps its state in the configured database and finds it there after a restart', async () => {
    const url = await server!.createDatabase();
    const dataDir = newDataDir();
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

  it('serves reads from memory and refuses writes with a 503 while the server is down, keeps what it observed, and resumes when it is back', async () => {
    const url = await server!.createDatabase();
    const sim = new SimRack({ latencies: { probeMs: 20, powerMs: 20, bootStageMs: 20 } });
    const appliance = await start(url, newDataDir(), sim);
    const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
      const res = await fetch(`${appliance.url}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${appliance.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: await res.json() };
    };
    try {
      const nodes = await appliance.state.addNodes(simSpecs(3).map((spec) => ({ spec, bmcPassword: 'pw' })), 'test');
      for (const n of nodes) await appliance.state.setDesired(n.id, { power: 'on' }, 'test');
      await until(appliance, () => appliance.engine.executor.phaseCounts().converged === 3, 20_000, 'three converged nodes');
      const [pulled, asked] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
      // Frozen, the engine takes no step for it: what is observed of it while the server is down stays in view.
      await appliance.state.setFrozen(pulled.id, true, 'test');

      await server!.shutdown();
      await until(appliance, () => appliance.state.storeUnavailable !== undefined, 20_000, 'the appliance to see its store gone');
      const read = await api('GET', '/nodes');
      expect(read.status).toBe(200);
      expect(read.body.nodes.map((n: { name: string }) => n.name)).toEqual(nodes.map((n) => n.name));
      const refused = await api('PATCH', `/nodes/${asked.name}/desired`, { power: 'off' });
      expect(refused.status).toBe(503);
      expect(refused.body.title).toBe('State store unavailable');
      expect(refused.body.detail).toMatch(/^the PostgreSQL database .* cannot be reached: .*\. This PATCH was refused and changed nothing/);
      expect(appliance.state.desired(asked.id).power).toBe('on');
      // Observed meanwhile: the power pulled behind the appliance's back.
      sim.inject(pulled.id, { kind: 'power-off' });
      await until(appliance, () => appliance.state.observed(pulled.id).power?.value === 'off', 5_000, 'the pulled power seen');

      await server!.start();
      await until(appliance, () => appliance.state.storeUnavailable === undefined, 30_000, 'the store writable again');
      const accepted = await api('PATCH', `/nodes/${asked.name}/desired`, { power: 'off' });
      expect(accepted.status).toBe(200);
      await appliance.state.setFrozen(pulled.id, false, 'test');
      const settled = () => appliance.engine.executor.phaseCounts().converged === 3 && appliance.state.observed(asked.id).power?.value === 'off' && appliance.state.observed(pulled.id).power?.value === 'on';
      await until(appliance, settled, 30_000, 'the pulled node powered on again and the asked one off');
      await appliance.state.flush();
      // The log holds what memory saw while the server was down (the pulled power), then the engine's power-on.
      const powers = await sql<{ new: string; writer: string }>(url, "SELECT new, writer FROM events WHERE node_id = $1 AND kind = 'observed' AND facet = 'power' ORDER BY rev", [pulled.id]);
      expect(powers.map((p) => p.new).slice(-2)).toEqual(['off', 'on']);
      // Memory and log end at the same revision: nothing it kept was dropped.
      const [last] = await sql<{ rev: string }>(url, 'SELECT max(rev) AS rev FROM events');
      expect(Number(last!.rev)).toBe(appliance.state.revision);
    } finally {
      await appliance.stop();
    }
  });
});
